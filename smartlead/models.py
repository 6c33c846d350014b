"""The backend's own log of Smartlead webhook deliveries (project-owned, Django-managed).

One row per distinct event: a re-delivery of the same event only bumps `deliveries`, so the
row count is the number of events and each is applied at most once.
"""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import connection, models
from django.utils import timezone

from sequences.records import SharedOutRun


class Outcome(models.TextChoices):
    RECEIVED = "received", "Received (not applied yet)"
    APPLIED = "applied", "Applied"
    UNMATCHED = "unmatched", "Unmatched"
    IGNORED = "ignored", "Ignored"
    FAILED = "failed", "Failed"
    REJECTED = "rejected", "Rejected"


# Outcomes that applying again can change. Never `applied`: that would count an event twice.
REPROCESSABLE = (Outcome.RECEIVED, Outcome.FAILED, Outcome.UNMATCHED)
# What a payload says the event is (smartlead.webhooks.Identity), as columns.
IDENTITY_FIELDS = (
    "event_type",
    "campaign_id",
    "lead_email",
    "sequence_number",
    "stats_id",
    "event_time",
)
# What applying reads of an event: not the bookkeeping columns.
APPLY_FIELDS = (*IDENTITY_FIELDS, "raw_body", "outcome")
# A caller (a campaign's token, or the legacy secret) keeps at most this many rejected deliveries:
# its newest ones. Enough to diagnose what it sends; a flood cannot fill the table.
REJECTED_KEPT_PER_SOURCE = 100
# A `received` row older than this was stored but its apply was interrupted (a worker died).
STUCK_AFTER = timedelta(minutes=1)


@dataclass(frozen=True)
class Stored:
    """What `store()` did: the row's id, whether it is new, and its outcome so far."""

    id: int
    created: bool
    outcome: str
    deliveries: int


class WebhookEventQuerySet(models.QuerySet["WebhookEvent"]):
    def store(self, **fields: Any) -> Stored:
        """Insert one event, or count one more delivery of it: a single statement, race-free.

        `INSERT … ON CONFLICT (dedupe_key) DO UPDATE … RETURNING` either inserts the row
        (deliveries = 1) or, when the key exists, increments its counter under the row lock, so
        two simultaneous deliveries of one event can never both look new. The ORM has no
        increment-on-conflict, hence the raw SQL (built from the model's own field metadata).
        """
        fields.setdefault("received_at", timezone.now())
        fields.setdefault("last_received_at", fields["received_at"])
        sql, columns = _upsert_statement()
        values = []
        for column in columns:
            value = fields[column.name] if column.name in fields else column.get_default()
            # Text and numbers go as they are; times and JSON need the backend's adaptation.
            if isinstance(column, models.DateTimeField | models.JSONField):
                value = column.get_db_prep_save(value, connection)
            values.append(value)
        with connection.cursor() as cursor:
            cursor.execute(sql, values)
            pk, deliveries, outcome = cursor.fetchone()
        return Stored(id=pk, created=deliveries == 1, outcome=outcome, deliveries=deliveries)

    def prune(self, source: str, *, outcome: str, keep: int) -> int:
        """Forget all but the newest `keep` deliveries of one source with this outcome (rejected
        or ignored: kept to be seen, never applied); how many went."""
        rows = self.filter(outcome=outcome, source=source).order_by("-id")
        oldest_kept = rows.values_list("id", flat=True)[keep - 1 : keep]
        if len(oldest_kept) < 1:
            return 0
        deleted, _ = rows.filter(id__lt=oldest_kept[0]).delete()
        return deleted

    def pending(self) -> WebhookEventQuerySet:
        return self.filter(outcome=Outcome.RECEIVED)

    def reprocessable(
        self, *, failed: bool = True, unmatched: bool = False, stuck: bool = True
    ) -> WebhookEventQuerySet:
        """Events worth applying again: failed ones, optionally unmatched ones, and stuck ones."""
        conditions = []
        if failed:
            conditions.append(models.Q(outcome=Outcome.FAILED))
        if unmatched:
            conditions.append(models.Q(outcome=Outcome.UNMATCHED))
        if stuck:
            stuck_before = timezone.now() - STUCK_AFTER
            conditions.append(models.Q(outcome=Outcome.RECEIVED, received_at__lt=stuck_before))
        if not conditions:
            return self.none()
        return self.filter(functools.reduce(operator.or_, conditions))

    def peek(self, *, after: int = 0, limit: int = 100) -> list[WebhookEvent]:
        """Up to `limit` of these events whose outcome can still change, oldest first, unlocked."""
        return list(self._next(after).only(*APPLY_FIELDS)[:limit])

    def claim(self, *, after: int = 0, limit: int = 100) -> list[WebhookEvent]:
        """Lock up to `limit` of these events, oldest first, skipping any another process holds.

        Must run inside a transaction: the locks are what make apply exactly-once, and they
        last until it commits. Only outcomes that can still change are ever claimed.
        """
        return list(
            self._next(after).only(*APPLY_FIELDS).select_for_update(skip_locked=True)[:limit]
        )

    def lock(self, peeked: list[WebhookEvent]) -> list[WebhookEvent]:
        """`claim()` for events already read by `peek()`: those of them nobody else holds and
        still pending, locked the same way; their (immutable) contents are not read again."""
        ids = [e.pk for e in peeked]
        locked = set(
            self.filter(pk__in=ids)
            ._next(0)
            .select_for_update(skip_locked=True)
            .values_list("pk", flat=True)
        )
        return [e for e in peeked if e.pk in locked]

    def _next(self, after: int) -> WebhookEventQuerySet:
        return self.filter(pk__gt=after, outcome__in=REPROCESSABLE).order_by("pk")


@functools.cache
def _upsert_statement() -> tuple[str, list[models.Field]]:
    """`store()`'s SQL, built once. Every column is sent: Django's defaults live in Python."""
    meta = WebhookEvent._meta
    columns = [f for f in meta.concrete_fields if not f.primary_key]
    # Identifiers come from the model's metadata, quoted; every value is a parameter.
    q = connection.ops.quote_name
    table = q(meta.db_table)
    names = ", ".join(q(f.column) for f in columns)
    placeholders = ", ".join(["%s"] * len(columns))
    counter, last = q("deliveries"), q("last_received_at")
    sql = (
        f"INSERT INTO {table} ({names}) VALUES ({placeholders}) "  # noqa: S608
        f"ON CONFLICT ({q('dedupe_key')}) DO UPDATE SET {counter} = {table}.{counter} + 1, "
        f"{last} = EXCLUDED.{last} RETURNING {q('id')}, {counter}, {q('outcome')}"
    )
    return sql, columns


class WebhookEvent(models.Model):
    received_at = models.DateTimeField(
        default=timezone.now, help_text="When the first delivery of this event arrived."
    )
    last_received_at = models.DateTimeField(
        default=timezone.now, help_text="When the latest delivery (a duplicate or the first)."
    )
    deliveries = models.PositiveIntegerField(
        default=1, help_text="How many times Smartlead delivered this event; 2+ are duplicates."
    )
    dedupe_key = models.CharField(
        max_length=255,
        unique=True,
        help_text=(
            "stats:<campaign_id>:<stats_id>:<event_type>, lead: (a hash of type, campaign, "
            "lead) for an unsubscribe, or hash: of type, campaign, lead, step, time."
        ),
    )
    event_type = models.CharField(
        max_length=64, blank=True, help_text="Smartlead's event_type, e.g. EMAIL_REPLY."
    )
    campaign_id = models.BigIntegerField(
        null=True, blank=True, help_text="Smartlead campaign id (a sequence's campaign)."
    )
    lead_email = models.CharField(
        max_length=320, blank=True, help_text="The lead's address from the payload, lowercased."
    )
    sequence_number = models.IntegerField(
        null=True, blank=True, help_text="Which email step of the campaign (1-based)."
    )
    stats_id = models.CharField(
        max_length=128, blank=True, help_text="Smartlead's id of the email the event is about."
    )
    event_time = models.DateTimeField(
        null=True, blank=True, help_text="When it happened, per Smartlead (event_timestamp)."
    )
    outcome = models.CharField(
        max_length=16,
        choices=Outcome.choices,
        default=Outcome.RECEIVED,
        help_text="What applying the event did.",
    )
    detail = models.TextField(
        blank=True, help_text="Why it is unmatched, ignored or rejected; the error if it failed."
    )
    attempts = models.PositiveIntegerField(
        default=0, help_text="How many times applying it was tried."
    )
    processed_at = models.DateTimeField(
        null=True, blank=True, help_text="When the outcome was last decided."
    )
    headers = models.JSONField(
        default=dict, blank=True, help_text="The request headers that matter (never a secret)."
    )
    source = models.CharField(
        max_length=40,
        blank=True,
        # The previous version, still answering during a deploy, stores rows without it.
        db_default="",
        help_text="What the URL authenticated with: token:<campaign id>, or secret (the legacy "
        "global secret; none of these left means it can be turned off).",
    )
    raw_body = models.TextField(
        blank=True,
        help_text="The body as received, secrets replaced by [redacted]; rejected ones clipped.",
    )

    objects = WebhookEventQuerySet.as_manager()

    class Meta:
        db_table = "smartlead_webhook_event"
        ordering = ["-id"]
        indexes = [
            # The admin's filters, newest first; (outcome, id) also finds pending work.
            models.Index(fields=["outcome", "id"], name="webhook_event_outcome_idx"),
            models.Index(fields=["event_type", "id"], name="webhook_event_type_idx"),
            models.Index(fields=["campaign_id", "id"], name="webhook_event_campaign_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type or 'event'} #{self.pk} ({self.outcome})"


class ReconcileRun(SharedOutRun):
    """One reconcile pass (smartlead/reconcile.py): what Smartlead knew that the app had missed."""

    trigger = models.CharField(max_length=16)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    campaigns = models.PositiveIntegerField(default=0, help_text="Campaigns read.")
    smartlead_requests = models.PositiveIntegerField(
        default=0, help_text="HTTP requests sent to Smartlead, every page and retry counted."
    )
    repaired = models.JSONField(
        default=dict,
        blank=True,
        help_text="Events found and applied that no webhook brought, by type.",
    )
    completed = models.PositiveIntegerField(
        default=0, help_text="Enrollments completed because Smartlead finished their emails."
    )
    errors = models.JSONField(default=list, blank=True)
    # db_default: a version still running during a deploy inserts rows without these.
    deadline = models.DateTimeField(null=True, blank=True, help_text="No SDR is started after.")
    scope = models.JSONField(
        default=dict, blank=True, db_default={}, help_text="--user / --sequence / --since."
    )

    class Meta:
        db_table = "smartlead_reconcile_run"
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"reconcile {self.started_at:%Y-%m-%d %H:%M} ({self.trigger})"


class RequestBudget(models.Model):
    """One Smartlead key's recent requests, shared by every process (smartlead/budget.py writes
    it in SQL; PostgreSQL only, created by migration 0009). `key` is a SHA-256 of the API key."""

    key = models.CharField(primary_key=True, max_length=64)
    used_at = models.DateTimeField()
    paused_until = models.FloatField(help_text="Seconds since the epoch, on the database's clock.")

    class Meta:
        managed = False
        db_table = "outboundhq_request_budget"

    def __str__(self) -> str:
        return f"budget …{self.key[-8:]}"


class AccountCategory(models.Model):
    """One lead category of an SDR's Smartlead account (`GET /leads/fetch-categories`), cached:
    the ids are the account's, so an id alone (the campaign lead list's `lead_category_id`) is
    read by its name here (smartlead/categories.py)."""

    profile_id = models.UUIDField(help_text="The SDR whose account it is.")
    category_id = models.BigIntegerField()
    name = models.CharField(max_length=200)
    sentiment = models.CharField(max_length=16, blank=True)
    fetched_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "smartlead_account_category"
        constraints = [
            models.UniqueConstraint(
                fields=["profile_id", "category_id"], name="smartlead_account_category_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.category_id}: {self.name}"


class LeadCategory(models.Model):
    """The Smartlead category last applied to an enrollment (webhook or reconcile pass), and
    the one call task a positive category created for it, whatever arrives after."""

    enrollment_id = models.UUIDField(primary_key=True)
    name = models.CharField(max_length=200)
    category_id = models.BigIntegerField(null=True, blank=True)
    call_id = models.UUIDField(
        null=True, blank=True, help_text="The call task an Interested/Meeting Request made."
    )
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "smartlead_lead_category"

    def __str__(self) -> str:
        return f"{self.enrollment_id}: {self.name}"
