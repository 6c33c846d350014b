"""`manage.py encrypt_smartlead_keys`: every stored Smartlead key encrypted under the newest key.

Plain-text keys (written by older clients) are encrypted; keys encrypted under an older key are
re-encrypted under the first of SMARTLEAD_KEY_ENCRYPTION_KEYS (the rotation step). Safe to run
any time and as often as wanted: a key already current is left as it is. Prints counts only.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from profiles.models import Profile

OUTCOMES = ("encrypted", "rotated", "current", "unreadable")


class Command(BaseCommand):
    help = "Encrypt plain-text Smartlead keys and re-encrypt old ones under the newest key."

    def handle(self, *args: Any, **options: Any) -> None:
        counts = Profile.objects.encrypt_keys()
        self.stdout.write(
            "Smartlead keys: " + ", ".join(f"{counts[name]} {name}" for name in OUTCOMES) + "."
        )
        if counts["unreadable"]:
            # Exit non-zero so a rotation script stops before the old key is removed.
            raise CommandError(
                f"{counts['unreadable']} key(s) cannot be decrypted with "
                "SMARTLEAD_KEY_ENCRYPTION_KEYS; they were left as they are."
            )
