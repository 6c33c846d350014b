"""The django-q2 side of the reconcile pass: the function its hourly schedule runs, and the
schedule itself (created on migrate, like the executor's)."""

from __future__ import annotations

from typing import Any

from outboundhq.schedules import every

SCHEDULE_NAME = "reconcile-smartlead"
SCHEDULE_FUNC = "smartlead.tasks.run_scheduled"
EVERY_MINUTES = 60


def run_scheduled() -> dict[str, Any]:
    from smartlead.reconcile import reconcile

    run = reconcile(trigger="schedule")
    return {
        "id": run.pk,
        "repaired": run.repaired,
        "completed": run.completed,
        "errors": run.errors,
    }


def ensure_schedule(**kwargs: Any) -> None:
    """Creates or updates the one schedule (post_migrate), never a second copy."""
    every(SCHEDULE_NAME, SCHEDULE_FUNC, EVERY_MINUTES)
