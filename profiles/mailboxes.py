"""An SDR's mailboxes (Smartlead email accounts) and their health, in the backend's own table.

The hosted `profiles` row keeps one mailbox id (`smartlead_email_account_id`, which the web app
reads); an SDR may send from several, so they live here, in order, the first one always the
profile's. Each row says whether the mailbox may send, by the rule in `health_problem`:

- healthy: the last health read found SMTP and IMAP working, the mailbox not suspended and its
  warmup reputation at or above SMARTLEAD_MIN_WARMUP_REPUTATION (when set). It is attached to
  the SDR's campaigns and sends.
- unchecked: never read (chosen the older single-mailbox way). It sends, like a key not asked
  about yet.
- unhealthy: the last reading says otherwise, or the key no longer sees it. It is detached from
  the SDR's campaigns and its leads moved to a healthy one (sequences/mailboxes.py).
- failed: Smartlead reported it failing (a disconnect notification, a bounce the mailbox
  caused). The same, until a health read shows it healthy again.
An SDR none of whose mailboxes is healthy or unchecked is held (`no_healthy_mailbox`).

Health reads (`release=True`: connecting, choosing mailboxes, verifying, the hourly reconcile
pass) set each row from what Smartlead says and clear a recorded failure once the mailbox reads
healthy. A key check (the web app's GET of its connection, the admin's email-account page) may
only find a mailbox worse: it never makes one healthy. Nothing here imports the profile model
(profiles/models.py imports this).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime

from django.conf import settings
from django.db import models, transaction

from smartlead.api import EmailAccount

GONE = "not in this Smartlead account any more"


def health_problem(account: EmailAccount | None) -> str:
    """Why this mailbox may not send, in words; empty when it may."""
    if account is None:
        return GONE
    problems = []
    if not account.smtp_ok:
        problems.append("SMTP failing" + (f" ({account.smtp_error})" if account.smtp_error else ""))
    if not account.imap_ok:
        problems.append("IMAP failing" + (f" ({account.imap_error})" if account.imap_error else ""))
    if account.suspended:
        problems.append("suspended")
    floor = settings.SMARTLEAD_MIN_WARMUP_REPUTATION
    reputation = account.warmup_reputation
    # No warmup data says nothing against the mailbox: only a reading below the floor counts.
    if floor is not None and reputation is not None and not reputation >= floor:
        problems.append(f"warmup reputation {reputation:g}% is below {floor:g}%")
    return "; ".join(problems)


class SdrMailboxQuerySet(models.QuerySet["SdrMailbox"]):
    def replace(self, profile_id: uuid.UUID, mailbox_ids: Sequence[int]) -> None:
        """The SDR's mailboxes become these, in this order. A mailbox kept keeps what is known
        of it (a failure recorded stays: choosing a broken mailbox again does not mend it)."""
        with transaction.atomic():
            self.filter(profile_id=profile_id).exclude(mailbox_id__in=mailbox_ids).delete()
            known = set(self.filter(profile_id=profile_id).values_list("mailbox_id", flat=True))
            for position, mailbox_id in enumerate(mailbox_ids):
                if mailbox_id in known:
                    self.filter(profile_id=profile_id, mailbox_id=mailbox_id).update(
                        position=position
                    )
                else:
                    self.create(profile_id=profile_id, mailbox_id=mailbox_id, position=position)

    def record_health(
        self,
        profile_id: uuid.UUID,
        accounts: Iterable[EmailAccount],
        *,
        release: bool,
        now: datetime,
    ) -> None:
        """What Smartlead's list of the key's mailboxes says about each of the SDR's. Only a
        health read (`release`) makes a mailbox healthy or clears a failure recorded on it."""
        by_id = {account.id: account for account in accounts}
        for row in self.filter(profile_id=profile_id):
            account = by_id.get(row.mailbox_id)
            problem = health_problem(account)
            if release or problem:
                row.read(account, problem, now, release=release)

    def record_failure(
        self, profile_id: uuid.UUID, mailbox_id: int, detail: str, now: datetime
    ) -> bool:
        """Smartlead said this mailbox failed: it stops sending until a health read shows it
        healthy. False when it is not one of the SDR's (in this table)."""
        return bool(
            self.filter(profile_id=profile_id, mailbox_id=mailbox_id).update(
                failure=detail[:1000], failure_at=now, healthy=False
            )
        )


class SdrMailbox(models.Model):
    """One of an SDR's mailboxes and its health. Project-owned; no database foreign key to the
    hosted `profiles` (a Supabase user deletion must never be blocked by it)."""

    profile = models.ForeignKey(
        "profiles.Profile",
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="mailboxes",
    )
    mailbox_id = models.BigIntegerField(help_text="The Smartlead email account id.")
    position = models.PositiveSmallIntegerField(
        default=0, help_text="0 is the profile's own smartlead_email_account_id."
    )
    address = models.TextField(blank=True)
    from_name = models.TextField(blank=True)
    smtp_ok = models.BooleanField(null=True)
    imap_ok = models.BooleanField(null=True)
    suspended = models.BooleanField(default=False)
    warmup_reputation = models.FloatField(null=True, blank=True)
    problem = models.TextField(blank=True, help_text="Why the last reading says it may not send.")
    read_at = models.DateTimeField(null=True, blank=True, help_text="The last health read.")
    failure = models.TextField(
        blank=True,
        help_text="Smartlead reported it failing; kept until a health read shows it healthy.",
    )
    failure_at = models.DateTimeField(null=True, blank=True)
    healthy = models.BooleanField(default=True, help_text="It may send: no problem, no failure.")

    objects = SdrMailboxQuerySet.as_manager()

    class Meta:
        db_table = "outboundhq_sdr_mailbox"
        ordering = ["profile_id", "position"]
        constraints = [
            models.UniqueConstraint(fields=["profile", "mailbox_id"], name="sdr_mailbox_once")
        ]

    def __str__(self) -> str:
        return f"{self.address or self.mailbox_id} ({self.state})"

    def read(
        self, account: EmailAccount | None, problem: str, now: datetime, *, release: bool
    ) -> None:
        """One reading of this mailbox, saved (see SdrMailboxQuerySet.record_health)."""
        if account is not None:
            self.address, self.from_name = account.from_email, account.from_name
            self.smtp_ok, self.imap_ok = account.smtp_ok, account.imap_ok
            self.suspended, self.warmup_reputation = account.suspended, account.warmup_reputation
        self.problem = problem[:1000]
        if release:
            self.read_at = now
            if not problem:
                self.failure, self.failure_at = "", None
        self.healthy = not self.problem and not self.failure
        self.save()

    @property
    def state(self) -> str:
        """healthy, unchecked, unhealthy or failed (the module's table says what each does)."""
        if self.failure:
            return "failed"
        if self.problem:
            return "unhealthy"
        return "healthy" if self.read_at else "unchecked"

    @property
    def why_not(self) -> str:
        """Why it may not send, in words; empty when it may."""
        return "; ".join(filter(None, (self.failure, self.problem)))

    def describe(self) -> str:
        """E.g. `sam@acme.test: SMTP failing (535 …)`, for ops and the SDR."""
        name = self.address or f"email account {self.mailbox_id}"
        return f"{name}: {self.why_not or self.state}"
