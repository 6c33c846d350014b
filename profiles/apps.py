from __future__ import annotations

from django.apps import AppConfig


class ProfilesConfig(AppConfig):
    name = "profiles"
    verbose_name = "SDR profiles"

    def ready(self) -> None:
        from profiles import checks  # noqa: F401 - registers the key-encryption checks
