"""The backend's memory of its own health: the last verdict on each job (outboundhq/verdicts.py)
and which of them an alert has announced, so each change is announced once (outboundhq/alerts.py).

Imports no app: the rules that judge live in verdicts.py, above the apps.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class Status(models.TextChoices):
    """A job's verdict, as healthchecks.io shows a check: up, late, or down."""

    OK = "ok", "OK"
    LATE = "late", "Late"
    FAILING = "failing", "Failing"


class VerdictStateQuerySet(models.QuerySet["VerdictState"]):
    def announce(self, key: str, *, was: str, now: str, at: object) -> bool:
        """Claims the announcement of one change: only one process can move `announced` from
        what it read (`was`) to the new status, so two checks at once never both alert."""
        return bool(self.filter(key=key, announced=was).update(announced=now, announced_at=at))

    def take_back(self, key: str, *, was: str, now: str) -> None:
        """The alert did not go out: the change is announced again by the next check."""
        self.filter(key=key, announced=now).update(announced=was)


class VerdictState(models.Model):
    """One job's latest verdict (the executor schedule, the reconcile pass, the outbox, webhook
    intake, or one SDR's credentials and mailbox) and the status an alert last announced."""

    key = models.CharField(
        max_length=80, primary_key=True, help_text="executor, reconcile, sdr:<profile id>, ..."
    )
    name = models.CharField(max_length=200)
    status = models.CharField(max_length=16, choices=Status.choices)
    detail = models.TextField(blank=True, help_text="Why, in words, at the last check.")
    since = models.DateTimeField(default=timezone.now, help_text="When it turned to this status.")
    checked_at = models.DateTimeField(default=timezone.now)
    announced = models.CharField(
        max_length=16,
        blank=True,
        help_text="The status the last alert announced; an alert goes out when they differ.",
    )
    announced_at = models.DateTimeField(null=True, blank=True)

    objects = VerdictStateQuerySet.as_manager()

    class Meta:
        db_table = "outboundhq_verdict_state"
        ordering = ["key"]

    def __str__(self) -> str:
        return f"{self.name}: {self.get_status_display()}"
