"""The sequence executor: every 15 minutes, each SDR's ready enrollments go to their campaign.

One run (`execute`) is these steps, each a function below, in this order:

0. `propagate`: what changed in the app and Smartlead has not learnt (unsubscribes, paused or
   removed enrollments, paused sequences, a new mailbox) goes through the outbox to each SDR's
   campaigns (sequences/sync.py).
1. `skip_unconnected`: SDRs who are not connected (`Profile.objects.connected()`) are logged
   once each ("SDR <email> has not connected their Smartlead account") and counted; their
   enrollments stay as they are.
2. `plan`: the active sequences with ready enrollments of connected SDRs, grouped by SDR
   (`Sdr`): each SDR's credentials read once (`Profile.objects.senders`), each sequence's
   steps loaded once. The run's context types are in sequences/context.py.
3. `in_workers`: EXECUTOR_CONCURRENCY threads take one SDR at a time, so each key stays within
   its own rate limit and nothing one account does stops another. For each of the SDR's
   sequences (`work_on`):
   a. `campaign_for`: the sequence's campaign, provisioned first if needed;
   b. `sending.send_sequence`: its ready enrollments claimed in chunks, each due step decided
      (`steps.decide`) and carried out, the leads pushed in full batches and what Smartlead
      said recorded (sequences/sending.py).
4. `close`: the run record, with what every SDR's worker counted, saved and logged.

A run stops taking new work when its time budget is spent; what it claimed but could not do is
given back, ready for the next run.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.conf import settings
from django.db import connections
from django.db.models import Prefetch
from django.utils import timezone

from outboundhq import logs
from profiles.credentials import NOT_CONNECTED
from profiles.models import Profile
from sequences import dry_run as rehearsal
from sequences import sending, sync, webhook_switch
from sequences.context import Run, Scope, Sdr, Sender, SequenceWork, Tally
from sequences.models import (
    Enrollment,
    ExecutorRun,
    ProvisioningState,
    Sequence,
    SequenceStep,
)
from sequences.provisioning import (
    CampaignNeedsAttention,
    ProvisioningBlocked,
    ProvisioningBusy,
    ensure_webhook,
    provision,
)
from sequences.steps import Steps
from smartlead.api import Session, SmartleadClient, SmartleadError, new_session

log = logging.getLogger(__name__)


def execute(
    *,
    trigger: str,
    dry_run: bool = False,
    user_id: uuid.UUID | None = None,
    sequence_id: uuid.UUID | None = None,
    limit: int | None = None,
    time_budget: float | None = None,
    progress: Callable[[int, int, int], None] | None = None,
) -> ExecutorRun:
    """Runs the executor once and returns its run record (unsaved for a dry run). `progress`,
    if given, is called after each SDR with (SDRs done, SDRs in all, leads pushed so far)."""
    scope = Scope(user_id=user_id, sequence_id=sequence_id)
    if dry_run:
        waiting = waiting_for_credentials(scope)
        return rehearsal.dry_run(trigger=trigger, waiting=waiting, sdrs=plan(scope), limit=limit)
    budget = time_budget or settings.EXECUTOR_TIME_BUDGET_SECONDS
    record = ExecutorRun.objects.create(trigger=trigger)
    run = Run(record, timezone.now(), time.monotonic() + budget, limit, progress)
    token = logs.run_id.set(str(record.id))
    tallies: list[Tally] = []
    try:
        propagate(run, scope)  # 0
        run.record.errors.extend(webhook_switch.switch_some(run.deadline, scope.user_id))  # 0b
        skip_unconnected(run, scope)  # 1
        sdrs = plan(scope, skipped=run.record.errors)  # 2
        in_workers(run, sdrs, tallies)  # 3
    except Exception as exc:
        record.errors.append(logs.redact(f"The run stopped: {exc.__class__.__name__}: {exc}"))
        raise
    finally:
        close(run, tallies)  # 4
        logs.run_id.reset(token)
    return record


def propagate(run: Run, scope: Scope) -> None:
    """Step 0: the outbox, before any new lead goes out (a paused lead is paused first)."""
    done, errors = sync.propagate(
        deadline=run.deadline, user_id=scope.user_id, sequence_id=scope.sequence_id
    )
    run.record.propagated += done
    run.record.errors.extend(errors[:50])


def skip_unconnected(run: Run, scope: Scope) -> None:
    """Step 1: one log line per SDR who is not connected; their enrollments stay as they are."""
    waiting = waiting_for_credentials(scope)
    creators = [creator for creator, _ in waiting if creator is not None]
    names = {s.profile_id: s.name for s in Profile.objects.senders(creators)} if creators else {}
    for creator, count in waiting:
        if creator is None:
            run.record.errors.append(f"{count} enrollments belong to sequences without a creator")
        else:
            log.info(NOT_CONNECTED, names[creator])
        run.record.skipped_no_credentials += count


def waiting_for_credentials(scope: Scope) -> list[tuple[uuid.UUID | None, int]]:
    return Enrollment.objects.filter(sequence__in=scope.sequences()).waiting_for_credentials()


def plan(scope: Scope, skipped: list[str] | None = None) -> list[Sdr]:
    """Step 2: connected SDRs with ready work, their sequences and steps loaded at once. An SDR
    who cannot send after all (a key that cannot be decrypted) is left out, logged and said in
    `skipped` (the run's errors): the others still send."""
    sequences = (
        scope.sequences()
        .filter(pk__in=Enrollment.objects.ready().values("sequence_id"))
        .filter(created_by__in=Profile.objects.connected())
        .select_related("provisioning")
        .prefetch_related(Prefetch("steps", queryset=SequenceStep.objects.order_by("step_number")))
        .order_by("created_by_id", "id")
    )
    by_creator: dict[uuid.UUID, list[Sequence]] = defaultdict(list)
    for sequence in sequences:
        by_creator[sequence.created_by_id].append(sequence)
    sdrs = []
    for sender in Profile.objects.senders(by_creator):
        if sender.credentials is not None:  # connected a moment ago; may have changed since
            sdrs.append(Sdr(sender.profile, sender.credentials, by_creator[sender.profile_id]))
        else:
            log.error(sender.why_not)
            if skipped is not None:
                skipped.append(sender.why_not)
    return sdrs


def in_workers(run: Run, sdrs: list[Sdr], tallies: list[Tally]) -> None:
    """Step 3: each SDR on a worker thread with its own database connection (with a
    concurrency of 1, on this thread)."""
    todo: queue.SimpleQueue[Sdr] = queue.SimpleQueue()
    for sdr in sdrs:
        todo.put(sdr)
    workers = min(settings.EXECUTOR_CONCURRENCY, len(sdrs))
    if workers <= 1:
        work_through(run, todo, tallies)
        return
    threads = [
        threading.Thread(target=worker, args=(run, todo, tallies), name=f"exec-{n}")
        for n in range(workers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def worker(run: Run, todo: queue.SimpleQueue[Sdr], tallies: list[Tally]) -> None:
    token = logs.run_id.set(str(run.id))
    try:
        work_through(run, todo, tallies)
    finally:
        connections.close_all()  # this thread's own connection
        logs.run_id.reset(token)


def work_through(run: Run, todo: queue.SimpleQueue[Sdr], tallies: list[Tally]) -> None:
    # One keep-alive connection to Smartlead per worker, whichever SDR's key it carries, and one
    # thread that sends on it while this one writes to the database (sequences/sending.py).
    with new_session() as session, ThreadPoolExecutor(1, "smartlead-send") as pool:
        sender = Sender(pool)
        while (sdr := next_sdr(todo)) is not None:
            tally = Tally()
            tallies.append(tally)  # list.append is atomic; read after the threads are joined
            try:
                work_on(run, sdr, session, sender, tally)
            except Exception as exc:  # noqa: BLE001 - one SDR's failure must not stop the others
                failed(sdr, tally, exc)
                settle_safely(sender)
            run.sdr_finished(tallies, todo)
        settle_safely(sender)


def next_sdr(todo: queue.SimpleQueue[Sdr]) -> Sdr | None:
    try:
        return todo.get_nowait()
    except queue.Empty:
        return None


def settle_safely(sender: Sender) -> None:
    """The worker's batch still out is recorded, whatever happened to the SDR it was for."""
    in_flight = sender.in_flight
    try:
        sending.settle_last(sender)
    except Exception as exc:  # noqa: BLE001 - reported on the SDR's tally like any failure
        failed(in_flight.work.sdr, in_flight.work.tally, exc)


def failed(sdr: Sdr, tally: Tally, exc: Exception) -> None:
    """One SDR's failure is logged and on the run record; it never stops the others."""
    log.exception("Executor failed on SDR %s", sdr.profile.label)
    # The run record is shown in the admin and the cron answer: no secret rides along.
    tally.error(logs.redact(f"SDR {sdr.profile.label}: {type(exc).__name__}: {exc}"))


def work_on(run: Run, sdr: Sdr, session: Session, sender: Sender, tally: Tally) -> None:
    """Step 3 for one SDR: each of their sequences in turn, with their key."""
    key = sdr.credentials.api_key
    with SmartleadClient(key, deadline=run.deadline, session=session) as client:
        for sequence in sdr.sequences:
            if run.out_of_time:
                tally.error("The time budget is spent; the rest waits for next run.")
                return
            if sdr.refused:
                return
            campaign_id = campaign_for(run, sdr, sequence, client, tally)  # 3a
            if campaign_id is not None:
                work = SequenceWork(
                    run=run,
                    sdr=sdr,
                    sequence_id=sequence.id,
                    campaign_id=campaign_id,
                    steps=Steps(sequence.steps.all()),
                    client=client,
                    tally=tally,
                    sender=sender,
                )
                sending.send_sequence(work)  # 3b-3e


def campaign_for(
    run: Run, sdr: Sdr, sequence: Sequence, client: SmartleadClient, tally: Tally
) -> int | None:
    """Step 3a: the sequence's campaign id, provisioned first if needed; None when it cannot be
    sent this run (the reason is in the run's errors). A campaign id without our provisioning
    record was set by hand or before this backend, and is trusted."""
    state = getattr(sequence, "provisioning", None)
    if sequence.has_campaign and (state is None or state.state == ProvisioningState.READY):
        try:
            ensure_webhook(sequence, client)
        except SmartleadError as exc:
            tally.error(f"Campaign webhook for sequence {sequence.id} not saved: {exc}")
        return sequence.campaign
    try:
        provision(sequence, sdr.credentials, deadline=run.deadline)
    except CampaignNeedsAttention as exc:
        tally.error(f"Sequence {sequence.id} needs attention: {exc}")
        return None
    except ProvisioningBlocked as exc:
        tally.error(f"Sequence {sequence.id} cannot be provisioned: {exc}")
        return None
    except ProvisioningBusy:
        log.info("Sequence %s is being provisioned by another run", sequence.id)
        return None
    except SmartleadError as exc:
        sdr.refused_by(exc)
        tally.error(f"Provisioning sequence {sequence.id} failed: {exc}")
        return None
    tally.campaigns_provisioned += 1
    sequence.refresh_from_db(fields=["smartlead_campaign_id"])
    return sequence.campaign


def close(run: Run, tallies: list[Tally]) -> None:
    """Step 4: every worker's counts on the run record, saved and logged."""
    record = run.record
    for tally in tallies:
        tally.add_to(record)
    record.finished_at = timezone.now()
    record.save()
    log.info("Executor run %s: %s", record.id, summary(record))


def summary(record: ExecutorRun) -> str:
    return (
        f"{record.due} due, {record.pushed} pushed, {record.skipped_no_credentials} skipped "
        f"(not connected), {record.failed} failed, {record.call_tasks} call tasks, "
        f"{record.completed} completed, {record.deferred} deferred, "
        f"{sum(record.skipped.values())} turned away by Smartlead"
        + (
            f" ({', '.join(f'{n} {why}' for why, n in sorted(record.skipped.items()))})"
            if record.skipped
            else ""
        )
        + ", "
        f"{record.campaigns_provisioned} campaigns provisioned, "
        f"{record.propagated} changes propagated, {len(record.errors)} errors"
    )


def as_dict(record: ExecutorRun) -> dict[str, Any]:
    fields = [
        "trigger",
        "dry_run",
        *Tally.COUNTERS,
        "skipped_no_credentials",
        "skipped",
        "propagated",
        "errors",
    ]
    data = {name: getattr(record, name) for name in fields}
    data["id"] = str(record.id)
    data["started_at"] = record.started_at.isoformat() if record.started_at else None
    data["finished_at"] = record.finished_at.isoformat() if record.finished_at else None
    if record.dry_run:
        data["plan"] = getattr(record, "plan_lines", [])
    return data
