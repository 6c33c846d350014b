"""Tenant scoping on incoming events (issue 12): a campaign's events reach only the enrollments
of the sequence the backend provisioned that campaign for."""

from __future__ import annotations

from typing import Any

import pytest

from sequences.models import CampaignProvisioning, Engagement, Enrollment, Sequence
from smartlead.models import Outcome
from tests.factories import make_contact, make_enrollment, make_profile, make_sequence
from tests.test_webhooks import LEAD_EMAIL, configure
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
