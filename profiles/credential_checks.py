"""The backend's record of the last time it asked Smartlead about an SDR's key, and what it said.
Nothing here imports the profile model (profiles/models.py imports this)."""

from __future__ import annotations

import uuid
from typing import Protocol

from django.db import models
from django.utils import timezone

from profiles.credentials import SQL_STATUSES, SmartleadStatus, key_fingerprint


class Checked(Protocol):
    """The profile whose key was checked (profiles/models.py: Profile)."""

    id: uuid.UUID

    def smartlead_key(self, *, write_back: bool = True) -> str | None: ...

    def forget_status(self) -> None: ...


class CredentialCheckQuerySet(models.QuerySet["CredentialCheck"]):
    def record(self, *, profile: Checked, status: SmartleadStatus, detail: str = "") -> None:
        """Stores the latest verdict on the profile's current key (one row per profile)."""
        self.update_or_create(
            profile_id=profile.id,
            defaults={
                "status": status,
                "ok": status == SmartleadStatus.CONNECTED,
                "detail": detail[:1000],
                "key_fingerprint": key_fingerprint(profile.smartlead_key(write_back=False) or ""),
                "checked_at": timezone.now(),
            },
        )
        profile.forget_status()


class CredentialCheck(models.Model):
    """The last time the backend asked Smartlead about an SDR's key, and what it said.

    Project-owned. No database foreign key to `profiles`: a Supabase user deletion must never be
    blocked by the backend's bookkeeping.
    """

    profile = models.OneToOneField(
        "profiles.Profile",
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        primary_key=True,
        related_name="credential_check",
    )
    # Only what a check can record (not UNREADABLE_KEY, which is worked out on reading).
    status = models.CharField(max_length=32, choices=[(s.value, s.label) for s in SQL_STATUSES])
    ok = models.BooleanField(default=False)
    detail = models.TextField(blank=True, help_text="What Smartlead said, in words.")
    key_fingerprint = models.CharField(
        max_length=64, help_text="SHA-256 of the key that was checked; a new key is unchecked."
    )
    checked_at = models.DateTimeField()

    objects = CredentialCheckQuerySet.as_manager()

    class Meta:
        db_table = "outboundhq_credential_check"

    def __str__(self) -> str:
        return f"{self.profile_id}: {self.get_status_display()}"
