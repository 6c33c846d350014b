from __future__ import annotations

from django.apps import AppConfig


class OutboundHQConfig(AppConfig):
    name = "outboundhq"
    verbose_name = "OutboundHQ"

    def ready(self) -> None:
        from outboundhq import checks  # noqa: F401 - registers the configuration checks
