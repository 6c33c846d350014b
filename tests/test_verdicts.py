"""A verdict per job (outboundhq/verdicts.py), and GET /status, which serves them to uptime
monitors: OK, late or failing, against each job's period and grace, from the records the jobs
leave behind."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone

import outboundhq.urls  # noqa: F401 - discovers the admin pages, as serving a request would
from outboundhq import verdicts
from outboundhq.models import Status
from profiles.credentials import SmartleadStatus
from profiles.mailboxes import SdrMailbox
from profiles.models import CredentialCheck
from sequences.models import CampaignProvisioning, ExecutorRun, Push, RunTrigger, SyncChange
from smartlead.models import ReconcileRun, WebhookEvent
from tests.factories import make_enrollment, make_profile, make_sequence

pytestmark = pytest.mark.django_db
MIN = timedelta(minutes=1)
TOKEN = "status-token-for-the-tests-0123456789"


@pytest.fixture(autouse=True)
def _webhooks_configured(settings: Any) -> None:
    settings.PUBLIC_BASE_URL = "https://ohq.example.test"
    settings.SMARTLEAD_WEBHOOK_SECRET = "verdict-test-webhook-secret"
    settings.HEALTH_STATUS_TOKEN = TOKEN


def run(minutes_ago: int, *, trigger: str = RunTrigger.SCHEDULE, **fields: Any) -> ExecutorRun:
    started = timezone.now() - minutes_ago * MIN
    fields.setdefault("finished_at", started + MIN / 2)
    return ExecutorRun.objects.create(trigger=trigger, started_at=started, **fields)


def status_of(verdict: verdicts.Verdict) -> tuple[str, str]:
    return verdict.status, verdict.detail


# --- The executor schedule ----------------------------------------------------------------
def test_the_executor_is_ok_within_its_period_and_grace():
    run(20, pushed=14)
    verdict = verdicts.executor_verdict(timezone.now())
    assert verdict.status == Status.OK and "14 pushed" in verdict.detail
    assert verdict.expected == "every 15 min, grace 10 min"


def test_the_executor_is_late_past_its_period_and_grace_and_says_since_when():
    run(26)
    verdict = verdicts.executor_verdict(timezone.now())
    assert verdict.status == Status.LATE
    assert "since 26 min ago" in verdict.detail and "qcluster" in verdict.detail


def test_a_run_from_the_command_says_nothing_of_the_schedule():
    run(1, trigger=RunTrigger.COMMAND)
    assert verdicts.executor_verdict(timezone.now()).status == Status.LATE
    run(1, trigger=RunTrigger.CRON)  # an outside scheduler calling the cron endpoint is one
    assert verdicts.executor_verdict(timezone.now()).status == Status.OK


def test_the_executor_is_failing_when_its_last_run_stopped():
    run(30)
    run(5, errors=["The run stopped: OperationalError: server closed the connection"])
    verdict = verdicts.executor_verdict(timezone.now())
    assert verdict.status == Status.FAILING and "server closed" in verdict.detail
    assert verdict.last_success is not None  # the run before it


def test_a_run_in_progress_is_not_judged_but_one_that_never_finished_is_failing():
    run(5)
    run(1, finished_at=None)  # running now
    assert verdicts.executor_verdict(timezone.now()).status == Status.OK
    run(22, finished_at=None)  # past its time budget and grace: its worker died mid-run
    ExecutorRun.objects.filter(started_at__gt=timezone.now() - 10 * MIN).delete()
    verdict = verdicts.executor_verdict(timezone.now())
    assert verdict.status == Status.FAILING and "never finished" in verdict.detail


def test_a_run_that_sent_nothing_because_smartlead_failed_is_failing():
    run(2, pushed=0, deferred=40, errors=["40 leads for campaign 9 wait: Smartlead answered 503"])
    verdict = verdicts.executor_verdict(timezone.now())
    assert verdict.status == Status.FAILING and "503" in verdict.detail


def test_a_run_with_only_bad_addresses_failed_is_still_ok():
    run(2, pushed=10, failed=3)
    assert verdicts.executor_verdict(timezone.now()).status == Status.OK


# --- The reconcile pass -------------------------------------------------------------------
def test_the_reconcile_pass_is_ok_then_late_then_failing():
    now = timezone.now()
    ReconcileRun.objects.create(trigger="schedule", started_at=now - 70 * MIN, finished_at=now)
    assert verdicts.reconcile_verdict(now).status == Status.OK
    assert verdicts.reconcile_verdict(now + 15 * MIN).status == Status.LATE
    ReconcileRun.objects.create(
        trigger="schedule",
        started_at=now,
        finished_at=now,
        campaigns=2,
        errors=["Campaign 1: Smartlead answered 500", "Campaign 2: Smartlead answered 500"],
    )
    verdict = verdicts.reconcile_verdict(now)
    assert verdict.status == Status.FAILING and "every campaign it read failed" in verdict.detail


# --- The outbox ---------------------------------------------------------------------------
def change(state: str, *, minutes_ago: int = 0, attempts: int = 0) -> SyncChange:
    sequence = make_sequence(creator=make_profile())
    return SyncChange.objects.create(
        action="pause_lead",
        state=state,
        sequence_id=sequence.pk,
        profile_id=sequence.created_by_id,
        campaign_id=7,
        attempts=attempts,
        last_error="Smartlead answered 500" if attempts else "",
        created_at=timezone.now() - minutes_ago * MIN,
    )


def test_the_outbox_is_ok_while_changes_are_young_late_when_old_failing_when_refused():
    change("pending", minutes_ago=10)
    assert verdicts.outbox_verdict(timezone.now()).status == Status.OK
    change("pending", minutes_ago=45)
    verdict = verdicts.outbox_verdict(timezone.now())
    assert verdict.status == Status.LATE and "the oldest for 45 min" in verdict.detail
    change("pending", attempts=3)
    verdict = verdicts.outbox_verdict(timezone.now())
    assert verdict.status == Status.FAILING and "Smartlead answered 500" in verdict.detail


# --- Webhook intake -----------------------------------------------------------------------
def event(n: int, outcome: str, *, hours_ago: float = 0, **fields: Any) -> WebhookEvent:
    return WebhookEvent.objects.create(
        dedupe_key=f"v{n}",
        event_type="EMAIL_SENT",
        outcome=outcome,
        raw_body="{}",
        received_at=timezone.now() - timedelta(hours=hours_ago),
        **fields,
    )


def test_webhook_intake_is_late_when_pushes_hear_nothing_back():
    run(5, pushed=20)
    assert verdicts.webhook_verdict(timezone.now()).status == Status.LATE
    event(1, "applied", hours_ago=2)
    assert verdicts.webhook_verdict(timezone.now()).status == Status.OK


def test_webhook_intake_without_pushes_expects_nothing():
    assert verdicts.webhook_verdict(timezone.now()).status == Status.OK


def test_webhook_intake_is_failing_when_events_fail_or_wait_unapplied():
    event(1, "applied")
    event(2, "failed")
    assert "failed to apply" in verdicts.webhook_verdict(timezone.now()).detail
    WebhookEvent.objects.filter(outcome="failed").update(outcome="applied")
    event(3, "received", hours_ago=0.1)
    verdict = verdicts.webhook_verdict(timezone.now())
    assert verdict.status == Status.FAILING and "not applied" in verdict.detail


def test_webhook_intake_is_failing_without_a_secret_or_public_url(settings):
    settings.SMARTLEAD_WEBHOOK_SECRET = ""
    verdict = verdicts.webhook_verdict(timezone.now())
    assert verdict.status == Status.FAILING and "SMARTLEAD_WEBHOOK_SECRET" in verdict.detail


def test_rejected_deliveries_alone_are_failing_beside_good_ones_only_a_note():
    event(1, "rejected", detail="not JSON")
    assert verdicts.webhook_verdict(timezone.now()).status == Status.FAILING
    event(2, "applied")
    verdict = verdicts.webhook_verdict(timezone.now())
    assert verdict.status == Status.OK and "Rejected in the last 24 h: 1" in verdict.detail


# --- Each SDR -----------------------------------------------------------------------------
def sdr_verdict(profile: Any, *, executor_ok: bool = True) -> verdicts.Verdict:
    return verdicts.sdr_verdicts(timezone.now(), executor_ok=executor_ok, only=profile.pk)[0]


def test_an_sdr_whose_key_was_refused_is_failing_with_what_smartlead_said():
    sdr = make_profile()
    CredentialCheck.objects.record(
        profile=sdr, status=SmartleadStatus.INVALID_KEY, detail="Smartlead: Invalid API Key"
    )
    make_enrollment(sequence=make_sequence(creator=sdr))
    verdict = sdr_verdict(sdr)
    assert verdict.status == Status.FAILING
    assert verdict.detail == "Invalid key: Smartlead: Invalid API Key 1 enrollments wait."
    assert verdict.name == f"SDR {sdr.email} ({sdr.first_name})"
    assert verdict.href == reverse("ops-sdr", args=[sdr.pk])


def test_an_unconnected_sdr_is_failing_only_while_their_enrollments_wait():
    sdr = make_profile(connected=False)
    sequence = make_sequence(creator=sdr)
    make_enrollment(sequence=sequence, due_in=timedelta(days=1))
    assert sdr_verdict(sdr).status == Status.OK
    make_enrollment(sequence=sequence)
    verdict = sdr_verdict(sdr)
    assert verdict.status == Status.FAILING and "no API key" in verdict.detail


def test_an_sdr_with_a_campaign_gone_or_flagged_for_bounces_is_failing():
    sdr = make_profile()
    gone, flagged = make_sequence(creator=sdr), make_sequence(creator=sdr)
    CampaignProvisioning.objects.create(sequence=gone, state="needs_attention", campaign_id=31)
    CampaignProvisioning.objects.create(
        sequence=flagged, state="ready", campaign_id=32, smartlead_status="BOUNCE_BREACH"
    )
    detail = sdr_verdict(sdr).detail
    assert "Campaign 31 is gone" in detail and "campaign 32 for its bounce rate" in detail


def test_an_sdr_whose_mailboxes_are_all_unhealthy_is_failing_and_says_why():
    sdr = make_profile()
    own = int(sdr.smartlead_email_account_id)
    SdrMailbox.objects.create(
        profile=sdr, mailbox_id=own, position=0, healthy=False, problem="SMTP failing (535)"
    )
    verdict = sdr_verdict(sdr)
    assert verdict.status == Status.FAILING
    assert (
        verdict.detail.startswith("No healthy mailbox: ") and "SMTP failing (535)" in verdict.detail
    )
    SdrMailbox.objects.create(profile=sdr, mailbox_id=own + 1, position=1, address="b@x.test")
    verdict = sdr_verdict(sdr)  # one mailbox down, another sending: OK, and said
    assert verdict.status == Status.OK and "Not sending from: " in verdict.detail


def test_an_sdr_whose_enrollments_wait_is_late_unless_the_executor_is_the_cause():
    sdr = make_profile()
    make_enrollment(sequence=make_sequence(creator=sdr), due_in=-45 * MIN)
    verdict = sdr_verdict(sdr)
    assert verdict.status == Status.LATE and "waiting for 45 min" in verdict.detail
    assert sdr_verdict(sdr, executor_ok=False).status == Status.OK


def test_an_sdr_verdict_says_when_they_last_pushed():
    sdr = make_profile()
    Push.objects.create(
        enrollment_id=sdr.pk,
        campaign_id=1,
        sequence_id=sdr.pk,
        profile_id=sdr.pk,
        email="a@b.test",
        state="pushed",
        pushed_at=timezone.now() - 3 * MIN,
    )
    verdict = sdr_verdict(sdr)
    assert verdict.status == Status.OK and "last push 3 min ago" in verdict.detail


def test_sdrs_without_a_key_or_an_active_sequence_are_not_judged():
    make_profile(connected=False)
    make_sequence(creator=make_profile(connected=False), status="draft")
    assert verdicts.sdr_verdicts(timezone.now(), executor_ok=True) == []


def test_every_verdict_costs_a_fixed_number_of_queries(django_assert_max_num_queries):
    for _ in range(5):
        sdr = make_profile()
        make_enrollment(sequence=make_sequence(creator=sdr))
    with django_assert_max_num_queries(12):
        found = verdicts.all_verdicts(timezone.now())
    assert len(found) == 9


# --- GET /status --------------------------------------------------------------------------
def test_status_needs_the_token_or_a_staff_login(client, django_user_model):
    url = reverse("ops-status")
    refused = client.get(url)
    assert refused.status_code == 401 and refused["WWW-Authenticate"] == 'Bearer realm="status"'
    assert client.get(url, HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    client.force_login(django_user_model.objects.create_user("sdr", password="pw"))
    assert client.get(url).status_code == 403


def test_status_is_503_while_a_job_is_late_and_200_once_all_are_ok(client):
    url = reverse("ops-status")
    auth = {"HTTP_AUTHORIZATION": f"Bearer {TOKEN}"}
    late = client.get(url, **auth)
    assert late.status_code == 503 and late.json()["status"] == "late"
    run(1)
    now = timezone.now()
    ReconcileRun.objects.create(trigger="schedule", started_at=now, finished_at=now)
    fine = client.get(url, **auth).json()
    assert fine["status"] == "ok" and fine["counts"] == {"ok": 4, "late": 0, "failing": 0}
    executor = next(job for job in fine["jobs"] if job["key"] == "executor")
    assert executor["expected_every_minutes"] == 15 and executor["grace_minutes"] == 10
    assert executor["minutes_since_success"] == 1


def test_status_answers_staff_signed_in_to_the_admin(admin_client):
    assert admin_client.get(reverse("ops-status")).json()["jobs"]


def test_status_without_a_configured_token_refuses_every_token(client, settings):
    settings.HEALTH_STATUS_TOKEN = ""
    response = client.get(reverse("ops-status"), HTTP_AUTHORIZATION="Bearer ")
    assert response.status_code == 401


def test_health_stays_the_platforms_database_probe(client):
    assert client.get("/health").json() == {"status": "ok", "database": "ok"}
