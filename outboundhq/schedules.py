"""django-q2 schedules defined in code: each app names its own, synced on migrate."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone


def every(name: str, func: str, minutes: int, *, first_run_in: timedelta | None = None) -> None:
    """Creates or updates the schedule `name` (never a second copy) to run `func` every
    `minutes`, for ever. `first_run_in` delays only a new schedule's first run."""
    from django_q.models import Schedule

    defaults = {
        "func": func,
        "schedule_type": Schedule.MINUTES,
        "minutes": minutes,
        "repeats": -1,
    }
    first = {"next_run": timezone.now() + first_run_in} if first_run_in else {}
    Schedule.objects.update_or_create(
        name=name, defaults=defaults, create_defaults=defaults | first
    )
