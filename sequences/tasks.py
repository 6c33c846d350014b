"""The django-q2 side: the function the 15-minute schedule runs, and the schedule itself."""

from __future__ import annotations

from typing import Any

from outboundhq.schedules import every
from sequences.executor import as_dict, execute
from sequences.models import RunTrigger

SCHEDULE_NAME = "execute-sequences"
SCHEDULE_FUNC = "sequences.tasks.run_scheduled"
EVERY_MINUTES = 15


def run_scheduled() -> dict[str, Any]:
    """What the schedule calls: one executor run. The result is kept in django-q2's task log.
    (django-q2's worker closes stale database connections around every task itself.)"""
    return as_dict(execute(trigger=RunTrigger.SCHEDULE))


def ensure_schedule(**kwargs: Any) -> None:
    """Creates or updates the one schedule (post_migrate), never a second copy."""
    every(SCHEDULE_NAME, SCHEDULE_FUNC, EVERY_MINUTES)
