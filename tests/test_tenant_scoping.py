"""Tenant scoping on incoming events (issue 12): a campaign's events reach only the enrollments
of the sequence the backend provisioned that campaign for."""

from __future__ import annotations

import json
from typing import Any

import pytest

from profiles.models import Profile
from sequences.models import CampaignProvisioning, Engagement, Enrollment, Sequence
from smartlead.api import tokens
from smartlead.models import Outcome, WebhookEvent
from tests.factories import make_contact, make_enrollment, make_profile, make_sequence
from tests.test_webhooks import LEAD_EMAIL, SECRET, URL, configure
from tests.test_webhooks_apply import replay, status

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _webhook_secret(settings: Any) -> None:
    configure(settings)


def provisioned(campaign_id: int, email: str = LEAD_EMAIL) -> Enrollment:
    """An SDR's sequence with its campaign, as provisioning records it, and one enrollment."""
    sequence = make_sequence(creator=make_profile(), smartlead_campaign_id=str(campaign_id))
    CampaignProvisioning.objects.create(sequence=sequence, state="ready", campaign_id=campaign_id)
    return make_enrollment(sequence=sequence, contact=make_contact(email=email))


def test_another_sdrs_contact_with_the_same_email_is_never_touched(client):
    mine = provisioned(9181)
    theirs = provisioned(5555)  # another SDR enrolled the same person in their own campaign

    event = replay(client, "email_reply")  # a reply in campaign 9181

    assert event.outcome == Outcome.APPLIED
    assert status(mine) == "replied" and status(theirs) == "active"
    assert not Engagement.objects.filter(contact_id=theirs.contact_id).exists()


def test_an_event_for_a_lead_the_campaigns_sequence_does_not_have_stays_unmatched(client):
    provisioned(9181, email="someone-else@prospect.test")
    theirs = provisioned(5555)  # the address is enrolled, but only in another SDR's campaign

    event = replay(client, "email_reply")

    assert event.outcome == Outcome.UNMATCHED and "not enrolled" in event.detail
    assert status(theirs) == "active" and not Engagement.objects.exists()


def test_a_campaign_id_typed_into_a_sequence_by_the_browser_receives_nothing(client):
    owner = provisioned(9181)
    # Another SDR's sequence, provisioned as campaign 5555, has its column changed to 9181.
    intruder = provisioned(5555)
    Sequence.objects.filter(pk=intruder.sequence_id).update(smartlead_campaign_id="9181")

    replay(client, "email_reply")

    assert status(owner) == "replied" and status(intruder) == "active"
    replay(client, "email_open", campaign_id=5555, stats_id="s-5555")
    assert Engagement.objects.filter(enrollment_id=intruder.pk).count() == 1  # its own campaign


def test_of_two_records_of_one_campaign_the_one_that_created_it_owns_it(client):
    owner = provisioned(9181)
    CampaignProvisioning.objects.filter(sequence=owner.sequence_id).update(
        completed_stages=["created", "sequences", "started"]
    )
    # Another SDR's record adopted the same id (typed in by hand), and was written later.
    intruder = make_enrollment(
        sequence=make_sequence(creator=make_profile(), smartlead_campaign_id="9181"),
        contact=make_contact(email=LEAD_EMAIL),
    )
    CampaignProvisioning.objects.create(
        sequence_id=intruder.sequence_id,
        state="ready",
        campaign_id=9181,
        completed_stages=["adopted"],
    )

    replay(client, "email_reply")

    assert status(owner) == "replied" and status(intruder) == "active"


def test_a_campaign_two_sdrs_sequences_claim_without_a_record_reaches_neither(client):
    """An adopted campaign (set up before this backend) is known only by the column the browser
    can change: when sequences of two SDRs both name it, which one it is cannot be told."""
    first, second = (
        make_enrollment(
            sequence=make_sequence(creator=make_profile(), smartlead_campaign_id="9181"),
            contact=make_contact(email=LEAD_EMAIL),
        )
        for _ in range(2)
    )

    event = replay(client, "email_reply")

    assert event.outcome == Outcome.UNMATCHED and "several SDRs" in event.detail
    assert status(first) == status(second) == "active" and not Engagement.objects.exists()
    replay(client, "campaign_status_changed")
    assert not CampaignProvisioning.objects.exists()  # nor is it adopted for either of them


def test_an_adopted_campaign_named_twice_by_one_sdr_goes_to_the_newest_sequence(client):
    sdr = make_profile()
    older, newer = (
        make_enrollment(
            sequence=make_sequence(creator=sdr, smartlead_campaign_id="9181"),
            contact=make_contact(email=LEAD_EMAIL),
        )
        for _ in range(2)
    )

    replay(client, "email_reply")

    assert status(older) == "active" and status(newer) == "replied"


# --- Notices about a mailbox (issue 24, point 1) ------------------------------------------


def sdr_with_campaign(mailbox: int, campaign_id: int) -> Profile:
    """An SDR sending from `mailbox`, with a provisioned campaign set up on it."""
    profile = make_profile(smartlead_email_account_id=str(mailbox))
    sequence = make_sequence(creator=profile, smartlead_campaign_id=str(campaign_id))
    CampaignProvisioning.objects.create(
        sequence=sequence, state="ready", campaign_id=campaign_id, mailbox_id=mailbox
    )
    return profile


def disconnected(client: Any, campaign_id: int, mailbox: int) -> WebhookEvent:
    """The notice posted to campaign `campaign_id`'s own URL, with its token."""
    body = {"eventType": "EMAIL_ACCOUNT_DISCONNECTED", "campaignId": campaign_id}
    query = f"campaign={campaign_id}&token={tokens.token_for(campaign_id, SECRET)}"
    response = client.post(
        f"{URL}?{query}",
        data=json.dumps(body | {"accountId": mailbox}),
        content_type="application/json",
        secure=True,
    )
    assert response.status_code == 200, response.content
    return WebhookEvent.objects.get(pk=response.json()["id"])


def sending(profile: Profile) -> bool:
    return Profile.objects.connected().filter(pk=profile.pk).exists()


def test_it_never_lets_an_sdr_stop_another_sdrs_mailbox_through_their_own_campaign(client):
    mallory = sdr_with_campaign(3101, 9181)
    victims = [sdr_with_campaign(3102 + n, 5555 + n) for n in range(5)]

    # Mallory sweeps mailbox ids through her own campaign's URL (her token is valid).
    events = [disconnected(client, 9181, mailbox) for mailbox in range(3095, 3115)]

    assert all(sending(victim) for victim in victims)
    others = [e for e in events if e.detail and "3101" not in e.detail]
    assert all(e.outcome == Outcome.UNMATCHED for e in others)
    assert "not a mailbox of the SDR who owns campaign 9181" in others[0].detail
    assert not sending(mallory)  # only her own mailbox's notice applied, to her


def test_it_flags_the_campaigns_owner_for_their_own_mailbox_only(client):
    owner = sdr_with_campaign(3101, 9181)
    bystander = sdr_with_campaign(3101, 5555)  # another SDR reusing the same mailbox id

    event = disconnected(client, 9181, 3101)

    assert event.outcome == Outcome.APPLIED
    assert not sending(owner) and sending(bystander)


def test_it_applies_a_disconnect_notice_naming_no_campaign_to_nobody(client):
    """Only the legacy global secret can post a notice without a campaign: whose it is is
    unknown, so it is kept as unmatched rather than applied to everyone with that mailbox."""
    sdr = sdr_with_campaign(3101, 9181)

    event = replay(client, "email_account_disconnected")  # accountId 3101, no campaignId

    assert event.outcome == Outcome.UNMATCHED and "names no campaign" in event.detail
    assert sending(sdr)
