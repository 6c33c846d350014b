"""The sequence executor: every 15 minutes, each SDR's ready enrollments go to their campaign.

One run:
1. Logs and skips the SDRs who have not connected Smartlead (their enrollments stay ready).
2. Plans each active sequence with ready enrollments: loads its steps once, reads its creator's
   credentials once, provisions its campaign if needed (in parallel, one per sequence).
3. For each planned sequence, claims its ready enrollments in chunks (a lease on
   `next_send_at`, taken with FOR UPDATE SKIP LOCKED, so concurrent runs never share one).
4. Walks each claimed enrollment's due step: first email step → a lead for Smartlead; later
   email step → bookkeeping only; call step → a call task once; unmet condition → skipped.
5. Sends the leads in full batches (one add-leads request per batch) from a bounded thread pool,
   each SDR within their own key's rate limit; the push ledger is written `pending` before a
   request and `pushed` after it, so an enrollment is never pushed twice.
6. Advances every enrollment (`current_step`, `next_send_at`, or `completed`) and writes the run
   record. Work it could not finish (errors, time budget) is released for the next run.

All database work happens on the calling thread; pool threads only talk to Smartlead.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Count, Q
from django.utils import timezone

from outboundhq import logs
from profiles.models import CredentialCheck, Profile, SmartleadCredentials, SmartleadStatus
from profiles.models import key_fingerprint as fingerprint
from sequences import walk
from sequences.models import (
    Enrollment,
    ExecutorRun,
    ProvisioningState,
    Sequence,
    SequenceStatus,
)
from sequences.provisioning import ProvisioningBlocked, ProvisioningBusy, provision
from smartlead.client import (
    MAX_LEADS_PER_REQUEST,
    AddLeadsResult,
    InvalidApiKey,
    NoApiAccess,
    NotFound,
    SmartleadClient,
    SmartleadError,
    ValidationFailed,
)

log = logging.getLogger(__name__)

NOT_CONNECTED = "User %s has not connected their Smartlead account"
_missing_key = Q(created_by__smartlead_api_key__isnull=True) | Q(created_by__smartlead_api_key="")
_missing_account = Q(created_by__smartlead_email_account_id__isnull=True) | Q(
    created_by__smartlead_email_account_id=""
)
NOT_CONNECTED_Q = _missing_key | _missing_account


@dataclass
class Scope:
    """What a run may touch: everything, or one SDR / one sequence, and at most `limit`."""

    user_id: uuid.UUID | None = None
    sequence_id: uuid.UUID | None = None
    limit: int | None = None

    def sequences(self) -> Q:
        q = Q(status=SequenceStatus.ACTIVE)
        if self.user_id:
            q &= Q(created_by_id=self.user_id)
        if self.sequence_id:
            q &= Q(pk=self.sequence_id)
        return q


@dataclass
class Batch:
    plan: walk.Plan
    items: list[walk.Claimed]


@dataclass
class Run:
    """The state of one run; `record` is what gets saved."""

    record: ExecutorRun
    scope: Scope
    started: datetime
    deadline: float
    pool: ThreadPoolExecutor
    clients: list[SmartleadClient] = field(default_factory=list)
    local: threading.local = field(default_factory=threading.local)
    lock: threading.Lock = field(default_factory=threading.Lock)
    refused: set[uuid.UUID] = field(default_factory=set)
    in_flight: dict[Future, Batch] = field(default_factory=dict)

    @property
    def out_of_time(self) -> bool:
        return time.monotonic() >= self.deadline

    @property
    def remaining(self) -> int | None:
        if self.scope.limit is None:
            return None
        return max(0, self.scope.limit - self.record.due)

    def error(self, message: str) -> None:
        log.warning(message)
        if len(self.record.errors) < 200:
            self.record.errors.append(message)


def execute(
    *,
    trigger: str,
    dry_run: bool = False,
    user_id: uuid.UUID | None = None,
    sequence_id: uuid.UUID | None = None,
    limit: int | None = None,
    time_budget: float | None = None,
) -> ExecutorRun:
    """Runs the executor once and returns its run record (unsaved for a dry run)."""
    scope = Scope(user_id=user_id, sequence_id=sequence_id, limit=limit)
    if dry_run:
        return walk.dry_run(trigger=trigger, scope_q=scope.sequences(), limit=limit)
    record = ExecutorRun.objects.create(trigger=trigger)
    token = logs.run_id.set(str(record.id))
    budget = time_budget or settings.EXECUTOR_TIME_BUDGET_SECONDS
    counter = _RoundTripCounter()
    try:
        with counter.counting(), ThreadPoolExecutor(settings.EXECUTOR_CONCURRENCY, "exec") as pool:
            run = Run(record, scope, timezone.now(), time.monotonic() + budget, pool)
            try:
                _run(run)
            finally:
                _drain(run)
                for client in run.clients:
                    client.close()
    except Exception as exc:
        record.errors.append(f"The run stopped: {exc.__class__.__name__}: {exc}")
        raise
    finally:
        record.finished_at = timezone.now()
        record.sql_round_trips = counter.count + 1  # + this save
        record.save()
        log.info("Executor run %s: %s", record.id, summary(record))
        logs.run_id.reset(token)
    return record


def _run(run: Run) -> None:
    skip_unconnected(run)
    for plan in plan_sequences(run):
        if run.out_of_time or run.remaining == 0:
            run.error("The run's time budget or limit is spent; the rest waits for the next run.")
            break
        process_sequence(run, plan)


def skip_unconnected(run: Run) -> None:
    """Step 1: one log line per unconnected SDR; their enrollments stay as they are."""
    ready = Enrollment.objects.ready().filter(
        sequence__in=Sequence.objects.filter(run.scope.sequences()).filter(NOT_CONNECTED_Q)
    )
    for row in ready.values("sequence__created_by").annotate(n=Count("id")).order_by():
        creator = row["sequence__created_by"]
        if creator is None:
            run.error(f"{row['n']} enrollments belong to sequences without a creator")
        else:
            log.info(NOT_CONNECTED, creator)
        run.record.skipped_no_credentials += row["n"]


def plan_sequences(run: Run) -> list[walk.Plan]:
    """Step 2: the sequences to work on, provisioned, with their creators' credentials."""
    ready_ids = Enrollment.objects.ready().values("sequence_id")
    sequences = list(
        Sequence.objects.filter(run.scope.sequences(), pk__in=ready_ids)
        .exclude(NOT_CONNECTED_Q)
        .select_related("created_by", "provisioning")
        .prefetch_related("steps")
        .order_by("created_by_id", "id")
    )
    refused = _refused_keys({s.created_by for s in sequences})
    candidates = []
    for sequence in sequences:
        credentials = sequence.created_by.smartlead_credentials()
        if credentials is None or sequence.created_by_id in refused:
            continue
        candidates.append((sequence, credentials))
    return list(_provision_all(run, candidates))


def _refused_keys(creators: set[Profile]) -> set[uuid.UUID]:
    """SDRs whose current key Smartlead already refused: no point asking again until it changes."""
    checks = CredentialCheck.objects.filter(profile_id__in=[p.id for p in creators], ok=False)
    keys = {p.id: p.smartlead_api_key or "" for p in creators}
    refused = {c.profile_id for c in checks if c.key_fingerprint == fingerprint(keys[c.profile_id])}
    for profile_id in refused:
        log.warning("User %s has a Smartlead key Smartlead refused; reconnect it", profile_id)
    return refused


def _provision_all(
    run: Run, candidates: list[tuple[Sequence, SmartleadCredentials]]
) -> Iterator[walk.Plan]:
    """Provisioning happens once per sequence, so it runs here, one sequence after another,
    keeping every database write on this thread; half the budget is the most it may take."""
    half_budget = time.monotonic() + (run.deadline - time.monotonic()) / 2
    for sequence, credentials in candidates:
        state = getattr(sequence, "provisioning", None)
        # A campaign id without our record was set by hand or before this backend: trusted.
        ready = state.state == ProvisioningState.READY if state else _has_campaign(sequence)
        if not ready and time.monotonic() >= half_budget:
            run.error(f"Sequence {sequence.id} waits for the next run to be provisioned.")
        elif not ready and _provision(run, sequence, credentials):
            run.record.campaigns_provisioned += 1
            sequence.refresh_from_db(fields=["smartlead_campaign_id"])
            ready = True
        if ready:
            yield walk.Plan.build(sequence, credentials)


def _has_campaign(sequence: Sequence) -> bool:
    return bool(sequence.smartlead_campaign_id and sequence.smartlead_campaign_id.isdigit())


def _provision(run: Run, sequence: Sequence, credentials: SmartleadCredentials) -> bool:
    try:
        provision(sequence, credentials, deadline=run.deadline)
        return True
    except ProvisioningBlocked as exc:
        run.error(f"Sequence {sequence.id} cannot be provisioned: {exc}")
    except ProvisioningBusy:
        log.info("Sequence %s is being provisioned by another run", sequence.id)
    except SmartleadError as exc:
        _credential_error(run, sequence.created_by, exc)
        run.error(f"Provisioning sequence {sequence.id} failed: {exc}")
    return False


def process_sequence(run: Run, plan: walk.Plan) -> None:
    """Steps 3-5 for one sequence: claim in chunks, walk, batch and send the leads."""
    leads: list[walk.Claimed] = []
    size = batch_size()
    while not run.out_of_time and plan.creator_id not in run.refused:
        chunk = walk.claim(plan, run.started, _chunk_size(run, size), run.scope.limit)
        if not chunk:
            break
        run.record.due += len(chunk)
        leads.extend(walk.walk(plan, chunk, run.record, run.record.id))
        while len(leads) >= size:
            _send(run, Batch(plan, leads[:size]))
            leads = leads[size:]
        if len(chunk) < _chunk_size(run, size):
            break
    if leads:
        _send(run, Batch(plan, leads))


def _chunk_size(run: Run, batch_size: int) -> int:
    # A multiple of the batch size, so chunk boundaries don't cost extra requests.
    size = max(batch_size, settings.EXECUTOR_CHUNK_SIZE // batch_size * batch_size)
    return min(size, run.remaining) if run.remaining is not None else size


def _client(run: Run, plan: walk.Plan) -> SmartleadClient:
    """This pool thread's client for the plan's SDR (a requests.Session is per thread)."""
    clients = run.local.__dict__.setdefault("clients", {})
    if plan.creator_id not in clients:
        clients[plan.creator_id] = SmartleadClient(plan.credentials.api_key, deadline=run.deadline)
        with run.lock:
            run.clients.append(clients[plan.creator_id])
    return clients[plan.creator_id]


def batch_size() -> int:
    return min(MAX_LEADS_PER_REQUEST, max(1, settings.SMARTLEAD_LEADS_PER_REQUEST))


def _send(run: Run, batch: Batch) -> None:
    """Submits one batch; keeps at most two batches per pool thread in flight (bounded memory)."""
    if batch.plan.creator_id in run.refused:
        walk.release([c.id for c in batch.items], batch.plan, run.started)
        return
    while len(run.in_flight) >= 2 * settings.EXECUTOR_CONCURRENCY:
        _collect(run, block=True)
    future = run.pool.submit(_push, run, batch.plan, batch.items)
    run.in_flight[future] = batch
    _collect(run, block=False)


def _push(
    run: Run, plan: walk.Plan, items: list[walk.Claimed]
) -> list[tuple[list[walk.Claimed], AddLeadsResult | SmartleadError]]:
    """Runs on a pool thread: one request, split in halves only when Smartlead rejects the batch."""
    try:
        return [(items, _client(run, plan).add_leads(plan.campaign_id, [c.lead() for c in items]))]
    except ValidationFailed as exc:
        if len(items) == 1:
            return [(items, exc)]
        half = len(items) // 2
        return _push(run, plan, items[:half]) + _push(run, plan, items[half:])
    except SmartleadError as exc:
        return [(items, exc)]


def _collect(run: Run, *, block: bool) -> None:
    if not run.in_flight:
        return
    done, _ = wait(list(run.in_flight), timeout=None if block else 0, return_when=FIRST_COMPLETED)
    for future in done:
        batch = run.in_flight.pop(future)
        for items, outcome in future.result():
            run.record.smartlead_requests += 1
            _record_outcome(run, batch.plan, items, outcome)


def _drain(run: Run) -> None:
    while run.in_flight:
        _collect(run, block=True)


def _record_outcome(
    run: Run,
    plan: walk.Plan,
    items: list[walk.Claimed],
    outcome: AddLeadsResult | SmartleadError,
) -> None:
    if isinstance(outcome, AddLeadsResult):
        walk.record_pushed(plan, items, outcome, run.record)
        return
    if isinstance(outcome, ValidationFailed):
        walk.record_rejected(plan, items, str(outcome), run.record)
        return
    ids = [c.id for c in items]
    walk.release(ids, plan, run.started)
    run.record.deferred += len(ids)
    if isinstance(outcome, NotFound):
        walk.campaign_gone(plan, str(outcome))
    _credential_error(run, plan.creator, outcome)
    run.error(f"{len(ids)} leads for campaign {plan.campaign_id} wait for the next run: {outcome}")


def _credential_error(run: Run, profile: Profile, exc: SmartleadError) -> None:
    """401/403: recorded for ops, logged once per SDR per run, their work left for later."""
    status = {
        InvalidApiKey: SmartleadStatus.INVALID_KEY,
        NoApiAccess: SmartleadStatus.NO_API_ACCESS,
    }
    verdict = status.get(type(exc))
    if verdict is None or profile.id in run.refused:
        return
    run.refused.add(profile.id)
    CredentialCheck.objects.record(profile=profile, status=verdict, detail=str(exc))
    log.warning("User %s: Smartlead refused their key (%s)", profile.id, verdict.label)


def summary(record: ExecutorRun) -> str:
    return (
        f"{record.due} due, {record.pushed} pushed, {record.skipped_no_credentials} skipped "
        f"(not connected), {record.failed} failed, {record.call_tasks} call tasks, "
        f"{record.completed} completed, {record.deferred} deferred, "
        f"{record.campaigns_provisioned} campaigns provisioned, {len(record.errors)} errors"
    )


def as_dict(record: ExecutorRun) -> dict[str, Any]:
    fields = [
        "trigger",
        "dry_run",
        "due",
        "pushed",
        "skipped_no_credentials",
        "failed",
        "call_tasks",
        "completed",
        "advanced",
        "deferred",
        "campaigns_provisioned",
        "smartlead_requests",
        "sql_round_trips",
        "errors",
    ]
    data = {name: getattr(record, name) for name in fields}
    data["id"] = str(record.id)
    data["started_at"] = record.started_at.isoformat() if record.started_at else None
    data["finished_at"] = record.finished_at.isoformat() if record.finished_at else None
    if record.dry_run:
        data["plan"] = getattr(record, "plan_lines", [])
    return data


class _RoundTripCounter:
    """Counts this thread's database round trips: each statement, and BEGIN + COMMIT for each
    transaction (pool threads send none). The benchmark reports it beside the wall time."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        self.count += 1
        return execute(sql, params, many, context)

    @contextmanager
    def counting(self) -> Iterator[None]:
        commit = connection.commit

        def counted_commit() -> None:
            self.count += 2
            commit()

        connection.commit = counted_commit
        try:
            with connection.execute_wrapper(self):
                yield
        finally:
            del connection.commit
