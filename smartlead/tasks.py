"""The django-q2 side of the reconcile pass: the hourly schedule, which starts a pass and shares
it out to tasks on the broker (one SDR's campaigns at a time, like the executor's runs), the
task every qcluster process takes, and the watchdog's reconcile part."""

from __future__ import annotations

import math
from typing import Any

from django.conf import settings
from django_q.tasks import async_task

from outboundhq.schedules import every
from sequences import workers
from sequences.models import Job, Share
from smartlead.models import ReconcileRun
from smartlead.reconcile import Pass, close, start, work

SCHEDULE_NAME = "reconcile-smartlead"
SCHEDULE_FUNC = "smartlead.tasks.run_scheduled"
WORK_FUNC = workers.WORK_TASKS[Job.RECONCILE]
EVERY_MINUTES = 60


def run_scheduled() -> dict[str, Any]:
    pass_ = start(trigger="schedule")
    sdrs = Share.objects.of_run(Job.RECONCILE, pass_.record.pk).count()
    tasks = enqueue(pass_.record, sdrs)
    ReconcileRun.objects.filter(pk=pass_.record.pk).update(tasks=tasks)
    if not tasks:
        close(pass_)
    run = ReconcileRun.objects.get(pk=pass_.record.pk)
    return {
        "id": run.pk,
        "repaired": run.repaired,
        "completed": run.completed,
        "errors": run.errors,
        "tasks": tasks,
    }


def enqueue(record: ReconcileRun, sdrs: int) -> int:
    tasks = min(settings.EXECUTOR_MAX_TASKS, math.ceil(sdrs / settings.EXECUTOR_SDRS_PER_TASK))
    for n in range(tasks):
        async_task(WORK_FUNC, record.pk, task_name=f"reconcile {record.pk} {n + 1}/{tasks}")
    return tasks


def work_on_pass(run_pk: int | str) -> dict[str, Any]:
    record = ReconcileRun.objects.filter(pk=int(run_pk), finished_at__isnull=True).first()
    if record is None:
        return {"id": run_pk, "closed": True}
    pass_ = Pass.of(record)
    try:
        work(pass_)
    finally:
        closed = close(pass_)
    return {"id": run_pk, "campaigns_read": pass_.read, "closed": closed}


def watch() -> dict[str, int]:
    """The watchdog's reconcile part (outboundhq/watch.py): passes left open are closed once
    done or out of time, and a shared-out pass whose SDRs wait with no worker gets tasks."""
    taken = workers.take_over()
    closed = continued = 0
    for record in ReconcileRun.objects.filter(finished_at__isnull=True, deadline__isnull=False):
        shares = Share.objects.of_run(Job.RECONCILE, record.pk)
        alone = record.left_alone()
        if not (alone or shares.exists()):
            continue  # still being shared out
        if close(Pass.of(record), left_alone=alone):
            closed += 1
            continue
        waiting = Share.objects.stranded(Job.RECONCILE, record.pk) if record.tasks else 0
        if waiting:
            continued += enqueue(record, waiting)
    return {"taken_over": taken, "closed": closed, "tasks_enqueued": continued}


def ensure_schedule(**kwargs: Any) -> None:
    """Creates or updates the one schedule (post_migrate), never a second copy."""
    every(SCHEDULE_NAME, SCHEDULE_FUNC, EVERY_MINUTES)
