from __future__ import annotations

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class SmartleadConfig(AppConfig):
    name = "smartlead"
    verbose_name = "Smartlead"

    def ready(self) -> None:
        from smartlead import budget
        from smartlead.tasks import ensure_schedule

        # Every Smartlead key's request budget, shared by the processes using it.
        budget.install()

        # The reconcile pass's hourly schedule, defined in code and synced on migrate.
        post_migrate.connect(ensure_schedule, sender=self, dispatch_uid="smartlead-reconcile")
