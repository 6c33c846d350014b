"""A run's record (`ExecutorRun`): closed by whichever worker finishes its last SDR, with every
share's counts gathered on it; runs left open by stopped workers closed; the summary line."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from django.utils import timezone

from sequences import workers
from sequences.context import Run, Tally
from sequences.models import ExecutorRun, Job, Share
from sequences.shares import OPEN as OPEN_SHARES

# The executor's own lines (operators filter on this name).
log = logging.getLogger("sequences.executor")
TIME_SPENT = "The time budget is spent; the rest waits for next run."


def close(run: Run, *, alone: bool = False, left_alone: bool = False) -> bool:
    """Step 4, by whichever worker finds no share open: every share's counts on the run record,
    saved and logged; returns whether this call closed it. Past the deadline, shares no worker
    took are left for the next run. `alone`: the run had only this process's threads, now all
    ended, so a share still marked as theirs (a thread that died) is left too. `left_alone`:
    a run of one process that stopped: its waiting shares are left for the next run."""
    if alone:
        workers.leave_mine(Job.EXECUTE, run.id)
    if run.out_of_time or alone or left_alone:
        left = Share.objects.leave_waiting(Job.EXECUTE, run.id)
        if left:
            run.record.errors.append(f"{TIME_SPENT} ({left} SDRs not reached)")
    if Share.objects.still_open(Job.EXECUTE, run.id):
        return False
    record = run.record
    saved = ExecutorRun.objects.get(pk=record.pk)  # what whoever started it saved
    if saved.finished_at is not None:
        return False
    gathered = gather(saved, record.errors)
    if not ExecutorRun.objects.filter(pk=record.pk, finished_at__isnull=True).update(**gathered):
        return False  # another worker closed it first
    for name, value in gathered.items():
        setattr(record, name, value)
    log.info("Executor run %s: %s", record.id, summary(record))
    return True


def close_stale(*, but: uuid.UUID | None = None) -> int:
    """Runs left open by workers that stopped (their shares given back by `take_over`): closed
    once their time is up, or nothing of theirs is open (a run still sharing itself out has no
    share yet, and is left alone). Returns how many."""
    now, closed = timezone.now(), 0
    open_runs = ExecutorRun.objects.filter(finished_at__isnull=True, deadline__isnull=False)
    for record in open_runs.exclude(pk=but):
        alone = record.left_alone()
        if alone or record.deadline < now or Share.objects.of_run(Job.EXECUTE, record.pk).exists():
            closed += close(Run.of(record), left_alone=alone)
    return closed


def gather(saved: ExecutorRun, errors: list[str]) -> dict[str, Any]:
    """The run record's figures: its own steps' (saved by whoever started it) and every
    share's."""
    shares = Share.objects.of_run(Job.EXECUTE, saved.pk)
    for counts, share_errors in shares.values_list("counts", "errors"):
        Tally.of(counts, share_errors).add_to(saved)
    fields = [*Tally.COUNTERS, "skipped"]
    extra = [e for e in errors if e not in saved.errors]
    return {name: getattr(saved, name) for name in fields} | {
        "errors": (saved.errors + extra)[: Tally.MAX_ERRORS],
        "workers": Share.objects.workers_of(Job.EXECUTE, saved.pk),
        "finished_at": timezone.now(),
    }


def shares_done(run_id: uuid.UUID) -> tuple[int, int]:
    """How many of a run's SDRs are done, and the leads they pushed (for progress)."""
    done = Share.objects.of_run(Job.EXECUTE, run_id).exclude(state__in=OPEN_SHARES)
    counts = list(done.values_list("counts", flat=True))
    return len(counts), sum(int(c.get("pushed") or 0) for c in counts)


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
        "tasks",
        "workers",
    ]
    data = {name: getattr(record, name) for name in fields}
    data["id"] = str(record.id)
    data["started_at"] = record.started_at.isoformat() if record.started_at else None
    data["finished_at"] = record.finished_at.isoformat() if record.finished_at else None
    if record.dry_run:
        data["plan"] = getattr(record, "plan_lines", [])
    return data
