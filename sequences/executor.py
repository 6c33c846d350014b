"""The sequence executor: every 15 minutes, each SDR's ready enrollments go to their campaign.

One run is these steps, each a function below, in this order:

0. `propagate`: what changed in the app and Smartlead has not learnt (unsubscribes, paused or
   removed enrollments, paused sequences, a new mailbox) goes through the outbox to each SDR's
   campaigns (sequences/sync.py). Before it, `workers.take_over()` gives back what a stopped
   worker held, so its SDRs are ready for this run.
1. `skip_unconnected`: SDRs who are not connected (`Profile.objects.connected()`) are logged
   once each ("SDR <email> has not connected their Smartlead account") and counted; their
   enrollments stay as they are.
2. `share_out`: one `Share` per connected SDR with ready work (sequences/shares.py).
3. `work`: EXECUTOR_CONCURRENCY threads take one share (one SDR) at a time, so each key stays
   within its own budget and nothing one account does stops another; the schedule shares the
   run out to django-q2 tasks (sequences/tasks.py), and every thread of every process that takes
   one works on the same shares. For each of the SDR's sequences (`work_on`):
   a. `campaign_for`: the sequence's campaign, provisioned first if needed;
   b. `sending.send_sequence`: its ready enrollments claimed in chunks, each due step decided
      (`steps.decide`) and carried out, the leads pushed in full batches and what Smartlead
      said recorded (sequences/sending.py).
4. `close`: once no share is open, every share's counts on the run record, saved and logged,
   by whichever worker finishes last.

`start` is steps 0-2, `work` step 3 and `close` step 4; `execute` runs them in one process. A
run stops taking new work when its time budget is spent; what it claimed but could not do is
given back, ready for the next run, and so is what a worker that stopped held.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connections
from django.db.models import Prefetch
from django.utils import timezone

from outboundhq import logs
from profiles.credentials import NOT_CONNECTED
from profiles.models import Profile
from profiles.models import Sender as ProfileSender
from sequences import dry_run as rehearsal
from sequences import sending, sync, webhook_switch, workers
from sequences.context import Run, Scope, Sdr, Sender, SequenceWork, Tally
from sequences.models import (
    Enrollment,
    ExecutorRun,
    Job,
    ProvisioningState,
    Sequence,
    SequenceStep,
    Share,
)
from sequences.provisioning import (
    CampaignNeedsAttention,
    ProvisioningBlocked,
    ProvisioningBusy,
    ensure_webhook,
    provision,
)
from sequences.runs import TIME_SPENT, close, close_stale
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
    """Runs the executor once, in this process, and returns its run record (unsaved for a dry
    run). `progress`, if given, is called after each SDR with (SDRs done, SDRs in all, leads
    pushed so far)."""
    scope = Scope(user_id=user_id, sequence_id=sequence_id)
    if dry_run:
        waiting = waiting_for_credentials(scope)
        return rehearsal.dry_run(trigger=trigger, waiting=waiting, sdrs=plan(scope), limit=limit)
    run = start(trigger=trigger, scope=scope, time_budget=time_budget, limit=limit, shared=False)
    run.progress = progress
    token = logs.run_id.set(str(run.id))
    try:
        work(run)  # 3
    except Exception as exc:
        run.record.errors.append(logs.redact(f"The run stopped: {type(exc).__name__}: {exc}"))
        run.record.save(update_fields=["errors"])
        raise
    finally:
        close(run, alone=True)  # 4
        logs.run_id.reset(token)
    return run.record


def start(
    *,
    trigger: str,
    scope: Scope,
    time_budget: float | None = None,
    limit: int | None = None,
    shared: bool = True,
) -> Run:
    """Steps 0-2: the run's record, the outbox, the SDRs who cannot send, and one share per
    SDR with ready work. Returns the run, ready to be worked on by any number of workers
    (`shared`), or by this process alone."""
    budget = time_budget or settings.EXECUTOR_TIME_BUDGET_SECONDS
    record = ExecutorRun.objects.create(
        trigger=trigger,
        deadline=timezone.now() + timedelta(seconds=budget),
        scope=scope.as_dict(),
        started_by=workers.identity(),
    )
    run = Run(record, scope, time.monotonic() + budget, limit)
    token = logs.run_id.set(str(record.id))
    try:
        workers.take_over()
        close_stale(but=record.pk)
        propagate(run)  # 0
        run.record.errors.extend(webhook_switch.switch_some(run.deadline, run.scope.user_id))  # 0b
        skip_unconnected(run)  # 1
        share_out(run, shared=shared)  # 2
    except Exception as exc:
        record.errors.append(logs.redact(f"The run stopped: {type(exc).__name__}: {exc}"))
        close(run, alone=True)
        raise
    finally:
        record.save()
        logs.run_id.reset(token)
    return run


def propagate(run: Run) -> None:
    """Step 0: the outbox, before any new lead goes out (a paused lead is paused first)."""
    scope = run.scope
    done, errors = sync.propagate(
        deadline=run.deadline, user_id=scope.user_id, sequence_id=scope.sequence_id
    )
    run.record.propagated += done
    run.record.errors.extend(errors[:50])


def skip_unconnected(run: Run) -> None:
    """Step 1: one log line per SDR who is not connected; their enrollments stay as they are."""
    waiting = waiting_for_credentials(run.scope)
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


def with_work(scope: Scope) -> Any:
    """Active sequences in scope with ready enrollments, of SDRs who are connected."""
    return (
        scope.sequences()
        .filter(pk__in=Enrollment.objects.ready().values("sequence_id"))
        .filter(created_by__in=Profile.objects.connected())
    )


def share_out(run: Run, *, shared: bool) -> None:
    """Step 2: one share per connected SDR with ready work, for any worker of the run."""
    work: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
    for sdr, sequence in (
        with_work(run.scope).order_by("created_by_id", "id").values_list("created_by_id", "id")
    ):
        work[sdr].append(sequence)
    run.shares = Share.objects.share_out(
        Job.EXECUTE,
        run.id,
        work,
        run_started=run.started,
        deadline=run.record.deadline,
        shared=shared,
    )


def plan(scope: Scope) -> list[Sdr]:
    """The dry run's view of step 2: each connected SDR with ready work, with their sequences
    and steps loaded at once."""
    sequences = (
        with_work(scope)
        .select_related("provisioning")
        .prefetch_related(Prefetch("steps", queryset=SequenceStep.objects.order_by("step_number")))
        .order_by("created_by_id", "id")
    )
    by_creator: dict[uuid.UUID, list[Sequence]] = defaultdict(list)
    for sequence in sequences:
        by_creator[sequence.created_by_id].append(sequence)
    return [
        Sdr(sender.profile, sender.credentials, by_creator[sender.profile_id])
        for sender in Profile.objects.senders(by_creator)
        if sender.credentials is not None
    ]


def work(run: Run) -> None:
    """Step 3: this process's threads on the run's shares, each with its own database
    connection (with a concurrency of 1, on this thread)."""
    count = min(settings.EXECUTOR_CONCURRENCY, run.shares or settings.EXECUTOR_CONCURRENCY)
    workers.in_threads(count, lambda: work_through(run), name="exec")


def work_through(run: Run) -> None:
    """One thread's shares until none is waiting. One keep-alive connection to Smartlead per
    thread, whichever SDR's key it carries, and one sending thread that talks to Smartlead while
    this one writes to the database (sequences/sending.py). A share is finished once its last
    batch, which may still be out while the next SDR starts, is recorded."""
    held: list[tuple[Share, Tally]] = []  # worked on; their last batch may be in flight
    with new_session() as session, ThreadPoolExecutor(1, "smartlead-send") as pool:
        sender = Sender(pool)
        try:
            for share in workers.taken(Job.EXECUTE, run.id, deadline=run.deadline):
                tally = Tally()
                work_on_share(run, share, session, sender, tally)
                held = finish_recorded(run, sender, [*held, (share, tally)])
            settle_safely(sender)
            finish_recorded(run, sender, held)
        finally:
            # The sending thread's own database connection (the request budget's store).
            pool.submit(connections.close_all).result()


def work_on_share(run: Run, share: Share, session: Session, sender: Sender, tally: Tally) -> None:
    sdr = load_sdr(run, share, tally)
    if sdr is None:
        return
    try:
        work_on(run, sdr, session, sender, tally)
    except Exception as exc:  # noqa: BLE001 - one SDR's failure must not stop the others
        failed(sdr.profile, tally, exc)
        settle_safely(sender)


def load_sdr(run: Run, share: Share, tally: Tally) -> Sdr | None:
    """The share's SDR as a worker needs them: credentials, and their sequences with ready work
    and their steps. An SDR who cannot send after all (a key no configured encryption key
    opens, or disconnected since the share-out) is logged and left."""
    sender, sequences = planned(run).get(share.profile_id) or loaded(run, [share])[share.profile_id]
    if sender.credentials is None:
        if sender.unreadable:
            log.error(sender.why_not)
            tally.error(sender.why_not)
        else:
            log.info(sender.why_not)
        return None
    return Sdr(sender.profile, sender.credentials, sequences, share.lease_until)


def planned(run: Run) -> dict[uuid.UUID, tuple[ProfileSender, list[Sequence]]]:
    """Every SDR of the run as this process's workers need them, loaded once per process in
    a few queries (not a few per SDR): their credentials and the sequences found with ready
    work at share-out, if still active."""
    with run.lock:
        if run.plan is None:
            run.plan = loaded(run, list(Share.objects.of_run(Job.EXECUTE, run.id)))
        return run.plan


def loaded(run: Run, shares: list[Share]) -> dict[uuid.UUID, tuple[ProfileSender, list[Sequence]]]:
    wanted = [sequence for share in shares for sequence in share.sequence_ids]
    sequences = (
        run.scope.sequences()
        .filter(pk__in=wanted)
        .select_related("provisioning")
        .prefetch_related(Prefetch("steps", queryset=SequenceStep.objects.order_by("step_number")))
        .order_by("id")
    )
    by_creator: dict[uuid.UUID, list[Sequence]] = defaultdict(list)
    for sequence in sequences:
        by_creator[sequence.created_by_id].append(sequence)
    senders = Profile.objects.senders(share.profile_id for share in shares)
    return {sender.profile_id: (sender, by_creator[sender.profile_id]) for sender in senders}


def finish_recorded(
    run: Run, sender: Sender, held: list[tuple[Share, Tally]]
) -> list[tuple[Share, Tally]]:
    """Finishes the held shares whose batches are all recorded; returns the one still out."""
    out = sender.in_flight.work.tally if sender.in_flight else None
    for share, tally in held:
        if tally is not out:
            if not Share.objects.finish(share, counts=tally.as_counts(), errors=tally.errors):
                log.warning("User %s's share was taken over while worked on", share.profile_id)
            run.sdr_finished(tally)
    return [(share, tally) for share, tally in held if tally is out]


def settle_safely(sender: Sender) -> None:
    """The thread's batch still out is recorded, whatever happened to the SDR it was for."""
    in_flight = sender.in_flight
    try:
        sending.settle_last(sender)
    except Exception as exc:  # noqa: BLE001 - reported on the SDR's tally like any failure
        failed(in_flight.work.sdr.profile, in_flight.work.tally, exc)


def failed(profile: Profile, tally: Tally, exc: Exception) -> None:
    """One SDR's failure is logged and on the run record; it never stops the others."""
    log.exception("Executor failed on SDR %s", profile.label)
    # The run record is shown in the admin and the cron answer: no secret rides along.
    tally.error(logs.redact(f"SDR {profile.label}: {type(exc).__name__}: {exc}"))


def work_on(run: Run, sdr: Sdr, session: Session, sender: Sender, tally: Tally) -> None:
    """Step 3 for one SDR: each of their sequences in turn, with their key."""
    key = sdr.credentials.api_key
    with SmartleadClient(key, deadline=run.deadline, session=session) as client:
        for sequence in sdr.sequences:
            if run.out_of_time:
                tally.error(TIME_SPENT)
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
        holder = workers.heartbeat().worker_id
        provision(sequence, sdr.credentials, deadline=run.deadline, holder=holder)
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
