"""The django-q2 side: the 15-minute schedule, which starts a run and shares it out to tasks on
the broker, and the task every qcluster process on every machine takes to work on it."""

from __future__ import annotations

import math
from typing import Any

from django.conf import settings
from django_q.tasks import async_task

from outboundhq import logs
from outboundhq.schedules import every
from sequences import workers
from sequences.context import Run, Scope
from sequences.executor import start, work
from sequences.models import ExecutorRun, Job, RunTrigger, Share
from sequences.runs import as_dict, close, close_stale

SCHEDULE_NAME = "execute-sequences"
SCHEDULE_FUNC = "sequences.tasks.run_scheduled"
WORK_FUNC = workers.WORK_TASKS[Job.EXECUTE]
EVERY_MINUTES = 15
# The watchdog (outboundhq/watch.py) is scheduled with the executor's: outboundhq has no models,
# and Django sends post_migrate only to apps that have.
WATCH_NAME, WATCH_FUNC = "watch-workers", "outboundhq.watch.run_scheduled"


def run_scheduled() -> dict[str, Any]:
    """What the schedule calls: steps 0-2 of a run here, step 3 by the tasks it enqueues; the
    last of them closes the run. Kept in django-q2's task log. (django-q2's worker closes stale
    database connections around every task itself.)"""
    run = start(trigger=RunTrigger.SCHEDULE, scope=Scope())
    fan_out(run)
    # The record as it is now: open, unless its tasks already ran (or there were none).
    return as_dict(ExecutorRun.objects.get(pk=run.id)) | {"sdrs": run.shares}


def fan_out(run: Run) -> int:
    """The run's SDRs shared out to tasks, one per EXECUTOR_SDRS_PER_TASK SDRs (at most
    EXECUTOR_MAX_TASKS): each task's threads take SDRs one at a time, so however many
    processes take them, the work spreads evenly and a slow SDR holds up no task. With no
    SDR to work on, the run is closed here."""
    ExecutorRun.objects.filter(pk=run.id).update(tasks=enqueue_count(run.shares))
    run.record.tasks = enqueue(run, run.shares)
    if not run.record.tasks:
        close(run)
    return run.record.tasks


def watch() -> dict[str, int]:
    """The watchdog's executor part (outboundhq/watch.py, every minute): what stopped workers
    held is given back, runs left open are closed once done or out of time, and a shared-out
    run whose SDRs wait with no worker on it (its tasks all stopped) gets tasks again."""
    taken = workers.take_over()
    closed = close_stale()
    continued = 0
    for record in ExecutorRun.objects.filter(finished_at__isnull=True, tasks__gt=0):
        if waiting := Share.objects.stranded(Job.EXECUTE, record.pk):
            continued += enqueue(Run.of(record), waiting)
    return {"taken_over": taken, "closed": closed, "tasks_enqueued": continued}


def enqueue_count(sdrs: int) -> int:
    return min(settings.EXECUTOR_MAX_TASKS, math.ceil(sdrs / settings.EXECUTOR_SDRS_PER_TASK))


def enqueue(run: Run, sdrs: int) -> int:
    """Tasks for `sdrs` SDRs of the run on the broker; returns how many."""
    tasks = enqueue_count(sdrs)
    for n in range(tasks):
        async_task(WORK_FUNC, str(run.id), task_name=f"execute-sequences {run.id} {n + 1}/{tasks}")
    return tasks


def work_on_run(run_id: str) -> dict[str, Any]:
    """The task: this process's threads on the run's SDRs until none is waiting; whoever
    finishes last closes the run."""
    record = ExecutorRun.objects.filter(pk=run_id, finished_at__isnull=True).first()
    if record is None:
        return {"id": run_id, "closed": True}
    run = Run.of(record)
    token = logs.run_id.set(run_id)
    try:
        work(run)
    finally:
        closed = close(run)
        logs.run_id.reset(token)
    return {"id": run_id, "sdrs_done": run.sdrs_done, "closed": closed}


def ensure_schedule(**kwargs: Any) -> None:
    """Creates or updates the schedules (post_migrate), never a second copy."""
    every(SCHEDULE_NAME, SCHEDULE_FUNC, EVERY_MINUTES)
    every(WATCH_NAME, WATCH_FUNC, 1)
