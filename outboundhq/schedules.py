"""django-q2 schedules defined in code: each app names its own, synced on migrate."""

from __future__ import annotations


def every(name: str, func: str, minutes: int) -> None:
    """Creates or updates the schedule `name` (never a second copy) to run `func` every
    `minutes`, for ever."""
    from django_q.models import Schedule

    Schedule.objects.update_or_create(
        name=name,
        defaults={
            "func": func,
            "schedule_type": Schedule.MINUTES,
            "minutes": minutes,
            "repeats": -1,
        },
    )
