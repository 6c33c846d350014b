"""Webhook payloads as Smartlead really sends them (issue 11, point 7): click links in every
shape, legacy reply bodies, bounce reasons, bounces caused by the SDR's own mailbox, campaign
status changes and the account notifications keyed `eventType`/`campaignId`/`accountId`; and
(issue 23) out-of-office replies and categories, and a reply from another address, in the shapes
of Smartlead's published examples (help.smartlead.ai "Threaded Replies" and "Lead Category
Updated"; api.smartlead.ai/reference/email-reply-webhooks for `leadCorrespondence`)."""

from __future__ import annotations

import zoneinfo
from datetime import datetime
from typing import Any

import pytest
from django.utils import timezone

from profiles.credentials import SmartleadStatus
from profiles.models import Profile
from sequences.explain import explain
from sequences.models import (
    CallTask,
    CampaignProvisioning,
    Contact,
    Engagement,
    EngagementType,
    EnrollmentHold,
    EnrollmentStatus,
)
from smartlead.api import events
from smartlead.models import AccountCategory, Outcome
from tests.factories import make_contact, make_enrollment, make_profile, make_sequence
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

    # Smartlead's notice carries no campaign; the one posted to a campaign's URL names it.
    event = replay(client, "email_account_disconnected", campaignId=int(CAMPAIGN))

    assert event.event_type == "EMAIL_ACCOUNT_DISCONNECTED" and event.outcome == Outcome.APPLIED
    assert connection_status(sdr) == SmartleadStatus.NO_HEALTHY_MAILBOX
    [mailbox] = Profile.objects.get(pk=sdr.pk).mailbox_rows()
    assert "email account 3101 disconnected" in mailbox.failure
    assert connection_status(other) != SmartleadStatus.NO_HEALTHY_MAILBOX


def test_it_leaves_a_mailbox_the_campaigns_sdr_does_not_send_from_unmatched(client):
    sdr = make_profile(smartlead_email_account_id="3101")
    make_sequence(creator=sdr, smartlead_campaign_id=CAMPAIGN)
    event = replay(client, "email_account_disconnected", accountId=999, campaignId=int(CAMPAIGN))
    assert event.outcome == Outcome.UNMATCHED
    assert "Email account 999 is not a mailbox of the SDR" in event.detail


@pytest.mark.postgres
def test_it_applies_a_status_longer_than_its_column_clipped(client):
    """Issue 24, point 7: the 32-character column made a longer status a DataError."""
    lead = make_lead()
    odd = "PAUSED_BY_SMARTLEAD_FOR_A_REASON_NOBODY_DOCUMENTED_YET"

    event = replay(client, "campaign_status_changed", current_status=odd)

    assert event.outcome == Outcome.APPLIED
    record = CampaignProvisioning.objects.get(sequence=lead.sequence)
    assert record.smartlead_status == odd[:32] and odd in record.smartlead_status_detail


# --- Replies and categories (issue 23) --------------------------------------------------------
OOO_REPLY_ID = "<AM0PR07MB-ooo-4a1c9e@eurprd07.prod.outlook.com>"


def before_april_7() -> tuple[str, datetime]:
    """The fixtures' auto-reply says "until Monday, April 7" on March 28: stamped in a year
    whose April 7 is still ahead, it pauses; the day after April 7 is when it resumes."""
    now = timezone.now()
    year = now.year if now < datetime(now.year, 4, 7, tzinfo=now.tzinfo) else now.year + 1
    resume = datetime(year, 4, 8, tzinfo=zoneinfo.ZoneInfo("America/New_York"))
    return f"{year}-03-28T09:35:01+00:00", resume


def test_it_pauses_on_an_out_of_office_reply_until_the_day_after_it_says(client, settings):
    settings.SMARTLEAD_SCHEDULE_TIMEZONE = "America/New_York"
    lead = make_lead()
    stamp, resume = before_april_7()

    replay(client, "email_reply_out_of_office", event_timestamp=stamp)

    assert status(lead.enrollment) == EnrollmentStatus.PAUSED
    hold = EnrollmentHold.objects.get(enrollment_id=lead.enrollment.pk)
    assert (hold.kind, hold.until, hold.message_id) == ("out_of_office", resume, OOO_REPLY_ID)
    engagement = only_engagement(lead.contact)
    assert engagement.engagement_type == EngagementType.LEAD_CATEGORY_UPDATED
    assert engagement.metadata["out_of_office_until"] == resume.isoformat()
    assert engagement.metadata["out_of_office_by"] == "reply_text"
    assert engagement.metadata["return_date_stated"] is True
    assert Contact.objects.get(pk=lead.contact.pk).engagement_score == 0
    assert not CallTask.objects.exists()


def test_it_pauses_on_the_out_of_office_category_and_the_reply_after_it_is_no_reply(client):
    lead = make_lead()
    stamp, resume = before_april_7()

    replay(client, "lead_category_updated_out_of_office", event_timestamp=stamp)
    replay(client, "email_reply_out_of_office", event_timestamp=stamp, subject="Re: Hello")

    assert status(lead.enrollment) == EnrollmentStatus.PAUSED
    assert EnrollmentHold.objects.get(enrollment_id=lead.enrollment.pk).until == resume
    kinds = Engagement.objects.filter(contact=lead.contact).values_list(
        "engagement_type", flat=True
    )
    assert list(kinds) == ["lead_category_updated"] * 2
    assert Contact.objects.get(pk=lead.contact.pk).engagement_score == 0


def test_an_out_of_office_reply_whose_absence_is_over_pauses_nothing(client):
    lead = make_lead()
    replay(client, "email_reply_out_of_office")  # March 2025: back since April 8, 2025
    assert status(lead.enrollment) == EnrollmentStatus.ACTIVE
    assert only_engagement(lead.contact).metadata["category"] == "Out Of Office"
    assert not EnrollmentHold.objects.exists()


def test_it_attributes_a_reply_from_another_address_to_the_lead_it_answers(client):
    lead = make_lead(email="james.parker+2@prospect.test")
    responder = make_enrollment(
        sequence=lead.sequence, contact=make_contact(email="jp@parker-consulting.test")
    )

    replay(client, "email_reply_other_address")

    assert status(lead.enrollment) == EnrollmentStatus.REPLIED
    reply = only_engagement(lead.contact)
    assert reply.metadata["replied_from"] == "jp@parker-consulting.test"
    assert reply.metadata["replied_company"] == "DifferentCompany"
    assert reply.metadata["reply_preview"] == "webhook reply"
    assert status(responder) == EnrollmentStatus.ACTIVE  # not the address that wrote


@pytest.mark.parametrize(
    "category,final_status,calls",
    [
        ({"new_id": 2, "new_name": "Meeting Request"}, EnrollmentStatus.REPLIED, 1),
        ({"new_id": 3, "new_name": "Not Interested"}, EnrollmentStatus.REPLIED, 0),
        ({"new_id": 4, "new_name": "Do Not Contact"}, EnrollmentStatus.UNSUBSCRIBED, 0),
        ({"new_id": 5, "new_name": "Information Request"}, EnrollmentStatus.ACTIVE, 0),
        ({"new_id": 2, "new_name": None}, EnrollmentStatus.REPLIED, 1),  # the id alone
    ],
)
def test_each_category_does_what_it_says(client, category, final_status, calls):
    lead = make_lead()
    lead_category = {"old_id": 1, "old_name": "Interested"} | category

    replay(client, "lead_category_updated", lead_category=lead_category)

    assert status(lead.enrollment) == final_status
    assert CallTask.objects.filter(enrollment_id=lead.enrollment.pk).count() == calls
    unsubscribed = Contact.objects.get(pk=lead.contact.pk).unsubscribed_at is not None
    assert unsubscribed == (final_status == EnrollmentStatus.UNSUBSCRIBED)


def test_a_legacy_do_not_contact_category_opts_out_as_an_unsubscribe(client):
    lead = make_lead()
    legacy = {"category": "Do Not Contact", "lead_category_id": "4", "lead_category": None}

    replay(client, "lead_category_updated", **legacy)

    assert status(lead.enrollment) == EnrollmentStatus.UNSUBSCRIBED
    assert Contact.objects.get(pk=lead.contact.pk).unsubscribed_at is not None


def test_a_category_id_alone_is_read_by_the_sdrs_account_names(client):
    lead = make_lead()
    sdr = lead.sequence.created_by_id
    AccountCategory.objects.create(profile_id=sdr, category_id=2, name="Information Request")

    replay(client, "lead_category_updated", lead_category={"new_id": 2, "new_name": None})

    assert status(lead.enrollment) == EnrollmentStatus.ACTIVE  # not "Meeting Request" here
    assert not CallTask.objects.exists()
