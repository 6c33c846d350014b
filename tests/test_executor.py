"""The sequence executor against a `responses` fake of Smartlead, on the real database."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import responses
from django.db import connection
from django.utils import timezone

from outboundhq.logs import register_secret
from profiles.credentials import SmartleadStatus
from profiles.models import CredentialCheck
from sequences import sending
from sequences.context import Run, Scope, SequenceWork, Tally
from sequences.executor import execute, plan
from sequences.models import (
    CallTask,
    CampaignProvisioning,
    Engagement,
    Enrollment,
    ExecutorRun,
    ProvisioningState,
    Push,
    PushState,
    Sequence,
    StepRecord,
)
from sequences.steps import Steps
from smartlead import api as smartlead_client
from smartlead.api import limits as smartlead_limits
from smartlead.api import tokens
from tests.factories import make_contact, make_enrollment, make_profile, make_sequence
from tests.fake_smartlead import BASE, FakeSmartlead

pytestmark = pytest.mark.django_db

NOT_CONNECTED = "SDR {} has not connected their Smartlead account"


@pytest.fixture(autouse=True)
def _fast_client(monkeypatch: pytest.MonkeyPatch, settings) -> None:  # noqa: ANN001
    settings.SMARTLEAD_BASE_URL = BASE
    settings.SMARTLEAD_LEADS_PER_REQUEST = 100
    # Worker threads have their own connections, which can't see a test's open transaction;
    # the tests marked transaction=True run with several workers.
    settings.EXECUTOR_CONCURRENCY = 1
    smartlead_client.reset_rate_limiters()
    # Waits pass instantly: the client's clock jumps ahead by every sleep it asks for.
    skipped = [0.0]
    monkeypatch.setattr(smartlead_limits, "_clock", lambda: time.monotonic() + skipped[0])
    monkeypatch.setattr(
        smartlead_limits, "_sleep", lambda s: skipped.__setitem__(0, skipped[0] + s)
    )


@pytest.fixture
def smartlead(rsps: responses.RequestsMock) -> FakeSmartlead:
    return FakeSmartlead(rsps)


def provisioned_sequence(creator=None, steps=None, campaign_id: int = 777):  # noqa: ANN001, ANN201
    return make_sequence(
        creator=creator or make_profile(), steps=steps, smartlead_campaign_id=str(campaign_id)
    )


def enroll(sequence, n: int, **fields):  # noqa: ANN001, ANN003, ANN201
    return [make_enrollment(sequence=sequence, **fields) for _ in range(n)]


def test_it_pushes_ready_enrollments_in_full_batches_per_campaign(smartlead):
    big = provisioned_sequence(campaign_id=101)
    small = provisioned_sequence(campaign_id=202)
    enroll(big, 250)
    enroll(small, 30)
    run = execute(trigger="command")
    assert smartlead.count("leads") == 3 + 1
    assert [len(b["lead_list"]) for b in smartlead.bodies("leads")].count(100) == 2
    assert len(smartlead.leads[101]) == 250 and len(smartlead.leads[202]) == 30
    assert run.pushed == 280 and run.due == 280
    assert Push.objects.filter(state=PushState.PUSHED).count() == 280
    advanced = Enrollment.objects.filter(sequence=big).values_list("current_step", flat=True)
    assert set(advanced) == {2}
    due = Enrollment.objects.filter(sequence=big).first().next_send_at
    assert timedelta(days=2, hours=23) < due - timezone.now() <= timedelta(days=3)


def test_a_key_smartlead_took_leads_from_is_connected_not_unchecked(smartlead):
    unchecked = make_profile()
    assert unchecked.smartlead_status() == SmartleadStatus.UNCHECKED
    enroll(provisioned_sequence(creator=unchecked, campaign_id=301), 3)
    checked = make_profile()
    said = "The key can send from 2 email account(s)."
    CredentialCheck.objects.record(profile=checked, status=SmartleadStatus.CONNECTED, detail=said)
    enroll(provisioned_sequence(creator=checked, campaign_id=302), 1)
    execute(trigger="command")
    check = CredentialCheck.objects.get(profile_id=unchecked.pk)
    assert check.status == SmartleadStatus.CONNECTED and "accepted leads" in check.detail
    assert CredentialCheck.objects.get(profile_id=checked.pk).detail == said  # left as it was


def test_the_lead_carries_the_contacts_fields(smartlead):
    sequence = provisioned_sequence()
    contact = make_contact(
        email="Ada@Example.TEST",
        first_name="Ada",
        last_name="Lovelace",
        company="Engines Ltd",
        phone="+44 1",
        title="CTO",
    )
    make_enrollment(sequence=sequence, contact=contact)
    execute(trigger="command")
    (lead,) = smartlead.bodies("leads")[0]["lead_list"]
    assert lead == {
        "email": "ada@example.test",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "company_name": "Engines Ltd",
        "phone_number": "+44 1",
        "custom_fields": {"title": "CTO"},
    }


def test_it_skips_users_without_credentials_and_logs_the_exact_line_once(smartlead, caplog):
    sdr = make_profile(connected=False)
    keyless_a = make_sequence(creator=sdr)
    keyless_b = make_sequence(creator=sdr)
    no_mailbox = make_profile(smartlead_email_account_id=None)
    enroll(keyless_a, 3)
    enroll(keyless_b, 2)
    enroll(make_sequence(creator=no_mailbox), 1)
    before = list(Enrollment.objects.values_list("id", "current_step", "next_send_at", "status"))
    with caplog.at_level(logging.INFO, logger="sequences.executor"):
        run = execute(trigger="command")
    lines = [r.getMessage() for r in caplog.records]
    assert lines.count(NOT_CONNECTED.format(sdr.label)) == 1
    assert lines.count(NOT_CONNECTED.format(no_mailbox.label)) == 1
    assert run.skipped_no_credentials == 6 and run.pushed == 0
    after = list(Enrollment.objects.values_list("id", "current_step", "next_send_at", "status"))
    assert sorted(after) == sorted(before)
    assert smartlead.calls == []


def test_it_provisions_a_new_sequence_once_with_its_steps_schedule_and_webhook(smartlead, settings):
    settings.PUBLIC_BASE_URL = "https://api.outboundhq.test"
    settings.SMARTLEAD_WEBHOOK_SECRET = "whsec-0123456789"
    creator = make_profile(smartlead_email_account_id="4242")
    steps = [
        {"step_type": "email", "subject": "Hi {{ first_name }}", "body": "At {{company}}\nthanks"},
        {"step_type": "call", "delay_days": 1, "delay_hours": 5},
        {"step_type": "email", "subject": "", "body": "Bump", "delay_days": 1},
    ]
    sequence = make_sequence(creator=creator, steps=steps, name="Q4 push")
    enroll(sequence, 2)
    run = execute(trigger="command")
    assert smartlead.count("create") == 1 and run.campaigns_provisioned == 1
    sequence.refresh_from_db()
    campaign_id = int(sequence.smartlead_campaign_id)
    assert smartlead.campaigns[campaign_id]["name"].startswith("Q4 push [ohq-")
    (saved,) = smartlead.bodies("sequences")
    assert [s["seq_delay_details"]["delay_in_days"] for s in saved["sequences"]] == [0, 3]
    assert saved["sequences"][0]["subject"] == "Hi {{first_name}}"
    assert saved["sequences"][0]["email_body"] == "At {{company_name}}<br>thanks"
    assert smartlead.bodies("email-accounts") == [{"email_account_ids": [4242]}]
    (schedule,) = smartlead.bodies("schedule")
    assert schedule["days_of_the_week"] == [1, 2, 3, 4, 5] and schedule["start_hour"] == "09:00"
    assert smartlead.bodies("settings")[0]["stop_lead_settings"] == "REPLY_TO_AN_EMAIL"
    (hook,) = smartlead.bodies("webhooks")
    # The campaign's own URL: a token for this campaign only, never the server secret itself.
    token = tokens.token_for(campaign_id, "whsec-0123456789")
    assert hook["webhook_url"] == (
        f"https://api.outboundhq.test/webhooks/smartlead?campaign={campaign_id}&token={token}"
    )
    assert smartlead.bodies("status") == [{"status": "START"}]
    assert len(smartlead.leads[campaign_id]) == 2
    enroll(sequence, 1)
    execute(trigger="command")
    assert smartlead.count("create") == 1


def test_a_provisioning_failure_half_way_is_completed_by_the_next_run(smartlead):
    sequence = make_sequence(creator=make_profile())
    enroll(sequence, 1)
    smartlead.fail("schedule", 400, {"message": '"timezone" is required'})
    first = execute(trigger="command")
    record = CampaignProvisioning.objects.get(sequence_id=sequence.id)
    assert record.state == ProvisioningState.FAILED and "timezone" in record.reason
    assert record.completed_stages == ["created", "sequences", "email_accounts"]
    assert first.pushed == 0 and Enrollment.objects.get().current_step == 1
    second = execute(trigger="command")
    record.refresh_from_db()
    assert record.state == ProvisioningState.READY
    assert smartlead.count("create") == 1 and smartlead.count("sequences") == 1
    assert second.pushed == 1


def test_a_campaign_created_before_a_crash_is_found_again_not_duplicated(smartlead):
    sequence = make_sequence(creator=make_profile(), name="Lost id")
    enroll(sequence, 1)
    tag = f"[ohq-{sequence.id.hex[:12]}]"
    smartlead.campaigns[9001] = {"id": 9001, "name": f"Lost id {tag}", "status": "DRAFTED"}
    execute(trigger="command")
    sequence.refresh_from_db()
    assert sequence.smartlead_campaign_id == "9001" and smartlead.count("create") == 0
    assert smartlead.leads[9001]


def test_a_sequence_smartlead_cannot_express_is_not_provisioned_and_says_why(smartlead):
    steps = [
        {"step_type": "email", "subject": "One", "body": "..."},
        {
            "step_type": "email",
            "subject": "Two",
            "body": "...",
            "delay_days": 2,
            "condition_previous_opened": True,
        },
    ]
    sequence = make_sequence(creator=make_profile(), steps=steps)
    enroll(sequence, 2)
    run = execute(trigger="command")
    record = CampaignProvisioning.objects.get(sequence_id=sequence.id)
    assert record.state == ProvisioningState.UNSUPPORTED
    assert "Step 2" in record.reason and "opened" in record.reason
    assert smartlead.calls == [] and run.pushed == 0
    assert any("cannot be provisioned" in e for e in run.errors)
    assert set(Enrollment.objects.values_list("current_step", flat=True)) == {1}


def test_a_rejected_key_marks_the_sdr_and_leaves_their_enrollments_for_later(smartlead, caplog):
    refused = provisioned_sequence(campaign_id=1)
    fine = provisioned_sequence(campaign_id=2)
    enroll(refused, 3)
    enroll(fine, 2)
    smartlead.fail("leads", 401, {"message": "Invalid API Key"}, campaign=1)
    with caplog.at_level(logging.WARNING):
        run = execute(trigger="command")
    creator = refused.created_by
    assert CredentialCheck.objects.get(profile_id=creator.id).status == SmartleadStatus.INVALID_KEY
    assert creator.smartlead_status() == SmartleadStatus.INVALID_KEY
    assert sum("Smartlead refused their key" in r.getMessage() for r in caplog.records) == 1
    waiting = Enrollment.objects.filter(sequence=refused)
    assert set(waiting.values_list("current_step", flat=True)) == {1}
    assert all(e.next_send_at <= timezone.now() for e in waiting)
    assert not Push.objects.filter(campaign_id=1).exists()
    assert run.pushed == 2 and run.deferred == 3
    execute(trigger="command")
    assert smartlead.count("leads") == 2  # the known-bad key is not tried again


def test_a_plan_without_api_access_is_recorded_as_such(smartlead):
    sequence = provisioned_sequence()
    enroll(sequence, 1)
    smartlead.fail("leads", 403, {"message": "Access denied"})
    execute(trigger="command")
    check = CredentialCheck.objects.get(profile_id=sequence.created_by_id)
    assert check.status == SmartleadStatus.NO_API_ACCESS


def test_a_429_is_retried_by_the_client_within_the_run(smartlead):
    sequence = provisioned_sequence()
    enroll(sequence, 5)
    smartlead.fail("leads", 429, {"error": {"message": "Too many requests", "retry_after": 0}})
    run = execute(trigger="command")
    assert smartlead.count("leads") == 2 and run.pushed == 5 and run.errors == []


def test_persistent_server_errors_leave_the_work_for_the_next_run(smartlead):
    sequence = provisioned_sequence()
    enroll(sequence, 4)
    smartlead.fail("leads", 503, times=1000)
    run = execute(trigger="command", time_budget=30)
    assert run.pushed == 0 and run.deferred == 4 and run.errors
    assert not Push.objects.exists()
    assert set(Enrollment.objects.values_list("current_step", flat=True)) == {1}
    smartlead.failures.clear()
    assert execute(trigger="command").pushed == 4


def test_bad_emails_fail_and_unsubscribed_contacts_are_not_pushed(smartlead):
    sequence = provisioned_sequence(campaign_id=55)
    blank = make_enrollment(sequence=sequence, contact=make_contact(email=""))
    typo = make_enrollment(sequence=sequence, contact=make_contact(email="ada@@example"))
    gone = make_enrollment(sequence=sequence, contact=make_contact(unsubscribed_at=timezone.now()))
    smartlead_invalid = make_enrollment(sequence=sequence, contact=make_contact())
    smartlead_unsub = make_enrollment(sequence=sequence, contact=make_contact())
    smartlead.invalid.add(smartlead_invalid.contact.email)
    smartlead.unsubscribed.add(smartlead_unsub.contact.email)
    ok = make_enrollment(sequence=sequence)
    run = execute(trigger="command")
    status = dict(Enrollment.objects.values_list("id", "status"))
    assert status[blank.id] == status[typo.id] == status[smartlead_invalid.id] == "failed"
    assert status[gone.id] == status[smartlead_unsub.id] == "unsubscribed"
    assert status[ok.id] == "active"
    reasons = dict(
        StepRecord.objects.filter(action="failed").values_list("enrollment_id", "detail")
    )
    assert "no email address" in reasons[blank.id]
    assert "not valid" in reasons[typo.id]
    assert "invalid" in reasons[smartlead_invalid.id]
    assert run.failed == 3 and run.pushed == 1
    assert smartlead.leads[55] == [ok.contact.email]


def test_a_lead_smartlead_rejects_alone_fails_without_failing_its_batch(smartlead):
    sequence = provisioned_sequence()
    enroll(sequence, 4)
    smartlead.fail("leads", 400, {"message": '"lead_list[2].email" must be a valid email'})
    run = execute(trigger="command")
    # The batch of 4 was refused once; its halves went through, so nobody failed for nothing.
    assert run.pushed == 4 and run.failed == 0
    assert smartlead.count("leads") == 3


CALL_FIRST = [
    {"step_type": "call", "call_objective": "Warm intro", "call_script": "Say hi"},
    {"step_type": "email", "subject": "Hi", "body": "..."},
]


def test_a_call_step_creates_one_call_task_and_engagement(smartlead):
    sequence = provisioned_sequence(steps=CALL_FIRST)
    enrollment = make_enrollment(sequence=sequence)
    run = execute(trigger="command")
    call = CallTask.objects.get(enrollment_id=enrollment.id)
    assert call.call_objective == "Warm intro" and call.status == "scheduled"
    engagement = Engagement.objects.get(enrollment_id=enrollment.id)
    assert engagement.engagement_type == "call_scheduled"
    assert engagement.metadata["step_number"] == 1
    assert run.call_tasks == 1 and smartlead.count("leads") == 0
    Enrollment.objects.filter(pk=enrollment.pk).update(current_step=1, next_send_at=timezone.now())
    execute(trigger="command")
    assert CallTask.objects.filter(enrollment_id=enrollment.id).count() == 1


def test_steps_whose_conditions_are_not_met_are_skipped(smartlead):
    steps = [
        {
            "step_type": "call",
            "call_objective": "Only if opened",
            "condition_previous_opened": True,
        },
        {"step_type": "call", "call_objective": "Only if no reply", "condition_not_replied": True},
    ]
    sequence = provisioned_sequence(steps=steps)
    opened = make_enrollment(sequence=sequence)
    silent = make_enrollment(sequence=sequence)
    Engagement.objects.create(
        contact=opened.contact, enrollment=opened, sequence=sequence, engagement_type="email_opened"
    )
    execute(trigger="command")
    assert CallTask.objects.filter(enrollment_id=opened.id).count() == 1
    assert not CallTask.objects.filter(enrollment_id=silent.id).exists()
    assert Enrollment.objects.get(pk=silent.pk).current_step == 2


def test_after_the_last_step_the_enrollment_is_completed(smartlead):
    sequence = provisioned_sequence()
    enrollment = make_enrollment(sequence=sequence, current_step=3)
    run = execute(trigger="command")
    enrollment.refresh_from_db()
    assert enrollment.status == "completed" and enrollment.completed_at is not None
    assert run.completed == 1 and run.call_tasks == 1


def test_a_later_email_step_only_advances_the_bookkeeping(smartlead):
    sequence = provisioned_sequence(campaign_id=91)
    enrollment = make_enrollment(sequence=sequence, current_step=2)
    Push.objects.create(
        enrollment_id=enrollment.id,
        campaign_id=91,
        sequence_id=sequence.id,
        profile_id=sequence.created_by_id,
        email="x@y.test",
        state="pushed",
    )
    execute(trigger="command")
    enrollment.refresh_from_db()
    assert enrollment.current_step == 3 and smartlead.calls == []


def test_an_enrollment_that_starts_past_the_first_email_is_still_pushed(smartlead):
    sequence = provisioned_sequence(campaign_id=92)
    enrollment = make_enrollment(sequence=sequence, current_step=2)
    run = execute(trigger="command")
    enrollment.refresh_from_db()
    assert smartlead.leads[92] == [enrollment.contact.email]
    assert enrollment.current_step == 3 and run.pushed == 1


def test_a_contact_fixed_after_a_rejection_is_pushed_again(smartlead):
    sequence = provisioned_sequence(campaign_id=93)
    enrollment = make_enrollment(sequence=sequence)
    Push.objects.create(
        enrollment_id=enrollment.id,
        campaign_id=93,
        sequence_id=sequence.id,
        profile_id=sequence.created_by_id,
        email="old@y.test",
        state="rejected",
    )
    execute(trigger="command")
    assert smartlead.leads[93] == [enrollment.contact.email]
    assert Push.objects.get(enrollment_id=enrollment.id).state == "pushed"


def test_a_step_changed_elsewhere_during_the_run_is_not_overwritten(smartlead, monkeypatch):
    sequence = provisioned_sequence()
    enrollment = make_enrollment(sequence=sequence)

    def moved_meanwhile(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        Enrollment.objects.filter(pk=enrollment.pk).update(current_step=3)
        return original(*args, **kwargs)

    original = sending.record_pushed
    monkeypatch.setattr(sending, "record_pushed", moved_meanwhile)
    execute(trigger="command")
    enrollment.refresh_from_db()
    assert enrollment.current_step == 3 and enrollment.status == "active"


def test_a_refusal_of_the_whole_request_fails_nobody(smartlead):
    sequence = provisioned_sequence()
    enroll(sequence, 4)
    smartlead.fail("leads", 400, {"message": "Campaign is archived"}, times=20)
    run = execute(trigger="command")
    assert run.failed == 0 and run.deferred == 4
    assert any("Campaign is archived" in e for e in run.errors)
    assert set(Enrollment.objects.values_list("status", flat=True)) == {"active"}


def test_a_timeout_keeps_the_ledger_row_so_the_resend_shows(smartlead):
    sequence = provisioned_sequence(campaign_id=94)
    enrollment = make_enrollment(sequence=sequence)
    smartlead.fail("leads", 504, times=1000)
    execute(trigger="command", time_budget=30)
    assert Push.objects.get(enrollment_id=enrollment.id).state == "pending"
    smartlead.failures.clear()
    Enrollment.objects.update(next_send_at=timezone.now())
    execute(trigger="command")
    push = Push.objects.get(enrollment_id=enrollment.id)
    assert push.state == "pushed" and push.attempts == 2


def test_a_campaign_set_up_before_the_public_url_gets_its_webhook_later(smartlead, settings):
    sequence = make_sequence(creator=make_profile())
    enroll(sequence, 1)
    execute(trigger="command")
    assert smartlead.count("webhooks") == 0
    settings.PUBLIC_BASE_URL = "https://api.outboundhq.test"
    settings.SMARTLEAD_WEBHOOK_SECRET = "whsec-later-0123"
    enroll(sequence, 1)
    execute(trigger="command")
    assert smartlead.count("webhooks") == 1
    execute(trigger="command")
    assert smartlead.count("webhooks") == 1


def test_a_reply_during_the_run_is_not_overwritten(smartlead, monkeypatch):
    sequence = provisioned_sequence()
    enrollment = make_enrollment(sequence=sequence)

    def reply_arrives(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        Enrollment.objects.filter(pk=enrollment.pk).update(status="replied")
        return original(*args, **kwargs)

    original = sending.record_pushed
    monkeypatch.setattr(sending, "record_pushed", reply_arrives)
    execute(trigger="command")
    enrollment.refresh_from_db()
    assert enrollment.status == "replied" and enrollment.current_step == 1


def test_a_run_killed_half_way_loses_nothing(smartlead):
    sequence = provisioned_sequence(campaign_id=31)
    enroll(sequence, 3)
    # A run that claimed and wrote the ledger, then died before Smartlead answered.
    (sdr,) = plan(Scope())
    record = ExecutorRun.objects.create(trigger="command")
    run = Run(record, timezone.now(), time.monotonic() + 60, None)
    with (
        smartlead_client.SmartleadClient(sdr.credentials.api_key) as client,
        ThreadPoolExecutor(1) as sender,
    ):
        steps = Steps(sequence.steps.all())
        work = SequenceWork(run, sdr, sequence.id, 31, steps, client, Tally(), sender)
        sending.carry_out(work, sending.claim(work, 100))  # claimed, reserved; never sent
    assert Push.objects.filter(state="pending").count() == 3
    assert execute(trigger="command").due == 0  # still leased to the dead run
    Enrollment.objects.update(next_send_at=timezone.now() - timedelta(seconds=1))  # lease expired
    run = execute(trigger="command")
    # Reserved twice, sent once: the dead run's request never left.
    assert run.pushed == 3 and Push.objects.filter(state="pushed", attempts=2).count() == 3
    assert smartlead.count("leads") == 1 and len(smartlead.leads[31]) == 3
    assert set(Enrollment.objects.values_list("current_step", flat=True)) == {2}


def test_an_enrollment_already_pushed_is_never_pushed_again(smartlead):
    sequence = provisioned_sequence(campaign_id=41)
    enrollment = make_enrollment(sequence=sequence)
    Push.objects.create(
        enrollment_id=enrollment.id,
        campaign_id=41,
        sequence_id=sequence.id,
        profile_id=sequence.created_by_id,
        email="x@y.test",
        state="pushed",
    )
    execute(trigger="command")
    assert smartlead.count("leads") == 0
    assert Enrollment.objects.get(pk=enrollment.pk).current_step == 2


def test_dry_run_changes_nothing_anywhere(smartlead):
    sequence = provisioned_sequence()
    enroll(sequence, 3)
    enroll(make_sequence(creator=make_profile(connected=False)), 1)
    before = list(Enrollment.objects.order_by("id").values())
    run = execute(trigger="command", dry_run=True)
    assert list(Enrollment.objects.order_by("id").values()) == before
    assert not ExecutorRun.objects.exists() and not Push.objects.exists()
    assert smartlead.calls == []
    assert run.pushed == 3 and run.skipped_no_credentials == 1
    assert any("push up to 3 leads" in line for line in run.plan_lines)


def test_scope_and_limit_restrict_the_run(smartlead):
    mine = provisioned_sequence(campaign_id=61)
    other = provisioned_sequence(campaign_id=62)
    enroll(mine, 5)
    enroll(other, 5)
    run = execute(trigger="command", user_id=mine.created_by_id, limit=3)
    assert run.due == 3 and len(smartlead.leads[61]) == 3 and not smartlead.leads[62]


def test_the_run_record_keeps_the_counts(smartlead):
    sequence = provisioned_sequence()
    enroll(sequence, 2)
    run = execute(trigger="command")
    saved = ExecutorRun.objects.get(pk=run.pk)
    assert saved.finished_at and saved.pushed == 2 and saved.smartlead_requests == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_parallel_executors_never_push_an_enrollment_twice(smartlead, settings):
    settings.EXECUTOR_CONCURRENCY = 4
    settings.EXECUTOR_CHUNK_SIZE = 100
    settings.SMARTLEAD_LEADS_PER_REQUEST = 20
    sequences = [provisioned_sequence(campaign_id=700 + n) for n in range(3)]
    for sequence in sequences:
        enroll(sequence, 120)
    slow = smartlead._leads

    def slow_leads(body, campaign_id):  # noqa: ANN001, ANN202
        time.sleep(0.01)  # keep runs overlapping
        return slow(body, campaign_id)

    smartlead._leads = slow_leads
    errors: list[BaseException] = []

    def one_run() -> None:
        try:
            execute(trigger="command")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=one_run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    pushed = [email for leads in smartlead.leads.values() for email in leads]
    sent = [lead["email"] for body in smartlead.bodies("leads") for lead in body["lead_list"]]
    assert len(sent) == len(set(sent)) == len(pushed) == 360
    assert Push.objects.count() == 360
    assert set(Enrollment.objects.values_list("current_step", flat=True)) == {2}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_provisioning_creates_one_campaign(smartlead):
    from sequences.provisioning import ProvisioningBusy, provision

    sequence = make_sequence(creator=make_profile())
    credentials = sequence.created_by.smartlead_credentials()
    barrier = threading.Barrier(4)
    outcomes: list[str] = []

    def attempt() -> None:
        barrier.wait()
        try:
            provision(sequence, credentials)
            outcomes.append("ready")
        except ProvisioningBusy:
            outcomes.append("busy")
        except BaseException as exc:  # noqa: BLE001 - a crash must fail the test, not hide
            outcomes.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=attempt) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads)
    assert smartlead.count("create") == 1
    assert set(outcomes) <= {"ready", "busy"} and "ready" in outcomes and len(outcomes) == 4


def test_a_cleared_campaign_id_is_found_again_by_its_tag_not_skipped(smartlead):
    sequence = make_sequence(creator=make_profile())
    enroll(sequence, 1)
    execute(trigger="command")
    first_campaign = Sequence.objects.get(pk=sequence.pk).smartlead_campaign_id
    smartlead.campaigns[int(first_campaign)]["status"] = "ACTIVE"
    Sequence.objects.filter(pk=sequence.pk).update(smartlead_campaign_id=None)
    enroll(sequence, 1)
    run = execute(trigger="command")
    sequence.refresh_from_db()
    assert sequence.smartlead_campaign_id == first_campaign
    assert smartlead.count("create") == 1 and smartlead.count("sequences") == 1
    assert run.pushed == 1


@pytest.mark.postgres
def test_array_literals_round_trip_through_postgres_whatever_the_text():
    from sequences.statements import text_array, uuid_array

    texts = ["a@b.co", 'we"ird,{x}@y.z', "back\\slash@x.y", "NULL", ""]
    ids = [uuid.uuid4(), uuid.uuid4()]
    with connection.cursor() as cursor:
        cursor.execute("SELECT %s::text[], %s::uuid[]", [text_array(texts), uuid_array(ids)])
        assert cursor.fetchone() == (texts, ids)


def test_an_unexpected_error_is_recorded_without_the_key(smartlead, monkeypatch):
    sequence = provisioned_sequence(creator=make_profile(smartlead_api_key="sl-key-leak-9876wxyz"))
    enroll(sequence, 1)
    register_secret("sl-key-leak-9876wxyz")

    def broken(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise RuntimeError("boom at https://x.test/?api_key=sl-key-leak-9876wxyz")

    monkeypatch.setattr(sending, "send_sequence", broken)
    run = execute(trigger="command")
    assert any("RuntimeError" in e for e in run.errors)
    assert not any("sl-key-leak-9876wxyz" in e for e in run.errors)


@pytest.mark.parametrize("mailbox", ["12²", "١٢", "abc", ""])
def test_it_skips_an_sdr_whose_mailbox_id_is_not_a_number_and_runs_the_others(
    smartlead, caplog, mailbox
):
    odd = make_profile(smartlead_email_account_id=mailbox)
    enroll(make_sequence(creator=odd), 2)
    fine = provisioned_sequence(campaign_id=71)
    enroll(fine, 3)
    caplog.set_level(logging.INFO)
    run = execute(trigger="command")
    dry = execute(trigger="command", dry_run=True)
    assert run.pushed == 3 and len(smartlead.leads[71]) == 3
    assert run.skipped_no_credentials == 2 and not run.errors
    assert NOT_CONNECTED.format(odd.label) in caplog.text
    assert dry.skipped_no_credentials == 2 and dry.due == 0
