"""The SDR's profile (a hosted Supabase table) and the backend's own record of credential checks."""

from __future__ import annotations

import re
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from operator import attrgetter

from django.db import models, transaction
from django.db.models import Case, Exists, OuterRef, Prefetch, Q, Value, When
from django.db.models.functions import Cast
from django.dispatch import Signal
from django.utils import timezone

from outboundhq.logs import mask
from profiles import crypto
from profiles.credential_checks import CredentialCheck
from profiles.credentials import (
    HELD,
    MAILBOX_ID,
    NOT_CONNECTED,
    SENDING,
    UNREADABLE,
    SmartleadCredentials,
    SmartleadStatus,
    fetch_email_accounts,
    refusal_status,
)
from profiles.mailboxes import SdrMailbox
from smartlead.api import EmailAccount, SmartleadError


@dataclass(frozen=True)
class Sender:
    """One SDR as every per-SDR loop acts for them at Smartlead (the executor, the outbox, the
    reconcile pass, re-saving webhooks): usable credentials, or why they cannot send."""

    profile_id: uuid.UUID
    profile: Profile | None
    credentials: SmartleadCredentials | None

    @property
    def unreadable(self) -> bool:
        """A key is saved but no configured encryption key opens it."""
        return self.profile is not None and not self.profile.key_is_readable()

    @property
    def name(self) -> str:  # the SDR as people know them; an id with no profile row, as is
        return self.profile.label if self.profile else f"{self.profile_id} (no profile)"

    @property
    def why_not(self) -> str:
        """Why they cannot act at Smartlead, in the one wording; empty when they can."""
        if self.credentials is not None:
            return ""
        return (UNREADABLE if self.unreadable else NOT_CONNECTED) % self.name

    @property
    def held(self) -> bool:
        """They can act (pause, move, read) but no mailbox of theirs may send anything new."""
        return self.credentials is not None and not self.credentials.email_account_ids


# Sent by Profile.disconnect_smartlead before the key is forgotten (profile=, api_key=), and by
# Profile.connect_smartlead before another key replaces it (profile=, old_key=, new_key=).
# Signals, so that profiles does not import the sequences app that depends on it.
disconnecting = Signal()
changing_key = Signal()


class ProfileQuerySet(models.QuerySet["Profile"]):
    def with_smartlead_status(self) -> ProfileQuerySet:
        """Annotates `connection_status`: THE rule of an SDR's Smartlead connection, in SQL.

        The executor, the dry run, explain, the connect API and the admin all read it from
        here (one row's `smartlead_status()` too), so they can never disagree.
        """
        failed_check = CredentialCheck.objects.filter(profile_id=OuterRef("pk"), ok=False).values(
            "status"
        )[:1]
        passed_check = CredentialCheck.objects.filter(profile_id=OuterRef("pk"), ok=True)
        no_key = Q(smartlead_api_key__isnull=True) | Q(smartlead_api_key="")
        mailbox = Q(smartlead_email_account_id__regex=MAILBOX_ID)
        # The SDR's mailboxes are the table's rows while its first is the profile's own mailbox
        # (`Profile.mailbox_rows`); held when none of them is healthy.
        own = SdrMailbox.objects.filter(profile_id=OuterRef("pk"))
        listed = own.annotate(_id=Cast("mailbox_id", models.TextField())).filter(
            position=0, _id=OuterRef("smartlead_email_account_id")
        )
        return self.annotate(
            _failed_check=models.Subquery(failed_check),
            _passed_check=Exists(passed_check),
            _listed=Exists(listed),
            _healthy=Exists(own.filter(healthy=True)),
        ).annotate(
            connection_status=Case(
                When(no_key, then=Value(SmartleadStatus.NO_API_KEY)),
                When(_failed_check__isnull=False, then="_failed_check"),
                When(
                    ~mailbox | Q(smartlead_email_account_id__isnull=True),
                    then=Value(SmartleadStatus.NO_EMAIL_ACCOUNT),
                ),
                When(_listed=True, _healthy=False, then=Value(SmartleadStatus.NO_HEALTHY_MAILBOX)),
                When(_passed_check=True, then=Value(SmartleadStatus.CONNECTED)),
                default=Value(SmartleadStatus.UNCHECKED),
                output_field=models.TextField(),
            )
        )

    def connected(self) -> ProfileQuerySet:
        """SDRs whose credentials send: a key, a valid mailbox id, no refusal on record, and a
        healthy (or not yet read) mailbox."""
        return self.with_smartlead_status().filter(connection_status__in=SENDING)

    def with_mailboxes(self) -> ProfileQuerySet:
        """Each profile's mailbox rows loaded with it, in order (one query for all)."""
        return self.prefetch_related(
            Prefetch("mailboxes", queryset=SdrMailbox.objects.order_by("position"))
        )

    def sending_from(self, mailbox_id: int) -> ProfileQuerySet:
        """The SDRs one of whose mailboxes this is."""
        return self.filter(
            Q(mailboxes__mailbox_id=mailbox_id) | Q(smartlead_email_account_id=str(mailbox_id))
        ).distinct()

    def senders(self, ids: Iterable[uuid.UUID]) -> Iterator[Sender]:
        """Each of these SDRs, in the order given, with their credentials or why not (`Sender`);
        two queries for all of them. An id with no profile row is not connected."""
        ids = list(ids)
        found = self.with_smartlead_status().with_mailboxes().in_bulk(ids)
        for pk in ids:
            profile = found.get(pk)
            yield profile.sender() if profile else Sender(pk, None, None)

    def not_connected(self) -> ProfileQuerySet:
        return self.with_smartlead_status().exclude(connection_status__in=SENDING)

    def encrypted_keys(self) -> dict[uuid.UUID, str]:
        """The stored keys that are ciphertext, by profile (what the start-up check opens)."""
        return dict(
            self.filter(smartlead_api_key__startswith=crypto.PREFIX).values_list(
                "pk", "smartlead_api_key"
            )
        )

    def encrypt_keys(self) -> Counter[str]:
        """Encrypts plain-text keys and re-encrypts older keys' tokens under the newest key.

        Idempotent; each row is written only if it still holds what was read (a key saved
        meanwhile is left alone). Returns counts: encrypted, rotated, current, unreadable.
        """
        counts: Counter[str] = Counter()
        rows = self.exclude(smartlead_api_key__isnull=True).exclude(smartlead_api_key="")
        for pk, stored in rows.values_list("pk", "smartlead_api_key").iterator():
            counts[Profile.reencrypt(pk, stored)] += 1
        return counts


class Profile(models.Model):
    """One SDR (a Supabase auth user). Hosted table: the backend never changes its shape."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    email = models.TextField(null=True, blank=True)
    first_name = models.TextField(null=True, blank=True)
    last_name = models.TextField(null=True, blank=True)
    role = models.TextField(null=True, blank=True, default="sdr")
    created_at = models.DateTimeField(null=True, default=timezone.now)
    updated_at = models.DateTimeField(null=True, default=timezone.now)
    smartlead_api_key = models.TextField(
        null=True, blank=True, help_text="The SDR's Smartlead API key. Never shown in full."
    )
    smartlead_email_account_id = models.TextField(
        null=True,
        blank=True,
        help_text="Id of the Smartlead email account (mailbox) this SDR sends from.",
    )

    objects = ProfileQuerySet.as_manager()

    class Meta:
        managed = False
        db_table = "profiles"
        ordering = ["email"]

    def __str__(self) -> str:
        return self.email or str(self.id)

    @property
    def full_name(self) -> str:
        return " ".join(p for p in (self.first_name, self.last_name) if p)

    @property
    def label(self) -> str:  # how commands, alerts and the admin name an SDR, never by id alone
        name, email = self.full_name, self.email or str(self.id)
        return f"{email} ({name})" if name else email

    @property
    def has_smartlead_key(self) -> bool:
        """Whether a key is saved, readable or not (no decryption needed to know)."""
        return bool(self.smartlead_api_key)

    def smartlead_key(self, *, write_back: bool = True) -> str | None:
        """The SDR's Smartlead key in clear: the one reader of `smartlead_api_key`.

        A plain-text value (from an older client) is encrypted in place on first use, unless
        `write_back` is off (pages that only show the hint). Raises crypto.UndecryptableKey.
        """
        stored = self.smartlead_api_key
        if not stored:
            return None
        plain = crypto.decrypt(stored)
        if write_back and not crypto.is_encrypted(stored):
            Profile.reencrypt(self.pk, stored)
            self.refresh_from_db(fields=["smartlead_api_key"])
        return plain

    @staticmethod
    def reencrypt(pk: uuid.UUID, stored: str) -> str:
        """Stores `stored` encrypted under the newest key, if the row still holds it; says what
        was done: "encrypted", "rotated", "current" or "unreadable"."""
        try:
            new = crypto.reencrypted(stored)
        except crypto.UndecryptableKey:
            return "unreadable"
        if new is None:
            return "current"
        Profile.objects.filter(pk=pk, smartlead_api_key=stored).update(smartlead_api_key=new)
        return "rotated" if crypto.is_encrypted(stored) else "encrypted"

    @property
    def api_key_hint(self) -> str:
        """At most the last 4 characters of the key, for people to recognise it."""
        try:
            return mask(self.smartlead_key(write_back=False))
        except crypto.UndecryptableKey:
            return ""  # its status says why

    def smartlead_status(self) -> SmartleadStatus:
        """This SDR's connection status, by the one rule (`with_smartlead_status`); free when the
        row was loaded with it, one query otherwise. A key no configured encryption key opens
        is UNREADABLE_KEY (SQL cannot tell)."""
        status = getattr(self, "connection_status", None)
        if status is None:
            status = Profile.objects.with_smartlead_status().get(pk=self.pk).connection_status
        if status != SmartleadStatus.NO_API_KEY and not self.key_is_readable():
            return SmartleadStatus.UNREADABLE_KEY
        return SmartleadStatus(status)

    def key_is_readable(self) -> bool:
        return not self.smartlead_api_key or crypto.is_readable(self.smartlead_api_key)

    @property
    def mailbox_id(self) -> int | None:
        """The chosen mailbox's id as a number, or None when missing or not a valid id."""
        value = self.smartlead_email_account_id or ""
        return int(value) if re.fullmatch(MAILBOX_ID, value) else None

    def mailbox_rows(self) -> list[SdrMailbox]:
        """The SDR's mailboxes in order (profiles/mailboxes.py). Only the profile's own mailbox,
        unchecked, when the table does not list it first: chosen the older single-mailbox way
        (or written straight into the column), it replaces the rest at the next health read."""
        own = self.mailbox_id
        if own is None:
            return []
        rows = sorted(self.mailboxes.all(), key=attrgetter("position"))
        if rows and rows[0].mailbox_id == own:
            return rows
        return [SdrMailbox(profile_id=self.id, mailbox_id=own)]

    def healthy_mailbox_ids(self) -> list[int]:
        """The mailboxes that may send now, first the profile's own when it may."""
        return [row.mailbox_id for row in self.mailbox_rows() if row.healthy]

    @property
    def is_connected(self) -> bool:
        return self.smartlead_status() in SENDING

    def sender(self) -> Sender:
        """This SDR's credentials to act with, or why not (`Sender`)."""
        return Sender(self.id, self, self.smartlead_credentials())

    def smartlead_credentials(self) -> SmartleadCredentials | None:
        """The key and mailboxes to act with, or None when the SDR is not connected. A held SDR
        (no healthy mailbox) gets them with no mailbox that may send (`email_account_ids`)."""
        if self.smartlead_status() not in (*SENDING, HELD):
            return None
        return SmartleadCredentials(
            profile_id=self.id,
            api_key=self.smartlead_key(),
            email_account_id=self.mailbox_id,
            email_account_ids=tuple(self.healthy_mailbox_ids()),
        )

    def set_smartlead_credentials(
        self,
        *,
        api_key: str | None,
        email_account_id: int | None = None,
        email_account_ids: Sequence[int] | None = None,
    ) -> None:
        """Saves the key (encrypted) and the mailboxes: the first in the profile's column (only
        those columns), all of them in order in the mailbox table. Forgets any verdict about
        the previous key; what is known of a mailbox kept stays (a failure too)."""
        ids = list(email_account_ids or ([email_account_id] if email_account_id else []))
        self.smartlead_api_key = crypto.encrypt(api_key) if api_key else None
        self.smartlead_email_account_id = str(ids[0]) if ids else None
        self.updated_at = timezone.now()
        with transaction.atomic():
            self.save(
                update_fields=["smartlead_api_key", "smartlead_email_account_id", "updated_at"]
            )
            SdrMailbox.objects.replace(self.id, ids)
            CredentialCheck.objects.filter(profile_id=self.id).delete()
        self.forget_status()

    def forget_status(self) -> None:
        """A status (or mailboxes) loaded with the row is stale once credentials, a verdict or a
        mailbox's health change."""
        self.__dict__.pop("connection_status", None)
        getattr(self, "_prefetched_objects_cache", {}).pop("mailboxes", None)

    def connect_smartlead(self, api_key: str) -> list[EmailAccount]:
        """Saves a key only once Smartlead has accepted it; returns the accounts it can send from.

        The chosen mailboxes are kept only if the new key owns them too, and read for health.
        Raises SmartleadError, with nothing saved, when Smartlead refuses the key or cannot be
        reached.
        """
        accounts = fetch_email_accounts(api_key)
        owned = {a.id for a in accounts}
        old = self.smartlead_key(write_back=False) if self.key_is_readable() else None
        if old and old != api_key:  # campaigns out of the new key's reach are paused first
            changing_key.send(sender=Profile, profile=self, old_key=old, new_key=api_key)
        kept = [row.mailbox_id for row in self.mailbox_rows() if row.mailbox_id in owned]
        self.set_smartlead_credentials(api_key=api_key, email_account_ids=kept)
        self.record_accounts(accounts, release=True)
        return accounts

    def check_smartlead(self, *, release: bool = False) -> list[EmailAccount]:
        """Asks Smartlead about the saved key and records the verdict; returns its accounts.

        A key check (the default) may find a mailbox failing but never makes one healthy;
        `release` makes it a health read (verifying: profiles/mailboxes.py). Raises
        SmartleadError (the verdict recorded when it is about the key, not when Smartlead was
        merely unreachable) and ValueError when no key is saved.
        """
        api_key = self.smartlead_key()
        if not api_key:
            raise ValueError("No Smartlead API key is saved.")
        try:
            accounts = fetch_email_accounts(api_key)
        except SmartleadError as exc:
            self.record_smartlead_refusal(exc)
            raise
        self.record_accounts(accounts, release=release)
        return accounts

    def choose_smartlead_email_accounts(
        self, email_account_ids: Sequence[int]
    ) -> tuple[list[EmailAccount], list[int]]:
        """Saves the mailboxes to send from, in order, if the saved key owns every one (checked
        live, and read for health); returns the chosen accounts and the ids it does not own
        (then nothing is saved)."""
        accounts = self.check_smartlead()
        by_id = {a.id: a for a in accounts}
        missing = [i for i in email_account_ids if i not in by_id]
        if missing:
            return [], missing
        self.set_smartlead_credentials(
            api_key=self.smartlead_key(), email_account_ids=email_account_ids
        )
        self.record_accounts(accounts, release=True)
        return [by_id[i] for i in email_account_ids], []

    def disconnect_smartlead(self) -> None:
        """Forgets the key and the mailboxes. First, while the key still works, `disconnecting`
        lets the sequences app pause the SDR's campaigns with it (sequences/sync.py)."""
        api_key = self.smartlead_key(write_back=False) if self.key_is_readable() else None
        if api_key:
            disconnecting.send(sender=Profile, profile=self, api_key=api_key)
        self.set_smartlead_credentials(api_key=None)

    def record_smartlead_refusal(self, exc: SmartleadError) -> None:
        """Records a 401/403 from Smartlead against the saved key; other errors say nothing."""
        status = refusal_status(exc)
        if status is not None:
            CredentialCheck.objects.record(profile=self, status=status, detail=str(exc))

    def record_accounts(self, accounts: list[EmailAccount], *, release: bool) -> None:
        """The key's verdict (it answered: connected) and each mailbox's health from its list."""
        detail = f"The key can send from {len(accounts)} email account(s)."
        CredentialCheck.objects.record(
            profile=self, status=SmartleadStatus.CONNECTED, detail=detail
        )
        self.adopt_own_mailbox()
        SdrMailbox.objects.record_health(self.id, accounts, release=release, now=timezone.now())
        self.forget_status()

    def adopt_own_mailbox(self) -> None:
        """The profile's mailbox, chosen the older way, becomes the table's only row."""
        rows = self.mailbox_rows()
        if rows and rows[0].pk is None:
            SdrMailbox.objects.replace(self.id, [rows[0].mailbox_id])
            self.forget_status()

    def record_mailbox_failure(self, mailbox_id: int, detail: str) -> bool:
        """Smartlead reported this mailbox of theirs failing: it stops sending until a health
        read shows it healthy (never cleared by a key check). False if it is not theirs."""
        self.adopt_own_mailbox()
        done = SdrMailbox.objects.record_failure(self.id, mailbox_id, detail, timezone.now())
        self.forget_status()
        return done
