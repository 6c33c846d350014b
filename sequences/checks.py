"""Start-up checks of the sequences app: campaigns still at the global secret's webhook URL."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Tags, Warning, register
from django.db import DatabaseError

from sequences import webhook_switch


@register(Tags.database)
def legacy_webhooks_check(
    app_configs: Any = None, databases: list[str] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """How many campaigns' webhooks the executor has still to move to their own URL (run for
    `migrate`, `check --database default` and the web server's start)."""
    if not databases or "default" not in databases:
        return []
    try:
        count = len(webhook_switch.left())
    except DatabaseError:
        return []  # no tables yet: migrate creates them
    if not count:
        return []
    if settings.SMARTLEAD_WEBHOOK_ACCEPT_LEGACY_SECRET:
        meanwhile = (
            "their deliveries are accepted meanwhile (SMARTLEAD_WEBHOOK_ACCEPT_LEGACY_SECRET)"
        )
    else:
        meanwhile = (
            "until then their deliveries are refused (401) and the hourly reconcile pass repairs "
            "the replies, bounces and unsubscribes they carried"
        )
    return [
        Warning(
            f"{count} campaign(s) may still have their Smartlead webhook at the global secret's "
            f"URL: each executor run moves some to their own URL; {meanwhile}.",
            hint="`manage.py resave_webhooks` moves them all at once (docs/DEPLOY.md, section 3).",
            id="sequences.W001",
        )
    ]
