from __future__ import annotations

from django.apps import AppConfig


class OutboundHQConfig(AppConfig):
    name = "outboundhq"
    verbose_name = "OutboundHQ"

    def ready(self) -> None:
        from django.conf import settings

        from outboundhq import checks  # noqa: F401 - registers the configuration checks
        from outboundhq.logs import register_secret

        # Our own secrets are redacted wherever they appear, like the SDRs' keys.
        for secret in (
            settings.SMARTLEAD_WEBHOOK_SECRET,
            settings.SMARTLEAD_WEBHOOK_SECRET_PREVIOUS,
            settings.CRON_SECRET,
            settings.SMARTLEAD_WEBHOOK_SIGNING_SECRET,
        ):
            register_secret(secret, pinned=True)
