from __future__ import annotations

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class OutboundHQConfig(AppConfig):
    name = "outboundhq"
    verbose_name = "OutboundHQ"

    def ready(self) -> None:
        from django.conf import settings

        from outboundhq import checks  # noqa: F401 - registers the configuration checks
        from outboundhq.alerts import ensure_schedule
        from outboundhq.logs import register_secret

        # Our own secrets are redacted wherever they appear, like the SDRs' keys.
        for secret in (
            settings.SMARTLEAD_WEBHOOK_SECRET,
            settings.SMARTLEAD_WEBHOOK_SECRET_PREVIOUS,
            settings.CRON_SECRET,
            settings.SMARTLEAD_WEBHOOK_SIGNING_SECRET,
            settings.ALERT_WEBHOOK_URL,
            settings.HEALTH_STATUS_TOKEN,
            settings.EMAIL_HOST_PASSWORD,
        ):
            register_secret(secret, pinned=True)
        # The alert check's schedule, defined in code and synced on migrate like the others.
        post_migrate.connect(ensure_schedule, sender=self, dispatch_uid="outboundhq-alerts")
