"""The django-q2 side of the reconcile pass: the function its hourly schedule runs, and the
schedule itself (created on migrate, like the executor's)."""

from __future__ import annotations

from typing import Any

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
    from django_q.models import Schedule

    Schedule.objects.update_or_create(
        name=SCHEDULE_NAME,
        defaults={
            "func": SCHEDULE_FUNC,
            "schedule_type": Schedule.MINUTES,
            "minutes": EVERY_MINUTES,
            "repeats": -1,
        },
    )
