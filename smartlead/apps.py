from __future__ import annotations

from django.apps import AppConfig


class SmartleadConfig(AppConfig):
    name = "smartlead"
    verbose_name = "Smartlead"
