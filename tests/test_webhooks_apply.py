"""What each Smartlead event does to our rows, unmatched events, and recovering from failures."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from sequences.models import Contact, Engagement, EngagementType, Enrollment, EnrollmentStatus
from smartlead import applier as background
from smartlead import applying
from smartlead.models import Outcome, WebhookEvent
from tests.factories import make_contact, make_enrollment
from tests.test_webhooks import CAMPAIGN, LEAD_EMAIL, Lead, configure, fixture, make_lead, post

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _webhook_secret(settings: Any) -> None:
    configure(settings)


def replay(client: Any, name: str, **changes: Any) -> WebhookEvent:
    response = post(client, fixture(name, **changes))
    assert response.status_code == 200, response.content
    return WebhookEvent.objects.get(pk=response.json()["id"])


def only_engagement(contact: Contact) -> Engagement:
    return Engagement.objects.get(contact=contact)


def score(contact: Contact) -> int:
    return Contact.objects.get(pk=contact.pk).engagement_score


def status(enrollment: Enrollment) -> str:
    return Enrollment.objects.get(pk=enrollment.pk).status


@pytest.fixture
def hold_applying(monkeypatch: pytest.MonkeyPatch) -> None:
    """Store deliveries without applying them, as if the worker died right after answering."""
    monkeypatch.setattr(background, "hand_off", lambda: None)


# --- Each event type ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["email_sent", "first_email_sent"])
def test_it_records_a_sent_email_with_step_subject_and_message_id(client, name):
    lead = make_lead()
    event = replay(client, name)
    engagement = only_engagement(lead.contact)
    assert engagement.engagement_type == EngagementType.EMAIL_SENT
    assert engagement.enrollment_id == lead.enrollment.pk
    assert engagement.sequence_id == lead.sequence.pk
    assert engagement.metadata["sequence_number"] == 1
    assert engagement.metadata["subject"] == "Some more conversions?"
    assert engagement.metadata["message_id"] == "<0101018e2a5f-sent-1@email.smartlead.ai>"
    assert engagement.metadata["campaign_id"] == 9181
    assert engagement.metadata["webhook_event_id"] == event.pk
    assert engagement.engaged_at.isoformat() == "2025-03-27T14:02:11.512000+00:00"
    assert event.outcome == Outcome.APPLIED and event.detail == ""
    assert score(lead.contact) == 0 and status(lead.enrollment) == EnrollmentStatus.ACTIVE


def test_it_records_an_open_and_adds_10_to_the_score(client):
    lead = make_lead(engagement_score=5)
    replay(client, "email_open")
    engagement = only_engagement(lead.contact)
    assert engagement.engagement_type == EngagementType.EMAIL_OPENED
    assert engagement.metadata["stats_id"] == "a891fe37-c45d-21e8-67ba-fcd44e9c33a8"
    assert engagement.metadata["sl_email_lead_id"] == 2995276770
    assert engagement.metadata["sl_email_lead_map_id"] == 1438627
    assert score(lead.contact) == 15
    assert status(lead.enrollment) == EnrollmentStatus.ACTIVE


def test_it_records_a_click_with_the_link_and_adds_15(client):
    lead = make_lead()
    replay(client, "email_link_click")
    engagement = only_engagement(lead.contact)
    assert engagement.engagement_type == EngagementType.EMAIL_CLICKED
    assert engagement.metadata["link_clicked"] == [
        "https://outboundhq-sender.test/case-study?utm_source=smartlead",
        "https://outboundhq-sender.test/pricing",  # from link_details
    ]
    assert engagement.metadata["sl_email_lead_id"] == 2995276770  # sent as a string
    assert score(lead.contact) == 15


def test_it_stores_a_reply_and_marks_the_enrollment_replied(client):
    lead = make_lead()
    before = Enrollment.objects.get(pk=lead.enrollment.pk).updated_at
    assert Enrollment.objects.ready().filter(pk=lead.enrollment.pk).exists()
    replay(client, "email_reply")
    engagement = only_engagement(lead.contact)
    assert engagement.engagement_type == EngagementType.EMAIL_REPLIED
    assert engagement.metadata["reply_message_id"].startswith("<CAH7reply-")
    assert engagement.metadata["message_id"] == "<0101018e2a5f-sent-1@email.smartlead.ai>"
    assert engagement.metadata["reply_preview"] == "Sure, send me some times for Thursday."
    assert engagement.metadata["stats_thread_id"] == "c0ffee00-1111-2222-3333-444455556666"
    assert score(lead.contact) == 50
    enrollment = Enrollment.objects.get(pk=lead.enrollment.pk)
    assert enrollment.status == EnrollmentStatus.REPLIED and enrollment.updated_at > before
    # Replied is not ready: the executor sends no further steps and creates no call tasks.
    assert not Enrollment.objects.ready().filter(pk=lead.enrollment.pk).exists()


def test_a_legacy_reply_with_numbers_as_strings_applies_the_same_way(client):
    lead = make_lead()
    event = replay(client, "email_reply_legacy_strings")
    assert (event.campaign_id, event.sequence_number, event.lead_email) == (9181, 2, LEAD_EMAIL)
    engagement = only_engagement(lead.contact)
    assert engagement.metadata["sl_email_lead_id"] == 1482956
    assert engagement.metadata["sl_email_lead_map_id"] == 1438627
    assert engagement.metadata["reply_message_id"].startswith("<BDD5kUwc77")
    assert "message_id" not in engagement.metadata  # the legacy id is the reply's own
    assert status(lead.enrollment) == EnrollmentStatus.REPLIED


def test_it_records_a_bounce_and_marks_the_enrollment_bounced(client):
    lead = make_lead()
    replay(client, "email_bounce")
    engagement = only_engagement(lead.contact)
    assert engagement.engagement_type == EngagementType.EMAIL_BOUNCED
    assert engagement.metadata["bounce_message_id"] == "<bounce-20250327140240@mx.prospect.test>"
    assert status(lead.enrollment) == EnrollmentStatus.BOUNCED
    assert score(lead.contact) == 0


def test_an_unsubscribe_marks_the_enrollment_and_every_row_of_that_contact(client):
    lead = make_lead()
    duplicate = make_contact(email=LEAD_EMAIL.upper())
    replay(client, "lead_unsubscribed")
    assert only_engagement(lead.contact).engagement_type == EngagementType.EMAIL_UNSUBSCRIBED
    assert status(lead.enrollment) == EnrollmentStatus.UNSUBSCRIBED
    assert Contact.objects.get(pk=lead.contact.pk).unsubscribed_at is not None
    assert Contact.objects.get(pk=duplicate.pk).unsubscribed_at is not None


def test_an_earlier_unsubscribe_time_is_kept(client):
    earlier = timezone.now() - timedelta(days=30)
    lead = make_lead(unsubscribed_at=earlier)
    replay(client, "lead_unsubscribed")
    assert Contact.objects.get(pk=lead.contact.pk).unsubscribed_at == earlier


def test_unsubscribes_in_one_batch_keep_each_their_own_time(client, hold_applying):
    first = make_lead()
    # Both in the campaign's one sequence (issue 12: a campaign's events go to its owner only).
    person = make_contact(email="second@prospect.test", engagement_score=0)
    second = Lead(first.sequence, person, make_enrollment(sequence=first.sequence, contact=person))
    post(client, fixture("lead_unsubscribed", event_timestamp="2025-03-01T10:00:00+00:00"))
    later = {"lead_email": "second@prospect.test", "event_timestamp": "2025-03-02T10:00:00+00:00"}
    post(client, fixture("lead_unsubscribed", **later))
    assert applying.apply(WebhookEvent.objects.pending()) == {"applied": 2}
    times = {
        c.email: c.unsubscribed_at.isoformat()
        for c in Contact.objects.filter(pk__in=[first.contact.pk, second.contact.pk])
    }
    assert times == {
        LEAD_EMAIL: "2025-03-01T10:00:00+00:00",
        "second@prospect.test": "2025-03-02T10:00:00+00:00",
    }


def test_a_category_update_keeps_the_old_and_new_category(client):
    lead = make_lead()
    replay(client, "lead_category_updated")
    engagement = Engagement.objects.get(
        contact=lead.contact, engagement_type=EngagementType.LEAD_CATEGORY_UPDATED
    )
    assert engagement.metadata["new_category"] == "Interested"
    assert engagement.metadata["new_category_id"] == 1
    assert "old_category" not in engagement.metadata  # it had none
    assert engagement.metadata["sl_email_lead_id"] == 2995276770
    # What "Interested" does (a call task, the enrollment ends): tests/test_replies.py.
    assert status(lead.enrollment) == EnrollmentStatus.REPLIED


def test_a_legacy_category_field_is_understood(client):
    lead = make_lead()
    payload = {"category": "Not Interested", "lead_category_id": "3"}
    replay(client, "lead_category_updated", lead_category=None, **payload)
    metadata = only_engagement(lead.contact).metadata
    assert (metadata["new_category"], metadata["new_category_id"]) == ("Not Interested", 3)


@pytest.mark.parametrize(
    "name,engagement_type,final_status",
    [
        ("nested_email_replied", EngagementType.EMAIL_REPLIED, EnrollmentStatus.REPLIED),
        ("nested_email_opened", EngagementType.EMAIL_OPENED, EnrollmentStatus.ACTIVE),
    ],
)
def test_the_older_nested_shape_is_understood(client, name, engagement_type, final_status):
    lead = make_lead()
    event = replay(client, name)
    assert event.lead_email == LEAD_EMAIL and event.campaign_id == 9181
    assert event.dedupe_key.startswith("hash:")
    engagement = only_engagement(lead.contact)
    assert engagement.engagement_type == engagement_type
    assert engagement.metadata["message_id"] == "abc123@smartlead.ai"
    assert engagement.metadata["sl_email_lead_id"] == 789
    assert status(lead.enrollment) == final_status


def test_an_event_we_do_not_act_on_is_stored_and_ignored(client):
    lead = make_lead()
    event = replay(client, "email_open", event_type="MANUAL_STEP_REACHED")
    assert event.outcome == Outcome.IGNORED
    assert "MANUAL_STEP_REACHED is not applied" in event.detail
    assert not Engagement.objects.filter(contact=lead.contact).exists()


# --- Which rows an event resolves to --------------------------------------------------------


@pytest.mark.parametrize(
    "first,then,final",
    [
        ("email_reply", "email_open", EnrollmentStatus.REPLIED),
        ("email_reply", "email_bounce", EnrollmentStatus.REPLIED),
        ("lead_unsubscribed", "email_reply", EnrollmentStatus.UNSUBSCRIBED),
        ("email_bounce", "email_reply", EnrollmentStatus.REPLIED),
        ("email_reply", "lead_unsubscribed", EnrollmentStatus.UNSUBSCRIBED),
    ],
)
def test_a_late_event_never_moves_an_enrollment_backwards(client, first, then, final):
    lead = make_lead()
    replay(client, first)
    replay(client, then)
    assert status(lead.enrollment) == final
    assert Engagement.objects.filter(contact=lead.contact).count() == 2


def test_a_batch_applies_like_one_by_one(client, hold_applying):
    lead = make_lead()
    for name in ("email_bounce", "email_open", "email_reply", "email_link_click"):
        post(client, fixture(name))
    counts = applying.apply(WebhookEvent.objects.pending())
    assert counts == {"applied": 4}
    assert score(lead.contact) == 10 + 50 + 15
    assert status(lead.enrollment) == EnrollmentStatus.REPLIED


def test_a_batch_adds_each_contact_its_own_points(client, hold_applying):
    lead = make_lead()
    others = {}
    for email in ("ada@prospect.test", "bo@prospect.test"):
        person = make_contact(email=email, engagement_score=1)
        make_enrollment(sequence=lead.sequence, contact=person)
        others[email] = person
    happenings = [
        (LEAD_EMAIL, "email_open", "s1"),
        (LEAD_EMAIL, "email_link_click", "s2"),
        ("ada@prospect.test", "email_reply", "s3"),
        ("bo@prospect.test", "email_open", "s4"),
    ]
    for email, name, stats_id in happenings:
        post(client, fixture(name, to_email=email, sl_lead_email=email, stats_id=stats_id))
    assert applying.apply(WebhookEvent.objects.pending()) == {"applied": 4}
    assert score(lead.contact) == 10 + 15
    assert score(others["ada@prospect.test"]) == 1 + 50
    assert score(others["bo@prospect.test"]) == 1 + 10


def test_a_duplicate_contact_that_is_enrolled_wins_over_one_that_is_not(client):
    make_contact(email=LEAD_EMAIL)  # an older duplicate row, not enrolled
    lead = make_lead(email="James.Parker@prospect.test")
    replay(client, "email_open")
    assert only_engagement(lead.contact).enrollment_id == lead.enrollment.pk
    assert score(lead.contact) == 10


def test_the_most_recent_of_several_enrollments_is_used(client):
    lead = make_lead()
    later = make_enrollment(sequence=lead.sequence, contact=lead.contact)
    Enrollment.objects.filter(pk=lead.enrollment.pk).update(
        enrolled_at=timezone.now() - timedelta(days=3)
    )
    replay(client, "email_reply")
    assert only_engagement(lead.contact).enrollment_id == later.pk
    assert status(later) == EnrollmentStatus.REPLIED
    assert status(lead.enrollment) == EnrollmentStatus.ACTIVE


def test_an_address_not_enrolled_in_the_campaigns_sequence_stays_unmatched(client):
    """Issue 12 (tenant scoping) changes this: such an event used to be attached to any contact
    with the address, which could be another SDR's; now it is kept, unmatched, with the reason."""
    make_lead()
    outsider = make_contact(email="outsider@prospect.test", engagement_score=0)
    event = replay(client, "email_open", sl_lead_email="outsider@prospect.test")
    assert event.outcome == Outcome.UNMATCHED
    assert "not enrolled in the sequence that owns campaign 9181" in event.detail
    assert not Engagement.objects.filter(contact=outsider).exists()
    assert score(outsider) == 0


def test_an_unknown_campaign_is_unmatched_with_the_reason(client):
    lead = make_lead()
    event = replay(client, "email_reply", campaign_id=424242)
    assert event.outcome == Outcome.UNMATCHED
    assert event.detail == "No sequence of ours owns campaign 424242."
    assert not Engagement.objects.exists()
    assert status(lead.enrollment) == EnrollmentStatus.ACTIVE


def test_an_unknown_lead_is_unmatched_with_the_reason(client):
    make_lead()
    event = replay(client, "email_reply", sl_lead_email="nobody@nowhere.test")
    assert event.outcome == Outcome.UNMATCHED
    assert event.detail.startswith("nobody@nowhere.test is not enrolled in the sequence")


def test_an_event_without_campaign_or_lead_is_unmatched(client):
    assert (
        replay(client, "email_open", campaign_id=None).detail == "The payload has no campaign_id."
    )
    payload = fixture("email_open", stats_id="other")
    for key in ("sl_lead_email", "to_email"):
        payload.pop(key)
    response = post(client, payload)
    event = WebhookEvent.objects.get(pk=response.json()["id"])
    assert (event.outcome, event.detail) == (Outcome.UNMATCHED, "The payload has no lead email.")


# --- Failures are recoverable ---------------------------------------------------------------


def break_applying(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail at the very end of applying, after the engagement, score and status were written."""
    write = applying.Changes.write

    def write_then_fail(self: applying.Changes, now: Any) -> None:
        write(self, now)
        raise RuntimeError("the database said no")

    monkeypatch.setattr(applying.Changes, "write", write_then_fail)


def test_a_failed_apply_changes_nothing_records_the_error_and_still_answers_200(
    client, monkeypatch
):
    lead = make_lead()
    break_applying(monkeypatch)
    response = post(client, fixture("email_reply"))
    assert response.status_code == 200
    event = WebhookEvent.objects.get()
    assert event.outcome == Outcome.FAILED
    assert event.detail == "RuntimeError: the database said no"
    assert event.attempts == 1
    # One transaction: the engagement, score and status written before the error are undone.
    assert not Engagement.objects.exists()
    assert score(lead.contact) == 0 and status(lead.enrollment) == EnrollmentStatus.ACTIVE


def test_reprocess_webhooks_applies_failed_events(client, monkeypatch):
    lead = make_lead()
    break_applying(monkeypatch)
    post(client, fixture("email_reply"))
    monkeypatch.undo()
    output = StringIO()
    call_command("reprocess_webhooks", stdout=output)
    assert output.getvalue().strip() == "Reprocessed 1 event(s): 1 applied."
    event = WebhookEvent.objects.get()
    assert event.outcome == Outcome.APPLIED and event.detail == "" and event.attempts == 2
    assert score(lead.contact) == 50 and status(lead.enrollment) == EnrollmentStatus.REPLIED
    call_command("reprocess_webhooks", stdout=output)  # nothing left: never applied twice
    assert Engagement.objects.count() == 1


def test_a_batch_that_cannot_be_resolved_is_applied_one_by_one_and_failures_recorded(
    client, hold_applying, monkeypatch
):
    make_lead()
    post(client, fixture("email_open"))
    post(client, fixture("email_reply"))

    def broken(keys: set[tuple[str, str]]) -> Any:
        raise RuntimeError("statement timeout while resolving")

    monkeypatch.setattr(applying, "resolve", broken)
    assert applying.apply(WebhookEvent.objects.pending()) == {"failed": 2}
    events = WebhookEvent.objects.all()
    assert {e.outcome for e in events} == {Outcome.FAILED}
    assert all("statement timeout while resolving" in e.detail for e in events)
    assert not Engagement.objects.exists()


def test_one_failing_event_does_not_hold_back_the_others_in_its_batch(client, hold_applying):
    lead = make_lead()
    for name in ("email_open", "email_reply", "email_link_click"):
        post(client, fixture(name))
    real = applying.metadata

    def flaky(event: WebhookEvent, payload: dict[str, Any]) -> dict[str, Any]:
        if event.event_type == "EMAIL_REPLY":
            raise ValueError("bad reply")
        return real(event, payload)

    webhooks_metadata = pytest.MonkeyPatch()
    webhooks_metadata.setattr(applying, "metadata", flaky)
    try:
        counts = applying.apply(WebhookEvent.objects.pending())
    finally:
        webhooks_metadata.undo()
    assert counts == {"applied": 2, "failed": 1}
    assert score(lead.contact) == 25
    assert WebhookEvent.objects.get(event_type="EMAIL_REPLY").detail == "ValueError: bad reply"


def test_reprocess_can_retry_unmatched_events_once_the_sequence_exists(client):
    replay(client, "email_open")
    output = StringIO()
    call_command("reprocess_webhooks", stdout=output)
    assert "Reprocessed 0 event(s): nothing." in output.getvalue()
    lead = make_lead()
    call_command("reprocess_webhooks", "--unmatched", stdout=output)
    assert "1 applied" in output.getvalue()
    assert score(lead.contact) == 10


def test_reprocess_picks_up_events_whose_apply_was_interrupted(client, hold_applying):
    lead = make_lead()
    post(client, fixture("email_open"))
    call_command("reprocess_webhooks", stdout=StringIO())
    assert WebhookEvent.objects.get().outcome == Outcome.RECEIVED  # fresh: its request applies it
    WebhookEvent.objects.update(received_at=timezone.now() - timedelta(minutes=5))
    call_command("reprocess_webhooks", stdout=StringIO())
    assert WebhookEvent.objects.get().outcome == Outcome.APPLIED
    assert score(lead.contact) == 10


def test_reprocess_by_id_limit_and_since(client, monkeypatch):
    make_lead()
    break_applying(monkeypatch)
    ids = [
        post(client, fixture(n)).json()["id"] for n in ("email_open", "email_reply", "email_bounce")
    ]
    monkeypatch.undo()
    output = StringIO()
    call_command("reprocess_webhooks", "--id", str(ids[1]), stdout=output)
    assert WebhookEvent.objects.get(pk=ids[1]).outcome == Outcome.APPLIED
    call_command("reprocess_webhooks", "--limit", "1", stdout=output)
    assert WebhookEvent.objects.filter(outcome=Outcome.FAILED).count() == 1
    call_command("reprocess_webhooks", "--since", "2999-01-01", stdout=output)
    assert WebhookEvent.objects.filter(outcome=Outcome.FAILED).count() == 1
    call_command("reprocess_webhooks", "--failed", "--since", "2020-01-01", stdout=output)
    assert not WebhookEvent.objects.filter(outcome=Outcome.FAILED).exists()


def test_reprocess_never_reapplies_an_applied_event(client):
    lead = make_lead()
    event = replay(client, "email_open")
    output = StringIO()
    call_command("reprocess_webhooks", "--id", str(event.pk), stdout=output)
    assert "1 skipped" in output.getvalue()
    assert score(lead.contact) == 10


# --- Admin ---------------------------------------------------------------------------------


def test_the_event_log_opens_filters_and_hides_smartleads_secret_key(admin_client, client):
    make_lead()
    event = replay(client, "email_reply")
    replay(client, "email_open", campaign_id=777)
    changelist = reverse("admin:smartlead_webhookevent_changelist")
    for query in (
        {},
        {"outcome": "unmatched"},
        {"event_type": "EMAIL_REPLY"},
        {"campaign_id": CAMPAIGN},
    ):
        assert admin_client.get(changelist, query).status_code == 200
    filtered = admin_client.get(changelist, {"outcome": "unmatched"}).context["cl"].result_list
    assert [e.event_type for e in filtered] == ["EMAIL_OPEN"]
    page = admin_client.get(reverse("admin:smartlead_webhookevent_change", args=[event.pk]))
    assert page.status_code == 200
    assert "4f7c8d23-a619" not in page.content.decode()


def test_the_event_log_is_read_only(admin_client, client):
    event = replay(client, "email_open")
    assert admin_client.get(reverse("admin:smartlead_webhookevent_add")).status_code == 403
    url = reverse("admin:smartlead_webhookevent_change", args=[event.pk])
    admin_client.post(url, {"outcome": "applied", "detail": "edited"})
    assert WebhookEvent.objects.get(pk=event.pk).detail != "edited"
    delete = reverse("admin:smartlead_webhookevent_delete", args=[event.pk])
    assert admin_client.get(delete).status_code == 403


def test_the_admin_action_reprocesses_the_selected_events_and_reports_counts(
    admin_client, client, monkeypatch
):
    lead = make_lead()
    break_applying(monkeypatch)
    failed = [post(client, fixture(n)).json()["id"] for n in ("email_open", "email_reply")]
    monkeypatch.undo()
    ignored = post(client, fixture("email_open", event_type="MANUAL_STEP_REACHED")).json()["id"]
    response = admin_client.post(
        reverse("admin:smartlead_webhookevent_changelist"),
        {"action": "reprocess", "_selected_action": [*failed, ignored]},
        follow=True,
    )
    message = [str(m) for m in get_messages(response.wsgi_request)]
    assert message == [
        "Reprocessed 2 event(s): 2 applied. 1 skipped (applied, ignored, "
        "rejected, or being applied right now)."
    ]
    assert score(lead.contact) == 60
