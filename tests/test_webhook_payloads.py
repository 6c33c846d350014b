"""Webhook payloads as Smartlead really sends them (issue 11, point 7): click links in every
shape, legacy reply bodies, bounce reasons, bounces caused by the SDR's own mailbox, campaign
status changes and the account notifications keyed `eventType`/`campaignId`/`accountId`."""

from __future__ import annotations

from typing import Any

import pytest

from profiles.credentials import SmartleadStatus
from profiles.models import Profile
from sequences.explain import explain
from sequences.models import CampaignProvisioning, Engagement, EngagementType, EnrollmentStatus
from smartlead.api import events
from smartlead.models import Outcome
from tests.factories import make_profile, make_sequence
from tests.test_webhooks import CAMPAIGN, configure, fixture, make_lead, post
from tests.test_webhooks_apply import only_engagement, replay, status

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _webhook_secret(settings: Any) -> None:
    configure(settings)


def connection_status(profile: Profile) -> str:
    return Profile.objects.with_smartlead_status().get(pk=profile.pk).connection_status


def test_it_reads_the_clicked_link_from_a_link_object(client):
    lead = make_lead()
    replay(client, "email_link_click_link_object")
    assert only_engagement(lead.contact).metadata["link_clicked"] == [
        "https://outboundhq-sender.test/demo"
    ]


def test_it_reads_a_legacy_reply_body_when_there_is_no_reply_message(client):
    lead = make_lead()
    payload = fixture("email_reply_legacy_strings")
    payload.pop("preview_text")
    assert post(client, payload).status_code == 200
    engagement = only_engagement(lead.contact)
    assert engagement.metadata["reply_preview"] == "<div>webhook reply</div>"
    assert status(lead.enrollment) == EnrollmentStatus.REPLIED


def test_it_keeps_the_bounce_reason_and_type_and_bounces_the_lead(client):
    lead = make_lead()
    replay(client, "email_bounce")
    engagement = only_engagement(lead.contact)
    assert engagement.metadata["bounce_type"] == "HARD"
    assert engagement.metadata["bounce_reason"].startswith("550 5.1.1")
    assert "sender_originated" not in engagement.metadata
    assert status(lead.enrollment) == EnrollmentStatus.BOUNCED


def test_a_bounce_from_the_sdrs_own_mailbox_flags_the_mailbox_not_the_lead(client):
    lead = make_lead()
    sdr = lead.sequence.created_by
    assert connection_status(sdr) in (SmartleadStatus.CONNECTED, SmartleadStatus.UNCHECKED)

    event = replay(client, "email_bounce_sender_originated")

    assert event.outcome == Outcome.APPLIED and "own mailbox" in event.detail
    engagement = only_engagement(lead.contact)
    assert engagement.engagement_type == EngagementType.EMAIL_BOUNCED
    assert engagement.metadata["sender_originated"] is True
    assert status(lead.enrollment) == EnrollmentStatus.ACTIVE  # the lead did not bounce
    assert connection_status(sdr) == SmartleadStatus.NO_HEALTHY_MAILBOX
    [mailbox] = Profile.objects.get(pk=sdr.pk).mailbox_rows()
    assert mailbox.state == "failed" and "SMTP authentication failed" in mailbox.failure
    assert not Profile.objects.connected().filter(pk=sdr.pk).exists()  # the executor skips them


def test_campaign_status_changed_is_subscribed_and_shows_on_the_sequence(client):
    assert events.CAMPAIGN_STATUS_CHANGED in events.SUBSCRIBED
    lead = make_lead()

    event = replay(client, "campaign_status_changed")

    assert event.outcome == Outcome.APPLIED
    record = CampaignProvisioning.objects.get(sequence=lead.sequence)
    assert record.smartlead_status == "PAUSED"
    assert "PAUSED (was ACTIVE)" in record.smartlead_status_detail
    assert record.state == "ready" and record.campaign_id == int(CAMPAIGN)  # adopted, as is
    assert "Smartlead reports the campaign PAUSED" in explain(lead.enrollment)
    assert not Engagement.objects.filter(contact=lead.contact).exists()


def test_a_campaign_status_change_for_no_sequence_of_ours_is_unmatched(client):
    event = replay(client, "campaign_status_changed", campaign_id=424242)
    assert (
        event.outcome == Outcome.UNMATCHED
        and "No sequence of ours owns campaign 424242" in event.detail
    )


def test_a_bounce_breach_notification_keyed_eventtype_is_stored_and_applied(client):
    lead = make_lead()

    event = replay(client, "campaign_bounce_breach")  # was a 400: no event_type key

    assert (event.event_type, event.campaign_id) == ("CAMPAIGN_BOUNCE_BREACH", int(CAMPAIGN))
    assert event.outcome == Outcome.APPLIED
    record = CampaignProvisioning.objects.get(sequence=lead.sequence)
    assert record.smartlead_status == "BOUNCE_BREACH" and "6.2%" in record.smartlead_status_detail


def test_a_disconnected_mailbox_notification_marks_the_sdr_whose_mailbox_it_is(client):
    sdr = make_profile(smartlead_email_account_id="3101")
    other = make_profile(smartlead_email_account_id="3102")
    make_sequence(creator=sdr, smartlead_campaign_id=CAMPAIGN)

    event = replay(client, "email_account_disconnected")

    assert event.event_type == "EMAIL_ACCOUNT_DISCONNECTED" and event.outcome == Outcome.APPLIED
    assert connection_status(sdr) == SmartleadStatus.NO_HEALTHY_MAILBOX
    [mailbox] = Profile.objects.get(pk=sdr.pk).mailbox_rows()
    assert "email account 3101 disconnected" in mailbox.failure
    assert connection_status(other) != SmartleadStatus.NO_HEALTHY_MAILBOX


def test_a_disconnected_mailbox_nobody_sends_from_is_unmatched(client):
    event = replay(client, "email_account_disconnected", accountId=999)
    assert event.outcome == Outcome.UNMATCHED
    assert "No SDR sends from email account 999" in event.detail
