"""Smartlead → app without webhooks: the reconcile pass repairs what lost deliveries missed.

A delivery can be lost (a deploy, an outage past Smartlead's 3 retries); then the app never
learns of a reply and would go on to create a call task for someone who answered. Hourly (a
django-q2 schedule, also `manage.py reconcile_smartlead`), for each provisioned campaign of a
connected SDR, with that SDR's key, within its rate limit and a time budget:

1. the campaign's leads Smartlead marks replied, bounced or unsubscribed (`emailStatus`), only
   those whose enrollment here an event can still change (`Enrollment.open_to_events()`: a
   completed one too, since a reply to the last email often comes after it);
2. for each, its message history, turned into the event the webhook would have carried, with the
   same identity (`webhooks.identify`: campaign + stats_id + type), stored like a delivery
   (source `reconcile`): a webhook that arrives before or after is a duplicate, applied once;
3. the new events applied by the webhook path (`applying.apply`, tenant scoping included);
4. leads Smartlead has COMPLETED whose remaining steps here are all emails: their enrollment
   completes (a call step still ahead is ours to do, so that one is left to the executor);
5. leads whose category (the list's `lead_category_id`, read by the account's names) is one we
   act on and not the one we last applied: the LEAD_CATEGORY_UPDATED that was lost, stored and
   applied like the rest (an Interested lead gets its call task, an out-of-office one its pause).

Each SDR's mailboxes are read for health first (`read_health`): the hourly health read that
holds a failing mailbox and releases a mended one. The events of steps 2 and 5 are rebuilt in
smartlead/missed.py.

A pass is shared out like the executor's runs: one `Share` per SDR, taken by any worker thread of
any process (the schedule enqueues tasks, smartlead/tasks.py; the command works in one process),
and closed by whoever finishes last, with every SDR's counts on the `ReconcileRun` (admin).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import F
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from outboundhq import logs
from profiles.health import read_mailbox_health
from profiles.models import Profile
from sequences import workers
from sequences.models import (
    CampaignProvisioning,
    Enrollment,
    EnrollmentStatus,
    Job,
    Push,
    SequenceStatus,
    Share,
    ShareState,
    StepType,
)
from sequences.provisioning import campaign_gone, needs_attention
from smartlead import applying, missed
from smartlead.api import (
    NotFound,
    SmartleadClient,
    SmartleadError,
    limits,
)
from smartlead.models import ReconcileRun, WebhookEvent

log = logging.getLogger(__name__)

# What a share of the pass counts (ReconcileRun's fields of the same names).
COUNTED = ("campaigns", "smartlead_requests", "completed")


@dataclass
class Pass:
    """One reconcile pass as a worker holds it: its record, what it reads, its deadline (on the
    client's clock, `limits.clock`), and who is told of progress in this process."""

    record: ReconcileRun
    user_id: Any = None
    sequence_id: Any = None
    since: datetime | None = None
    deadline: float = 0.0
    progress: Callable[[int, int, int], None] | None = None
    campaigns: int = 0  # in all, for progress
    read: int = 0
    found: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def of(cls, record: ReconcileRun) -> Pass:
        """A pass started elsewhere, as a worker of it sees it."""
        scope = record.scope or {}
        left = (record.deadline - timezone.now()).total_seconds() if record.deadline else 0.0
        since = parse_datetime(scope["since"]) if scope.get("since") else None
        return cls(record, scope.get("user_id"), scope.get("sequence_id"), since)._ends_in(left)

    def _ends_in(self, seconds: float) -> Pass:
        self.deadline = limits.clock() + seconds
        return self

    def campaign_read(self, found: int) -> None:
        with self.lock:
            self.read, self.found = self.read + 1, self.found + found
            if self.progress is not None:
                self.progress(self.read, self.campaigns, self.found)


def reconcile(
    *,
    trigger: str,
    user_id: Any = None,
    sequence_id: Any = None,
    since: datetime | None = None,
    time_budget: float | None = None,
    progress: Callable[[int, int, int], None] | None = None,
) -> ReconcileRun:
    """One pass in this process; `progress(campaigns done, campaigns in all, events found)`
    after each campaign (the command's terminal output)."""
    pass_ = start(
        trigger=trigger,
        user_id=user_id,
        sequence_id=sequence_id,
        since=since,
        time_budget=time_budget,
        shared=False,
    )
    pass_.progress = progress
    try:
        work(pass_)
    finally:
        close(pass_, alone=True)
    return pass_.record


def start(
    *,
    trigger: str,
    user_id: Any = None,
    sequence_id: Any = None,
    since: datetime | None = None,
    time_budget: float | None = None,
    shared: bool = True,
) -> Pass:
    """The pass's record and one share per SDR with campaigns to read, for any worker."""
    budget = time_budget or settings.RECONCILE_TIME_BUDGET_SECONDS
    scope = {"user_id": user_id, "sequence_id": sequence_id, "since": since}
    record = ReconcileRun.objects.create(
        trigger=trigger,
        started_by=workers.identity(),
        deadline=timezone.now() + timedelta(seconds=budget),
        scope={k: str(v) if k != "since" else v.isoformat() for k, v in scope.items() if v},
    )
    workers.take_over()
    by_sdr = campaigns_to_read(user_id=user_id, sequence_id=sequence_id)
    Share.objects.share_out(
        Job.RECONCILE,
        record.pk,
        {sdr: [] for sdr in by_sdr if sdr is not None},
        run_started=record.started_at,
        deadline=record.deadline,
        shared=shared,
    )
    pass_ = Pass(record, user_id, sequence_id, since)._ends_in(budget)
    pass_.campaigns = sum(len(campaigns) for campaigns in by_sdr.values())
    return pass_


def work(pass_: Pass) -> None:
    """This process's threads on the pass's SDRs until none is waiting."""
    workers.in_threads(settings.RECONCILE_CONCURRENCY, lambda: work_through(pass_), name="rec")


def work_through(pass_: Pass) -> None:
    left = max(0.0, pass_.deadline - limits.clock())
    for share in workers.taken(Job.RECONCILE, pass_.record.pk, deadline=time.monotonic() + left):
        tally = read_sdr(pass_, share.profile_id)
        counts = {name: getattr(tally, name) for name in COUNTED} | {
            "waiting": tally.waiting,
            "repaired": tally.repaired,
        }
        Share.objects.finish(share, counts=counts, errors=tally.errors)


def read_sdr(pass_: Pass, profile_id: Any) -> ReconcileRun:
    """One SDR's campaigns read with their key, the events found applied; what it did on an
    unsaved run record (the pass gathers every SDR's when it closes)."""
    tally = ReconcileRun(trigger=pass_.record.trigger)
    tally.waiting = 0
    campaigns = campaigns_to_read(user_id=profile_id, sequence_id=pass_.sequence_id)
    campaigns = campaigns.get(profile_id, [])
    sender = next(Profile.objects.senders([profile_id]))
    if sender.credentials is None:
        tally.errors.append(f"{sender.why_not}: {len(campaigns)} campaigns wait.")
        return tally
    stored: list[int] = []
    # The client's deadline is on the same clock: a wait in its limiter or a retry that would
    # pass it raises instead (the campaign's error), so the pass ends on time.
    with SmartleadClient(sender.credentials.api_key, deadline=pass_.deadline) as client:
        read_health(tally, client, sender.profile)
        for record in campaigns:
            if limits.clock() >= pass_.deadline:
                tally.waiting += 1
                continue
            found = read(tally, client, record, pass_.since)
            stored += found
            pass_.campaign_read(len(found))
    if stored:
        applying.apply(WebhookEvent.objects.filter(pk__in=stored))
        applied = WebhookEvent.objects.filter(pk__in=stored, outcome="applied")
        tally.repaired = dict(Counter(applied.values_list("event_type", flat=True)))
    return tally


def close(pass_: Pass, *, alone: bool = False, left_alone: bool = False) -> bool:
    """Once no share is open, every SDR's counts on the pass's record, saved and logged, by
    whichever worker finishes last; returns whether this call closed it. `alone` and
    `left_alone`: see sequences.executor.close."""
    record = pass_.record
    if alone:
        workers.leave_mine(Job.RECONCILE, record.pk)
    if alone or left_alone or limits.clock() >= pass_.deadline:
        Share.objects.leave_waiting(Job.RECONCILE, record.pk)
    if Share.objects.still_open(Job.RECONCILE, record.pk):
        return False
    gathered = gather(record)
    closed = ReconcileRun.objects.filter(pk=record.pk, finished_at__isnull=True).update(**gathered)
    for name, value in gathered.items():
        setattr(record, name, value)
    if closed:
        log.info("Reconcile run %s: %s", record.pk, summary(record))
    return bool(closed)


def gather(record: ReconcileRun) -> dict[str, Any]:
    totals: Counter[str] = Counter()
    repaired: Counter[str] = Counter()
    errors: list[str] = []
    shares = Share.objects.of_run(Job.RECONCILE, record.pk)
    for state, counts, share_errors in shares.values_list("state", "counts", "errors"):
        totals.update({k: int(counts.get(k) or 0) for k in (*COUNTED, "waiting")})
        repaired.update(counts.get("repaired") or {})
        errors += share_errors
        if state == ShareState.LEFT and not counts:
            totals["sdrs_left"] += 1
    if totals["waiting"]:
        errors.append(
            f"The time budget is spent: {totals['waiting']} campaigns wait, and go first in "
            "the next pass."
        )
    if totals["sdrs_left"]:
        errors.append(f"The time budget is spent: {totals['sdrs_left']} SDRs' campaigns wait.")
    return {name: totals[name] for name in COUNTED} | {
        "repaired": dict(repaired),
        "errors": errors[:200],
        "workers": Share.objects.workers_of(Job.RECONCILE, record.pk),
        "finished_at": timezone.now(),
    }


def read_health(run: ReconcileRun, client: SmartleadClient, profile: Profile) -> None:
    """One SDR's hourly mailbox health read (profiles/health.py), counted on the run: a mailbox
    failing is held, a mended one released; the outbox acts on either at the next run."""
    before = client.requests_sent
    run.errors.extend(read_mailbox_health(client, profile))
    run.smartlead_requests += client.requests_sent - before


def campaigns_to_read(
    *, user_id: Any = None, sequence_id: Any = None
) -> dict[Any, list[CampaignProvisioning]]:
    """Provisioned campaigns of live sequences by SDR, those read longest ago (or never) first:
    a pass the time budget cuts short leaves the rest to go first in the next one, so no
    campaign is starved by those ahead of it."""
    records = (
        CampaignProvisioning.objects.filter(
            state="ready",
            campaign_id__isnull=False,
            sequence__status__in=[SequenceStatus.ACTIVE, SequenceStatus.PAUSED],
        )
        .select_related("sequence")
        .order_by(F("reconciled_at").asc(nulls_first=True), "campaign_id")
    )
    if user_id:
        records = records.filter(sequence__created_by_id=user_id)
    if sequence_id:
        records = records.filter(sequence_id=sequence_id)
    by_sdr: dict[Any, list[CampaignProvisioning]] = defaultdict(list)
    for record in records:
        by_sdr[record.sequence.created_by_id].append(record)
    return by_sdr


def read(
    run: ReconcileRun, client: SmartleadClient, record: CampaignProvisioning, since: Any
) -> list[int]:
    """One campaign read and counted on the run; the ids of the events it stored.

    Nothing one campaign holds stops the pass for the others: Smartlead failing is retried
    first next pass (the campaign keeps its place); anything else (data we cannot read) is on
    the run's errors, and the campaign goes to the back, so it cannot stand first every hour."""
    before = client.requests_sent
    stored: list[int] = []
    try:
        stored = repair(run, client, record, since)
        CampaignProvisioning.objects.filter(pk=record.pk).update(reconciled_at=timezone.now())
    except SmartleadError as exc:
        run.errors.append(logs.redact(f"Campaign {record.campaign_id}: {exc}"))
        if isinstance(exc, NotFound):
            lost(run, client, record)
    except Exception as exc:  # noqa: BLE001 - one campaign's bad data must not stop the others
        log.exception("Reconciling campaign %s failed", record.campaign_id)
        run.errors.append(
            logs.redact(f"Campaign {record.campaign_id}: {type(exc).__name__}: {exc}")[:1000]
        )
        CampaignProvisioning.objects.filter(pk=record.pk).update(reconciled_at=timezone.now())
    run.campaigns += 1
    run.smartlead_requests += client.requests_sent - before
    return stored


def lost(run: ReconcileRun, client: SmartleadClient, record: CampaignProvisioning) -> None:
    """A 404 on a campaign's leads: asked as the executor asks (`campaign_gone`), a campaign
    Smartlead no longer has stops being "ready" and needs attention, instead of failing every
    pass while the admin and dashboard call it ready."""
    creator = record.sequence.created_by
    mailbox = record.mailbox_id or (creator.mailbox_id if creator else None)
    try:
        reason = campaign_gone(client, record.campaign_id, mailbox or 0)
    except SmartleadError as exc:
        run.errors.append(logs.redact(f"Campaign {record.campaign_id} not looked up: {exc}"))
        return
    if reason is not None:
        needs_attention(record.sequence_id, reason)
        run.errors.append(f"Sequence {record.sequence_id} needs attention: {reason}")


def repair(
    run: ReconcileRun, client: SmartleadClient, record: CampaignProvisioning, since: Any
) -> list[int]:
    """One campaign: the events its open leads are missing, stored; returns their ids."""
    campaign_id = record.campaign_id
    ledger = dict(
        Push.objects.filter(campaign_id=campaign_id, state="pushed").values_list(
            "email", "enrollment_id"
        )
    )
    open_ids = set(
        Enrollment.objects.filter(
            pk__in=ledger.values(), status__in=Enrollment.open_to_events()
        ).values_list("pk", flat=True)
    )
    stored: list[int] = []
    for flag, event_type in missed.MISSED.items():
        for lead in client.campaign_leads(campaign_id, email_status=flag):
            if ledger.get(lead.email) not in open_ids:
                continue
            history = client.message_history(campaign_id, lead.id)
            for payload in missed.missed_events(event_type, campaign_id, lead, history, since):
                stored += missed.store(payload)
    leads = client.campaign_leads(campaign_id)
    finished = [lead for lead in leads if lead.status == "COMPLETED"]
    run.completed += complete(
        record, [ledger[lead.email] for lead in finished if lead.email in ledger]
    )
    try:
        stored += missed.categorised(client, record, ledger, leads)
    except SmartleadError as exc:  # what was found so far is still applied
        run.errors.append(logs.redact(f"Campaign {campaign_id} categories: {exc}"))
    return stored


def complete(record: CampaignProvisioning, enrollment_ids: list[Any]) -> int:
    """Enrollments whose emails Smartlead has all sent, and whose remaining steps are emails."""
    steps = sorted(record.sequence.steps.all(), key=lambda s: s.step_number)
    candidates = Enrollment.objects.filter(
        pk__in=enrollment_ids, status=EnrollmentStatus.ACTIVE
    ).values_list("pk", "current_step")
    done = [
        pk
        for pk, current in candidates
        if all(s.step_type == StepType.EMAIL for s in steps if s.step_number >= current)
    ]
    if not done:
        return 0
    return Enrollment.objects.end(done, EnrollmentStatus.COMPLETED, timezone.now())


def summary(run: ReconcileRun) -> str:
    repaired = ", ".join(f"{n} {kind}" for kind, n in sorted(run.repaired.items())) or "nothing"
    return (
        f"{run.campaigns} campaigns read, repaired: {repaired}, {run.completed} completed, "
        f"{run.smartlead_requests} Smartlead requests, {len(run.errors)} errors"
    )
