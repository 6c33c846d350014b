"""A verdict per job, the way healthchecks.io shows a check: OK, late or failing, and when it
last succeeded, against the period it is expected to run at and a grace time.

Every rule is here, reading only the records the jobs leave behind:

- `executor`: the 15-minute schedule (`ExecutorRun`s started by the schedule or the cron
  endpoint; a run from the command is a person's, and proves nothing about the schedule);
- `reconcile`: the hourly pass (`ReconcileRun`s started by the schedule);
- `outbox`: changes made in the app reaching Smartlead (the `SyncChange` backlog);
- `webhooks`: Smartlead's deliveries arriving and being applied (`WebhookEvent` intake);
- `sdr:<profile id>`: one SDR's credentials and mailboxes (their credential status, their
  mailboxes' health, their campaigns at Smartlead, their enrollments waiting).

Late: no success within the period plus its grace. Failing: the job ran and what it said is
wrong (an error, a refused key, a campaign gone). Shown at the top of the dashboard, served by
`GET /status`, announced by outboundhq/alerts.py; 12 queries, whatever the rows or SDRs.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count, Max, Min, Q, Sum
from django.urls import reverse

from outboundhq.health import SEVERITY, Verdict, ago, span
from outboundhq.links import changelist
from outboundhq.models import Status
from profiles.credentials import HELD, REFUSED, SmartleadStatus
from profiles.mailboxes import SdrMailbox
from profiles.models import Profile
from sequences import tasks as executor_schedule
from sequences.models import (
    CampaignProvisioning,
    Enrollment,
    ExecutorRun,
    ProvisioningState,
    Push,
    PushState,
    RunTrigger,
    Sequence,
    SequenceStatus,
    SyncChange,
    SyncState,
)
from smartlead import tasks as reconcile_schedule
from smartlead.models import STUCK_AFTER, Outcome, ReconcileRun, WebhookEvent

# Periods come from the schedules themselves; the graces are how late a run may be before
# anyone is told (a 15-minute run can take up to EXECUTOR_TIME_BUDGET_SECONDS to start the next).
EXECUTOR_EVERY = timedelta(minutes=executor_schedule.EVERY_MINUTES)
EXECUTOR_GRACE = timedelta(minutes=10)
RECONCILE_EVERY = timedelta(minutes=reconcile_schedule.EVERY_MINUTES)
RECONCILE_GRACE = timedelta(minutes=20)
# Each executor run applies the outbox first: a change waits at most a run or two.
OUTBOX_EVERY = 2 * EXECUTOR_EVERY
OUTBOX_GRACE = timedelta(minutes=10)
OUTBOX_RETRIES = 3  # a pending change refused this many times is failing, not just waiting
# Smartlead sends in Mon-Fri windows: a weekend without deliveries is normal.
WEBHOOKS_EVERY = timedelta(days=1)
WEBHOOKS_GRACE = timedelta(days=2)
WEBHOOKS_LOOKBACK = timedelta(days=3)  # pushes in this time mean deliveries are expected
# An SDR's due enrollment waits at most a run or two (as the dashboard's "waiting" says).
SDR_EVERY = EXECUTOR_EVERY
SDR_GRACE = timedelta(minutes=15)
RECENT_RUNS = 20
PUSH_WINDOW = timedelta(days=7)  # "last push" looks this far back
# What the executor writes when a whole run stopped (sequences/executor.py: execute).
RUN_STOPPED = "The run stopped"
SCHEDULED = (RunTrigger.SCHEDULE, RunTrigger.CRON)


def all_verdicts(now: datetime) -> list[Verdict]:
    """Every job's verdict as of `now`: the four jobs, then each SDR's (the worst first)."""
    executor = executor_verdict(now)
    jobs = [executor, reconcile_verdict(now), outbox_verdict(now), webhook_verdict(now)]
    sdrs = sdr_verdicts(now, executor_ok=executor.ok)
    return jobs + sorted(sdrs, key=lambda v: (SEVERITY[v.status], v.name))


# --- The executor schedule --------------------------------------------------------------
def run_failure(run: ExecutorRun, now: datetime) -> str | None:
    """Why a run failed, or None when it did its job (per-SDR errors are the SDRs' verdicts)."""
    if run.finished_at is None:
        stuck_after = timedelta(seconds=settings.EXECUTOR_TIME_BUDGET_SECONDS) + EXECUTOR_GRACE
        if now - run.started_at > stuck_after:
            return f"it started {ago(now - run.started_at)} and never finished (worker killed?)"
        return None
    errors = [str(e) for e in run.errors or []]
    stopped = next((e for e in errors if e.startswith(RUN_STOPPED)), None)
    if stopped:
        return stopped
    if errors and run.pushed == 0 and run.deferred > 0:
        return f"nothing was pushed and {run.deferred} leads were put back: {errors[0]}"
    return None


def executor_verdict(now: datetime) -> Verdict:
    runs = list(
        ExecutorRun.objects.filter(dry_run=False, trigger__in=SCHEDULED).order_by("-started_at")[
            :RECENT_RUNS
        ]
    )
    running = [r for r in runs if r.finished_at is None and run_failure(r, now) is None]
    done = [r for r in runs if r not in running]
    success = next((r for r in done if run_failure(r, now) is None), None)
    base = {
        "key": "executor",
        "name": "Executor schedule",
        "last_success": success.started_at if success else None,
        "every": EXECUTOR_EVERY,
        "grace": EXECUTOR_GRACE,
        "href": changelist("sequences_executorrun"),
    }
    if done and (failure := run_failure(done[0], now)):
        when = ago(now - done[0].started_at)
        return Verdict(status=Status.FAILING, detail=f"The run {when} failed: {failure}", **base)
    if late := schedule_late(now, success, base, "run", "execute_sequences"):
        return Verdict(status=Status.LATE, detail=late, **base)
    detail = f"Last run {ago(now - success.started_at)}: {success.pushed} pushed."
    if running:
        detail += " A run is in progress."
    return Verdict(status=Status.OK, detail=detail, **base)


def schedule_late(
    now: datetime, success: Any, base: dict[str, Any], what: str, command: str
) -> str:
    """Why a scheduled job is late (no success within its period and grace), or ""."""
    if success is not None and now - success.started_at <= base["every"] + base["grace"]:
        return ""
    since = f"since {ago(now - success.started_at)}" if success else "yet"
    return (
        f"No scheduled {what} {since}: is the worker (manage.py qcluster) running? "
        f"manage.py {command} runs one now."
    )


# --- The reconcile pass -----------------------------------------------------------------
def reconcile_verdict(now: datetime) -> Verdict:
    runs = list(ReconcileRun.objects.filter(trigger="schedule").order_by("-started_at")[:5])
    stuck_after = timedelta(seconds=settings.RECONCILE_TIME_BUDGET_SECONDS) + RECONCILE_GRACE
    base = {
        "key": "reconcile",
        "name": "Reconcile pass",
        "every": RECONCILE_EVERY,
        "grace": RECONCILE_GRACE,
        "href": changelist("smartlead_reconcilerun"),
    }

    def failure(run: Any) -> str | None:
        if run.finished_at is None:
            late = now - run.started_at > stuck_after
            return f"it started {ago(now - run.started_at)} and never finished" if late else None
        lost = [e for e in run.errors or [] if str(e).startswith("Campaign ")]
        if run.campaigns and len(lost) >= run.campaigns:
            return f"every campaign it read failed: {lost[0]}"
        return None

    done = [r for r in runs if r.finished_at is not None or failure(r)]
    success = next((r for r in done if failure(r) is None), None)
    base["last_success"] = success.started_at if success else None
    if done and (why := failure(done[0])):
        detail = f"The pass {ago(now - done[0].started_at)} failed: {why}"
        return Verdict(status=Status.FAILING, detail=detail, **base)
    if late := schedule_late(now, success, base, "pass", "reconcile_smartlead"):
        return Verdict(status=Status.LATE, detail=late, **base)
    repaired = sum((success.repaired or {}).values())
    detail = (
        f"Last pass {ago(now - success.started_at)}: {success.campaigns} campaigns read, "
        f"{repaired} lost events repaired, {len(success.errors or [])} errors."
    )
    return Verdict(status=Status.OK, detail=detail, **base)


# --- The outbox -------------------------------------------------------------------------
def outbox_verdict(now: datetime) -> Verdict:
    pending = Q(state=SyncState.PENDING)
    totals = SyncChange.objects.aggregate(
        waiting=Count("id", filter=pending),
        oldest=Min("created_at", filter=pending),
        stuck=Count("id", filter=pending & Q(attempts__gte=OUTBOX_RETRIES)),
        failed=Count("id", filter=Q(state=SyncState.FAILED)),
        last_done=Max("done_at", filter=Q(state=SyncState.DONE)),
    )
    example = (
        SyncChange.objects.filter(pending, attempts__gte=OUTBOX_RETRIES)
        .order_by("created_at")
        .values_list("last_error", flat=True)
        .first()
    )
    base = {
        "key": "outbox",
        "name": "Outbox (app changes to Smartlead)",
        "last_success": totals["last_done"],
        "every": OUTBOX_EVERY,
        "grace": OUTBOX_GRACE,
        "href": changelist("sequences_syncchange", state=SyncState.PENDING.value),
    }
    failed = (
        f" {totals['failed']} failed for good (act on them by hand)." if totals["failed"] else ""
    )
    if totals["stuck"]:
        detail = (
            f"{totals['stuck']} changes were refused {OUTBOX_RETRIES}+ times and keep being "
            f"retried: {example or 'no error recorded'}.{failed}"
        )
        return Verdict(status=Status.FAILING, detail=detail, **base)
    oldest = totals["oldest"]
    if oldest is not None and now - oldest > OUTBOX_EVERY + OUTBOX_GRACE:
        detail = (
            f"{totals['waiting']} changes wait for Smartlead, the oldest for "
            f"{span(now - oldest)}: each executor run should apply them.{failed}"
        )
        return Verdict(status=Status.LATE, detail=detail, **base)
    waiting = (
        f"{totals['waiting']} changes waiting, the oldest for {span(now - oldest)}."
        if oldest
        else "Nothing is waiting."
    )
    return Verdict(status=Status.OK, detail=waiting + failed, **base)


# --- Webhook intake ---------------------------------------------------------------------
def webhook_verdict(now: datetime) -> Verdict:
    day = now - timedelta(days=1)
    # Only the outcomes that need looking at: the (outcome, id) index narrows these.
    troubles = WebhookEvent.objects.filter(
        outcome__in=[Outcome.FAILED, Outcome.REJECTED, Outcome.RECEIVED], received_at__gte=day
    ).aggregate(
        failed=Count("id", filter=Q(outcome=Outcome.FAILED)),
        rejected=Count("id", filter=Q(outcome=Outcome.REJECTED)),
        stuck=Count("id", filter=Q(outcome=Outcome.RECEIVED, received_at__lt=now - STUCK_AFTER)),
    )
    last = (
        WebhookEvent.objects.exclude(outcome=Outcome.REJECTED)
        .exclude(source="reconcile")
        .order_by("-id")
        .values_list("received_at", flat=True)
        .first()
    )
    pushed = ExecutorRun.objects.filter(started_at__gte=now - WEBHOOKS_LOOKBACK).aggregate(
        n=Sum("pushed")
    )["n"]
    base = {
        "key": "webhooks",
        "name": "Webhook intake",
        "last_success": last,
        "every": WEBHOOKS_EVERY,
        "grace": WEBHOOKS_GRACE,
        "href": changelist("smartlead_webhookevent"),
    }
    problem = webhook_problem(troubles, last, day)
    if problem:
        return Verdict(status=Status.FAILING, detail=problem, **base)
    if pushed and (last is None or now - last > WEBHOOKS_EVERY + WEBHOOKS_GRACE):
        since = f"for {span(now - last)}" if last else "yet"
        detail = (
            f"No delivery from Smartlead {since}, while {pushed} leads were pushed in the last "
            f"{span(WEBHOOKS_LOOKBACK)}: check the campaigns' webhooks (manage.py resave_webhooks)."
        )
        return Verdict(status=Status.LATE, detail=detail, **base)
    detail = f"Last delivery {ago(now - last)}." if last else "No delivery yet; none expected."
    if troubles["rejected"]:
        detail += f" Rejected in the last 24 h: {troubles['rejected']}."
    return Verdict(status=Status.OK, detail=detail, **base)


def webhook_problem(troubles: dict[str, int], last: datetime | None, day: datetime) -> str:
    if not settings.SMARTLEAD_WEBHOOK_SECRET or not settings.PUBLIC_BASE_URL:
        return (
            "Campaigns get no webhook, and the receiver refuses deliveries without a secret: set "
            "PUBLIC_BASE_URL and SMARTLEAD_WEBHOOK_SECRET."
        )
    if troubles["stuck"]:
        return (
            f"{troubles['stuck']} events were stored but not applied for over "
            f"{span(STUCK_AFTER)} (is the web process's applier running?): "
            "manage.py reprocess_webhooks applies them."
        )
    if troubles["failed"]:
        return (
            f"{troubles['failed']} events failed to apply in the last 24 h: open them for the "
            "error, then manage.py reprocess_webhooks."
        )
    if troubles["rejected"] and (last is None or last < day):
        return (
            f"Every delivery of the last 24 h was rejected ({troubles['rejected']}): open them "
            "for the reason."
        )
    return ""


# --- Each SDR's credentials and mailbox -------------------------------------------------
TROUBLE = {
    ProvisioningState.NEEDS_ATTENTION: "campaign {campaign} is gone from their Smartlead "
    "account (re-provision it from the campaign provisioning list)",
    "BOUNCE_BREACH": "Smartlead flagged campaign {campaign} for its bounce rate (check the "
    "leads' addresses and the mailbox)",
}


def sdr_verdicts(now: datetime, *, executor_ok: bool, only: Any = None) -> list[Verdict]:
    """One verdict per SDR who has a key or an active sequence (or the one SDR `only`). Their
    enrollments waiting count as late only while the executor is OK: a stopped schedule is
    one alert, not one per SDR."""

    def mine(rows: Any, field: str) -> Any:
        return rows if only is None else rows.filter(**{field: only})

    active = Sequence.objects.filter(status=SequenceStatus.ACTIVE).values("created_by_id")
    has_key = Q(smartlead_api_key__isnull=False) & ~Q(smartlead_api_key="")
    profiles = mine(Profile.objects.with_smartlead_status(), "pk").select_related(
        "credential_check"
    )
    if only is None:
        profiles = profiles.filter(has_key | Q(pk__in=active))
    waiting = {
        row["sequence__created_by"]: row
        for row in mine(Enrollment.objects.due_by(now), "sequence__created_by")
        .values("sequence__created_by")
        .annotate(n=Count("id"), oldest=Min("next_send_at"))
        .order_by()
    }
    pushes = dict(
        mine(
            Push.objects.filter(state=PushState.PUSHED, pushed_at__gte=now - PUSH_WINDOW),
            "profile_id",
        )
        .values("profile_id")
        .annotate(last=Max("pushed_at"))
        .values_list("profile_id", "last")
    )
    sick: dict[Any, list[str]] = {}
    for mailbox in mine(SdrMailbox.objects.filter(healthy=False), "profile_id"):
        sick.setdefault(mailbox.profile_id, []).append(mailbox.describe())
    trouble = Q(state=ProvisioningState.NEEDS_ATTENTION) | Q(smartlead_status="BOUNCE_BREACH")
    troubles: dict[Any, list[str]] = {}
    for row in mine(CampaignProvisioning.objects.filter(trouble), "sequence__created_by").values(
        "sequence__created_by_id", "campaign_id", "state", "smartlead_status"
    ):
        kind = row["state"] if row["state"] in TROUBLE else row["smartlead_status"]
        troubles.setdefault(row["sequence__created_by_id"], []).append(
            TROUBLE[kind].format(campaign=row["campaign_id"])
        )
    return [
        sdr_verdict(
            profile,
            now,
            waiting=waiting.get(profile.pk),
            last_push=pushes.get(profile.pk),
            troubles=troubles.get(profile.pk, []),
            sick=sick.get(profile.pk, []),
            executor_ok=executor_ok,
        )
        for profile in profiles
    ]


def sdr_verdict(
    profile: Profile,
    now: datetime,
    *,
    waiting: dict[str, Any] | None,
    last_push: datetime | None,
    troubles: list[str],
    sick: list[str],
    executor_ok: bool,
) -> Verdict:
    status = profile.smartlead_status()
    due = waiting["n"] if waiting else 0
    base = {
        "key": f"sdr:{profile.pk}",
        "name": f"SDR {profile.label}",
        "last_success": last_push,
        "every": SDR_EVERY,
        "grace": SDR_GRACE,
        "href": reverse("ops-sdr", args=[profile.pk]),
    }
    if status in REFUSED or status in (HELD, SmartleadStatus.UNREADABLE_KEY):
        check = getattr(profile, "credential_check", None)
        said = f": {check.detail}" if check and check.detail else "."
        if status == HELD:  # the key works; its mailboxes say why nothing new goes out
            said = ": " + "; ".join(sick) + "." if sick else "."
        detail = f"{status.label}{said}" + (f" {due} enrollments wait." if due else "")
        return Verdict(status=Status.FAILING, detail=detail, **base)
    if status == SmartleadStatus.NO_API_KEY and due:
        detail = f"Not connected to Smartlead (no API key): {due} enrollments wait."
        return Verdict(status=Status.FAILING, detail=detail, **base)
    if troubles:
        detail = "; ".join(troubles) + "."
        detail = detail[0].upper() + detail[1:]
        return Verdict(status=Status.FAILING, detail=detail, **base)
    oldest = waiting["oldest"] if waiting else None
    if executor_ok and oldest and now - oldest > SDR_EVERY + SDR_GRACE:
        detail = (
            f"{due} enrollments are due, the oldest waiting for {span(now - oldest)}: runs "
            "are not reaching them (see the latest run's errors)."
        )
        return Verdict(status=Status.LATE, detail=detail, **base)
    pushed = f"last push {ago(now - last_push)}" if last_push else "no push in 7 days"
    # Some mailboxes down, others sending: the campaigns go on, without them.
    unwell = f" Not sending from: {'; '.join(sick)}." if sick else ""
    detail = f"{status.label}; {pushed}; {due} due.{unwell}"
    return Verdict(status=Status.OK, detail=detail, **base)
