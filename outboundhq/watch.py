"""The watchdog: every minute, work that a stopped worker held is taken over (its SDRs back to
waiting, its claims and leases given back), and runs left open are closed or continued, so a
crashed process costs the executor and the reconcile pass a minute, not a run's time budget."""

from __future__ import annotations

from typing import Any

from outboundhq.schedules import every
from sequences import tasks as executor_tasks
from smartlead import tasks as reconcile_tasks

SCHEDULE_NAME = "watch-workers"
SCHEDULE_FUNC = "outboundhq.watch.run_scheduled"
EVERY_MINUTES = 1


def run_scheduled() -> dict[str, Any]:
    return {"executor": executor_tasks.watch(), "reconcile": reconcile_tasks.watch()}


def ensure_schedule(**kwargs: Any) -> None:
    """Creates or updates the one schedule (post_migrate), never a second copy."""
    every(SCHEDULE_NAME, SCHEDULE_FUNC, EVERY_MINUTES)
