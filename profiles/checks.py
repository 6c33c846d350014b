"""Start-up checks for the Smartlead keys at rest: a lost encryption key stops the service."""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError

from profiles import crypto

HINT = (
    "Put the key that encrypted them back in SMARTLEAD_KEY_ENCRYPTION_KEYS (keep it after the "
    "new one while rotating); see docs/DEPLOY.md, 'Smartlead key encryption'."
)


@register(Tags.security)
def encryption_keys_check(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """The configured keys parse (a missing one in production is outboundhq.E001)."""
    from django.conf import settings

    if not settings.SMARTLEAD_KEY_ENCRYPTION_KEYS:
        return []
    try:
        crypto.keyring()
    except ImproperlyConfigured as exc:
        return [Error(str(exc), id="profiles.E001")]
    return []


@register(Tags.database)
def stored_keys_check(
    app_configs: Any = None, databases: list[str] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Every encrypted key in `profiles` opens with the configured keys.

    A database check: Django runs it for `migrate` (Railway's pre-deploy step) and
    `check --database default`, and the web server at start-up (outboundhq/checks.py).
    None opening means the key is lost: an error. Only some not opening is a warning, as those
    SDRs are skipped one by one and the others keep sending.
    """
    if not databases or "default" not in databases or encryption_keys_check():
        return []
    from profiles.models import Profile

    try:
        stored = Profile.objects.encrypted_keys()
    except DatabaseError:
        return []  # no database or no `profiles` yet: /health and migrate say so
    unreadable = sum(1 for value in stored if not crypto.is_readable(value))
    if not unreadable:
        return []
    message = (
        f"{unreadable} of {len(stored)} encrypted Smartlead key(s) in profiles cannot be "
        "decrypted with SMARTLEAD_KEY_ENCRYPTION_KEYS"
    )
    if unreadable == len(stored):
        return [
            Error(
                message + ": the encryption key is missing or wrong.", hint=HINT, id="profiles.E002"
            )
        ]
    return [Warning(message + "; those SDRs are skipped.", hint=HINT, id="profiles.W003")]
