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


# A lost encryption key shows as every stored ciphertext failing, however many there are; a
# value someone wrote by hand (the browser, during the switch-over) is one row. So one row never
# stops the service: start-up refuses only when at least this many tokens fail and none opens.
LOST_KEY_ROWS = 2
SHOWN_PROFILES = 10


@register(Tags.database)
def stored_keys_check(
    app_configs: Any = None, databases: list[str] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Every encrypted key in `profiles` opens with the configured keys.

    A database check: Django runs it for `migrate` (Railway's pre-deploy step) and
    `check --database default`, and the web server at start-up (outboundhq/checks.py).
    Several tokens this service wrote and none opening means the encryption key is lost: an
    error. Anything less (some keys open; one row; values that are not our tokens at all, such
    as `enc:v1:` typed into the column by the browser) is a warning naming the profiles, which
    are skipped one by one while everyone else keeps sending.
    """
    if not databases or "default" not in databases or encryption_keys_check():
        return []
    from profiles.models import Profile

    try:
        stored = Profile.objects.encrypted_keys()
    except DatabaseError:
        return []  # no database or no `profiles` yet: /health and migrate say so
    unreadable = sorted((pk for pk, v in stored.items() if not crypto.is_readable(v)), key=str)
    if not unreadable:
        return []
    ours = [pk for pk in unreadable if crypto.is_well_formed(stored[pk])]
    message = (
        f"{len(unreadable)} of {len(stored)} encrypted Smartlead key(s) in profiles cannot be "
        "decrypted with SMARTLEAD_KEY_ENCRYPTION_KEYS"
    )
    if len(unreadable) == len(stored) and len(ours) >= LOST_KEY_ROWS:
        return [
            Error(
                message + ": the encryption key is missing or wrong.", hint=HINT, id="profiles.E002"
            )
        ]
    shown = ", ".join(str(pk) for pk in unreadable[:SHOWN_PROFILES]) + (
        " …" if len(unreadable) > SHOWN_PROFILES else ""
    )
    foreign = len(unreadable) - len(ours)
    written = f" ({foreign} not written by this service, e.g. typed in by the browser)"
    return [
        Warning(
            message + (written if foreign else "") + f"; those SDRs are skipped until they "
            f"connect their key again: profiles {shown}.",
            hint=HINT,
            id="profiles.W003",
        )
    ]
