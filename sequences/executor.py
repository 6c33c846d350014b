"""The sequence executor: every 15 minutes, each SDR's ready enrollments go to their campaign.

One run:
1. Logs and skips the SDRs who have not connected Smartlead (their enrollments stay ready).
2. Plans the active sequences with ready enrollments, grouped by creator: steps loaded once,
   each creator's credentials read once.
3. Works on the SDRs concurrently (EXECUTOR_CONCURRENCY workers, one SDR at a time per worker,
   so each key stays within its own rate limit and nothing one account does stops another).
   For each of an SDR's sequences, a worker:
   a. provisions its campaign if needed (once, whatever runs at the same time);
   b. claims its ready enrollments in chunks: a lease on `next_send_at` taken with
      FOR UPDATE SKIP LOCKED, so concurrent runs never share an enrollment;
   c. walks each enrollment's due step: the first email step it reaches → a lead for
      Smartlead; a later one (already in the campaign) → bookkeeping only, Smartlead sends it;
      call step → a call task, once; unmet condition → skipped;
   d. sends the leads in full batches, one add-leads request per batch; the ledger row is
      `pending` before the request and `pushed` after it, so nobody is pushed twice;
   e. advances each enrollment (`current_step`, `next_send_at`, or `completed`).
4. Stops taking new work when the time budget is spent, releases what it could not finish for
   the next run, and writes the run record.
"""

from __future__ import annotations

import contextvars
import logging
import queue
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import connection, connections
from django.db.models import Count, Q
from django.utils import timezone

from outboundhq import logs
from profiles.models import (
    CredentialCheck,
    Profile,
    SmartleadCredentials,
    SmartleadStatus,
    refusal_status,
)
from profiles.models import key_fingerprint as fingerprint
from sequences import dry_run as rehearsal
from sequences import walk
from sequences.models import Enrollment, ExecutorRun, ProvisioningState, Sequence, SequenceStatus
from sequences.provisioning import (
    ProvisioningBlocked,
    ProvisioningBusy,
    ensure_webhook,
    provision,
)
from smartlead.client import (
    MAX_LEADS_PER_REQUEST,
    AddLeadsResult,
    NotFound,
    Session,
    SmartleadClient,
    SmartleadError,
    ValidationFailed,
    new_session,
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
    """What a run may touch: everything, or one SDR's sequences, or one sequence."""

    user_id: uuid.UUID | None = None
    sequence_id: uuid.UUID | None = None

    def sequences(self) -> Q:
        q = Q(status=SequenceStatus.ACTIVE)
        if self.user_id:
            q &= Q(created_by_id=self.user_id)
        if self.sequence_id:
            q &= Q(pk=self.sequence_id)
        return q


@dataclass
class Run:
    """What the workers of one run share: the deadline and the `--limit` quota."""

    id: uuid.UUID
    started: datetime
    deadline: float
    quota: int | None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def out_of_time(self) -> bool:
        return time.monotonic() >= self.deadline

    def take(self, wanted: int) -> int:
        """How many enrollments a worker may claim now (all of them without --limit)."""
        if self.quota is None:
            return wanted
        with self.lock:
            granted = min(wanted, self.quota)
            self.quota -= granted
            return granted

    def give_back(self, unused: int) -> None:
        if self.quota is not None and unused:
            with self.lock:
                self.quota += unused


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
    scope = Scope(user_id=user_id, sequence_id=sequence_id)
    if dry_run:
        return rehearsal.dry_run(trigger=trigger, scope_q=scope.sequences(), limit=limit)
    record = ExecutorRun.objects.create(trigger=trigger)
    token = logs.run_id.set(str(record.id))
    budget = time_budget or settings.EXECUTOR_TIME_BUDGET_SECONDS
    run = Run(record.id, timezone.now(), time.monotonic() + budget, limit)
    counter = _RoundTripCounter()
    try:
        with counter.counting():
            skip_unconnected(record, scope)
            work = plan_work(scope)
        for tally in _in_workers(work, run, counter):
            tally.add_to(record)
    except Exception as exc:
        record.errors.append(logs.redact(f"The run stopped: {exc.__class__.__name__}: {exc}"))
        raise
    finally:
        record.finished_at = timezone.now()
        record.sql_round_trips = counter.count + 1  # + this save
        record.save()
        log.info("Executor run %s: %s", record.id, summary(record))
        logs.run_id.reset(token)
    return record


def skip_unconnected(record: ExecutorRun, scope: Scope) -> None:
    """Step 1: one log line per unconnected SDR; their enrollments stay as they are."""
    ready = Enrollment.objects.ready().filter(
        sequence__in=Sequence.objects.filter(scope.sequences()).filter(NOT_CONNECTED_Q)
    )
    for row in ready.values("sequence__created_by").annotate(n=Count("id")).order_by():
        creator = row["sequence__created_by"]
        if creator is None:
            record.errors.append(f"{row['n']} enrollments belong to sequences without a creator")
        else:
            log.info(NOT_CONNECTED, creator)
        record.skipped_no_credentials += row["n"]


@dataclass
class Work:
    """One SDR's share of a run: their credentials and their sequences with ready enrollments."""

    creator: Profile
    credentials: SmartleadCredentials
    sequences: list[Sequence]


def plan_work(scope: Scope) -> list[Work]:
    """Step 2: connected SDRs with ready work, minus keys Smartlead already refused."""
    ready_ids = Enrollment.objects.ready().values("sequence_id")
    sequences = (
        Sequence.objects.filter(scope.sequences(), pk__in=ready_ids)
        .exclude(NOT_CONNECTED_Q)
        .select_related("created_by", "provisioning")
        .prefetch_related("steps")
        .order_by("created_by_id", "id")
    )
    by_creator: dict[uuid.UUID, list[Sequence]] = defaultdict(list)
    for sequence in sequences:
        by_creator[sequence.created_by_id].append(sequence)
    creators = [group[0].created_by for group in by_creator.values()]
    refused = _refused_keys(creators)
    work = []
    for creator in creators:
        credentials = creator.smartlead_credentials()
        if credentials is not None and creator.id not in refused:
            work.append(Work(creator, credentials, by_creator[creator.id]))
    return work


def _refused_keys(creators: list[Profile]) -> set[uuid.UUID]:
    """SDRs whose current key Smartlead already refused: no point asking again until it changes."""
    checks = CredentialCheck.objects.filter(
        profile_id__in=[p.id for p in creators],
        status__in=[SmartleadStatus.INVALID_KEY, SmartleadStatus.NO_API_ACCESS],
    )
    keys = {p.id: p.smartlead_api_key or "" for p in creators}
    refused = {c.profile_id for c in checks if c.key_fingerprint == fingerprint(keys[c.profile_id])}
    for profile_id in refused:
        log.warning("User %s has a Smartlead key Smartlead refused; reconnect it", profile_id)
    return refused


def _in_workers(work: list[Work], run: Run, counter: _RoundTripCounter) -> list[walk.Tally]:
    """Step 3: each SDR on a worker thread with its own database connection; with a
    concurrency of 1, on this thread."""
    tasks: queue.Queue[Work] = queue.Queue()
    for item in work:
        tasks.put(item)
    tallies: list[walk.Tally] = []
    workers = min(settings.EXECUTOR_CONCURRENCY, len(work))
    if workers <= 1:
        with counter.counting():
            _work_through(tasks, run, tallies)
        return tallies
    threads = [
        threading.Thread(target=_worker, args=(tasks, run, tallies, counter), name=f"exec-{n}")
        for n in range(workers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return tallies


def _worker(
    tasks: queue.Queue[Work], run: Run, tallies: list[walk.Tally], counter: _RoundTripCounter
) -> None:
    token = logs.run_id.set(str(run.id))
    try:
        with counter.counting():
            _work_through(tasks, run, tallies)
    finally:
        connections.close_all()  # this thread's own connection
        logs.run_id.reset(token)


def _work_through(tasks: queue.Queue[Work], run: Run, tallies: list[walk.Tally]) -> None:
    # One keep-alive connection to Smartlead per worker, whichever SDR's key it carries.
    with new_session() as session, Sender(run) as sender:
        while True:
            try:
                work = tasks.get_nowait()
            except queue.Empty:
                return
            tally = walk.Tally()
            tallies.append(tally)  # list.append is atomic; read after the threads are joined
            _process_safely(work, run, tally, session, sender)


def _process_safely(
    work: Work, run: Run, tally: walk.Tally, session: Session, sender: Sender
) -> None:
    try:
        process_sdr(work, run, tally, session, sender)
    except Exception as exc:  # one SDR's failure must not stop the others
        log.exception("Executor failed on user %s", work.creator.id)
        # The run record is shown in the admin and the cron answer: no secret may ride along.
        tally.errors.append(logs.redact(f"User {work.creator.id}: {type(exc).__name__}: {exc}"))


def process_sdr(work: Work, run: Run, tally: walk.Tally, session: Session, sender: Sender) -> None:
    # The sender may still be carrying the previous SDR's last batch: recording it waits until
    # this SDR's first batch is on its way, so the connection to Smartlead never idles.
    key = work.credentials.api_key
    with SmartleadClient(key, deadline=run.deadline, session=session) as client:
        for sequence in work.sequences:
            if run.out_of_time:
                tally.errors.append("The time budget is spent; the rest waits for next run.")
                return
            if work.creator.id in sender.refused:
                return
            plan = _provisioned(sequence, work, run, tally, client, sender)
            if plan is not None:
                process_sequence(plan, client, run, tally, sender)


def _provisioned(
    sequence: Sequence,
    work: Work,
    run: Run,
    tally: walk.Tally,
    client: SmartleadClient,
    sender: Sender,
) -> walk.Plan | None:
    """Step 3a. A campaign id without our record was set by hand or before this backend."""
    state = getattr(sequence, "provisioning", None)
    ready = (state is None or state.state == ProvisioningState.READY) and _has_campaign(sequence)
    if ready:
        try:
            ensure_webhook(sequence, client)
        except SmartleadError as exc:
            tally.errors.append(f"Campaign webhook for sequence {sequence.id} not saved: {exc}")
        return walk.Plan.build(sequence, work.credentials)
    try:
        provision(sequence, work.credentials, deadline=run.deadline)
    except ProvisioningBlocked as exc:
        tally.errors.append(f"Sequence {sequence.id} cannot be provisioned: {exc}")
        return None
    except ProvisioningBusy:
        log.info("Sequence %s is being provisioned by another run", sequence.id)
        return None
    except SmartleadError as exc:
        if _credential_error(work.creator, exc):
            sender.refused.add(work.creator.id)
        tally.errors.append(f"Provisioning sequence {sequence.id} failed: {exc}")
        return None
    tally.campaigns_provisioned += 1
    sequence.refresh_from_db(fields=["smartlead_campaign_id"])
    return walk.Plan.build(sequence, work.credentials)


def _has_campaign(sequence: Sequence) -> bool:
    return bool(sequence.smartlead_campaign_id and sequence.smartlead_campaign_id.isdigit())


def batch_size() -> int:
    return min(MAX_LEADS_PER_REQUEST, max(1, settings.SMARTLEAD_LEADS_PER_REQUEST))


def chunk_size() -> int:
    # A multiple of the batch size, so chunk boundaries never cost an extra request.
    size = batch_size()
    return max(size, settings.EXECUTOR_CHUNK_SIZE // size * size)


def process_sequence(
    plan: walk.Plan, client: SmartleadClient, run: Run, tally: walk.Tally, sender: Sender
) -> None:
    """Steps 3b-3e for one sequence: claim in chunks, walk, send full batches."""
    leads: list[walk.Claimed] = []
    size = batch_size()
    try:
        while not run.out_of_time and plan.creator_id not in sender.refused:
            wanted = run.take(chunk_size())
            chunk = walk.claim(plan, run.started, wanted) if wanted else []
            run.give_back(wanted - len(chunk))
            tally.due += len(chunk)
            leads.extend(walk.walk(plan, chunk, tally, run.id))
            while len(leads) >= size and plan.creator_id not in sender.refused:
                batch, leads = leads[:size], leads[size:]
                sender.send(plan, batch, client, tally)
            if len(chunk) < wanted or not wanted:
                break
        if leads and plan.creator_id not in sender.refused:
            batch, leads = leads, []
            sender.send(plan, batch, client, tally)
    finally:
        if leads:  # claimed and reserved, but the SDR's key was refused: give them back
            walk.release([c.id for c in leads], plan, run.started)
            tally.deferred += len(leads)


Outcome = AddLeadsResult | SmartleadError


def _request(client: SmartleadClient, campaign_id: int, items: list[walk.Claimed]) -> Outcome:
    try:
        return client.add_leads(campaign_id, [c.lead for c in items])
    except SmartleadError as exc:
        return exc


@dataclass
class InFlight:
    plan: walk.Plan
    items: list[walk.Claimed]
    client: SmartleadClient
    tally: walk.Tally
    outcome: Future[Outcome]


class Sender:
    """A worker's add-leads requests, on a thread of their own and one at a time (one connection,
    one SDR's limit), so the worker writes the previous batch while the next one is in flight."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.thread = ThreadPoolExecutor(1, "exec-send")
        self.in_flight: InFlight | None = None
        self.refused: set[uuid.UUID] = set()  # SDRs whose key Smartlead refused in this run

    def __enter__(self) -> Sender:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.flush()
        self.thread.shutdown()

    def send(
        self,
        plan: walk.Plan,
        items: list[walk.Claimed],
        client: SmartleadClient,
        tally: walk.Tally,
    ) -> None:
        outcome = self.request(client, plan.campaign_id, items)
        previous, self.in_flight = self.in_flight, InFlight(plan, items, client, tally, outcome)
        if previous:
            self._record(previous)

    def flush(self) -> None:
        previous, self.in_flight = self.in_flight, None
        if previous:
            self._record(previous)

    def request(
        self, client: SmartleadClient, campaign_id: int, items: list[walk.Claimed]
    ) -> Future[Outcome]:
        """On the sender thread (the client's session is not shared between threads), with this
        thread's log context (run id)."""
        context = contextvars.copy_context()
        return self.thread.submit(context.run, _request, client, campaign_id, items)

    def _record(self, sent: InFlight) -> None:
        outcome = sent.outcome.result()
        sent.tally.smartlead_requests += 1
        if isinstance(outcome, ValidationFailed) and len(sent.items) > 1:
            refused = self._split(sent, outcome)
        else:
            refused = record(sent.plan, sent.items, outcome, self.run, sent.tally, self.refused)
        if refused:
            self.refused.add(sent.plan.creator_id)

    def _split(self, sent: InFlight, refusal: ValidationFailed) -> bool:
        """Smartlead refused the whole batch: halves until the bad leads are found. If no part
        goes through, the refusal is about the request, not a lead: nobody fails for it."""
        parts = _bisect(self, sent.plan.campaign_id, sent.items, sent.client, sent.tally)
        if not any(isinstance(outcome, AddLeadsResult) for _, outcome in parts):
            return _not_sent(sent.plan, sent.items, refusal, self.run, sent.tally, self.refused)
        return any(
            [record(sent.plan, items, outcome, self.run, sent.tally) for items, outcome in parts]
        )


def _bisect(
    sender: Sender,
    campaign_id: int,
    items: list[walk.Claimed],
    client: SmartleadClient,
    tally: walk.Tally,
) -> list[tuple[list[walk.Claimed], Outcome]]:
    parts: list[tuple[list[walk.Claimed], Outcome]] = []
    half = len(items) // 2
    for part in (items[:half], items[half:]):
        outcome = sender.request(client, campaign_id, part).result()
        tally.smartlead_requests += 1
        if isinstance(outcome, ValidationFailed) and len(part) > 1:
            parts += _bisect(sender, campaign_id, part, client, tally)
        else:
            parts.append((part, outcome))
    return parts


def record(
    plan: walk.Plan,
    items: list[walk.Claimed],
    outcome: Outcome,
    run: Run,
    tally: walk.Tally,
    already_refused: set[uuid.UUID] = frozenset(),
) -> bool:
    """Writes what Smartlead said about one batch; True when it refused the SDR's key."""
    if isinstance(outcome, ValidationFailed):
        walk.record_rejected(plan, items, str(outcome), tally)
    elif isinstance(outcome, SmartleadError):
        return _not_sent(plan, items, outcome, run, tally, already_refused)
    else:
        walk.record_pushed(plan, items, outcome, tally)
    return False


def _not_sent(
    plan: walk.Plan,
    items: list[walk.Claimed],
    exc: SmartleadError,
    run: Run,
    tally: walk.Tally,
    already_refused: set[uuid.UUID] = frozenset(),
) -> bool:
    """Gives the batch back for the next run; True when Smartlead refused the SDR's key (which
    is recorded and logged once per run)."""
    ids = [c.id for c in items]
    # A timeout or a 5xx may have reached Smartlead: the ledger keeps those rows `pending`.
    walk.release(ids, plan, run.started, maybe_sent=not (exc.permanent or exc.safe_to_repeat))
    tally.deferred += len(ids)
    tally.errors.append(
        f"{len(ids)} leads for campaign {plan.campaign_id} wait for the next run: {exc}"
    )
    if isinstance(exc, NotFound):
        walk.campaign_gone(plan, str(exc))
    return refusal_status(exc) is not None and (
        plan.creator_id in already_refused or _credential_error(plan.creator, exc)
    )


def _credential_error(profile: Profile, exc: SmartleadError) -> bool:
    """401/403: recorded for ops and logged once; True when the key was refused."""
    verdict = refusal_status(exc)
    if verdict is None:
        return False
    profile.record_smartlead_refusal(exc)
    log.warning("User %s: Smartlead refused their key (%s)", profile.id, verdict.label)
    return True


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
        *walk.Tally.COUNTERS,
        "skipped_no_credentials",
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
    """Counts a run's database round trips on every thread it uses: each statement, and BEGIN
    and COMMIT for each transaction. The benchmark reports it beside the wall time."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def add(self, n: int) -> None:
        with self._lock:
            self.count += n

    def __call__(self, execute: Callable, sql: str, params: Any, many: bool, context: Any) -> Any:
        self.add(1)
        return execute(sql, params, many, context)

    @contextmanager
    def counting(self) -> Iterator[None]:
        """Counts on the calling thread's connection while the block runs."""
        commit = connection.commit

        def counted_commit() -> None:
            self.add(2)
            commit()

        connection.commit = counted_commit
        try:
            with connection.execute_wrapper(self):
                yield
        finally:
            del connection.commit
