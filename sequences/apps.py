from __future__ import annotations

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class SequencesConfig(AppConfig):
    name = "sequences"
    verbose_name = "Sequences"

    def ready(self) -> None:
        from profiles.models import changing_key, disconnecting
        from sequences import checks  # noqa: F401 - registers the legacy webhook check
        from sequences.key_change import on_key_change
        from sequences.sync import on_disconnect
        from sequences.tasks import ensure_schedule

        # Setup, not domain logic: the schedule is defined here in code and synced on migrate.
        post_migrate.connect(ensure_schedule, sender=self, dispatch_uid="sequences-schedule")
        disconnecting.connect(on_disconnect, dispatch_uid="sequences-pause-on-disconnect")
        changing_key.connect(on_key_change, dispatch_uid="sequences-pause-on-key-change")
