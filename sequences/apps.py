from __future__ import annotations

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class SequencesConfig(AppConfig):
    name = "sequences"
    verbose_name = "Sequences"

    def ready(self) -> None:
        from profiles.models import disconnecting
        from sequences.sync import on_disconnect
        from sequences.tasks import ensure_schedule

        # Setup, not domain logic: the schedule is defined here in code and synced on migrate.
        post_migrate.connect(ensure_schedule, sender=self, dispatch_uid="sequences-schedule")
        disconnecting.connect(on_disconnect, dispatch_uid="sequences-pause-on-disconnect")
