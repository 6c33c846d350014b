"""Smartlead webhook events: a payload's identity (pure parsing) and applying events to our rows.

What Smartlead sends is described in ../shared/docs/smartlead-api.md §6: a flat JSON object keyed
by `event_type`, field names that changed over time (read the new one, fall back to the old),
numbers that are sometimes strings, no event id, duplicates and retries. The nested shape of the
older docs (`event`, `timestamp`, `lead{}`, `email{}`) is tolerated as a fallback.
"""

from __future__ import annotations

import atexit
import hashlib
import hmac
import json
import logging
import os
import sys
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.db.models import Case, DateTimeField, F, Value, When
from django.db.models.functions import Coalesce, Lower
from django.db.models.lookups import Exact
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from outboundhq.db import once_more_if_disconnected
from sequences.models import (
    Contact,
    Engagement,
    EngagementType,
    Enrollment,
    EnrollmentStatus,
    Sequence,
)
from smartlead.models import IDENTITY_FIELDS, Outcome, WebhookEvent, WebhookEventQuerySet

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
_BIGINT = 2**63
_INT = 2**31

# Older doc pages used other names for the same events; store and act on the backend constant.
EVENT_ALIASES = {
    "EMAIL_OPENED": "EMAIL_OPEN",
    "EMAIL_CLICKED": "EMAIL_LINK_CLICK",
    "EMAIL_REPLIED": "EMAIL_REPLY",
    "EMAIL_BOUNCED": "EMAIL_BOUNCE",
    "EMAIL_UNSUBSCRIBED": "LEAD_UNSUBSCRIBED",
    "LEAD_OPENED": "EMAIL_OPEN",
    "LEAD_CLICKED": "EMAIL_LINK_CLICK",
    "LEAD_REPLIED": "EMAIL_REPLY",
    "LEAD_BOUNCED": "EMAIL_BOUNCE",
}
# `sl_lead_email` is the address we enrolled; `to_email` may be an alias of the lead.
EMAIL_FIELDS = (
    "sl_lead_email",
    "lead_email",
    "leadCorrespondence.targetLeadEmail",
    "lead_data.email",
    "to_email",
    "lead.email",
    "to",
)
CAMPAIGN_FIELDS = ("campaign_id", "email_campaign_id", "campaign.id")
SEQUENCE_FIELDS = ("sequence_number", "seq_number", "email.sequence_number")
TIME_FIELDS = (
    "event_timestamp",
    "time_replied",
    "time_sent",
    "time_opened",
    "time_clicked",
    "time_bounced",
    "timestamp",
    "created_at",
)


class Rejected(Exception):
    """A delivery we answer with a 4xx: `status` and a message naming the problem."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# --- Parsing (pure) --------------------------------------------------------------------------


def clean(value: str, limit: int) -> str:
    """Text Postgres can store: no NUL, no lone surrogates (both possible in JSON), clipped."""
    value = value[:limit].replace("\x00", "\ufffd")
    return value.encode("utf-8", "replace").decode("utf-8")


def decode(body: bytes) -> str:
    """The raw body as text; undecodable bytes become U+FFFD rather than losing the body."""
    return body.decode("utf-8", "replace").replace("\x00", "\ufffd")


def signature_matches(body: bytes, header: str, secret: str) -> bool:
    """`X-Smartlead-Signature: sha256=<hex HMAC-SHA256 of the raw body>` (bare hex tolerated)."""
    scheme, _, digest = header.strip().rpartition("=")
    if scheme and scheme.lower() != "sha256":
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), digest.strip().lower().encode("utf-8", "replace"))


def check_content_type(content_type: str) -> None:
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        shown = clean(media_type, 100) or "missing"
        raise Rejected(415, f"Content-Type must be application/json (got {shown}).")


def parse_payload(text: str) -> dict[str, Any]:
    try:
        payload = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise Rejected(400, f"The body is not valid JSON ({clean(str(exc), 200)}).") from None
    if not isinstance(payload, dict):
        raise Rejected(400, f"The body is JSON but not an object (it is {_json_kind(payload)}).")
    return payload


def _json_kind(value: object) -> str:
    kinds = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return kinds.get(type(value), "a number")


@dataclass(frozen=True)
class Identity:
    """What a delivery is about, and the key that makes its re-deliveries duplicates."""

    event_type: str
    campaign_id: int | None
    lead_email: str
    sequence_number: int | None
    stats_id: str
    event_time: datetime | None
    dedupe_key: str

    def fields(self) -> dict[str, Any]:
        """As WebhookEvent columns (the names are the same)."""
        return {name: getattr(self, name) for name in (*IDENTITY_FIELDS, "dedupe_key")}


def identify(payload: dict[str, Any], raw: str) -> Identity:
    """The identity of a parsed payload; Rejected(400) when it has no event type."""
    event_type = _event_type(payload)
    campaign_id = _as_int(_first(payload, CAMPAIGN_FIELDS), bound=_BIGINT)
    lead_email = clean(_text(payload, EMAIL_FIELDS).lower(), 320)
    sequence_number = _as_int(_first(payload, SEQUENCE_FIELDS), bound=_INT)
    stats = payload.get("stats_id")
    usable = isinstance(stats, str | int) and not isinstance(stats, bool)
    stats_id = clean(str(stats).strip(), 128) if usable else ""
    raw_time = _first(payload, TIME_FIELDS)
    event_time = _as_time(raw_time)
    if stats_id:
        key = f"stats:{stats_id}:{event_type}"
    else:
        # No stats_id: hash what identifies the event. Without any time either, the body
        # itself is part of the hash, so two different time-less events never collapse.
        when = event_time.isoformat() if event_time else clean(str(raw_time or ""), 64)
        parts = [event_type, str(campaign_id or ""), lead_email, str(sequence_number or "")]
        parts.append(when or "body:" + hashlib.sha256(raw.encode()).hexdigest())
        key = "hash:" + hashlib.sha256("|".join(parts).encode()).hexdigest()
    return Identity(event_type, campaign_id, lead_email, sequence_number, stats_id, event_time, key)


def _event_type(payload: dict[str, Any]) -> str:
    value = payload.get("event_type", payload.get("event"))
    if value is None:
        raise Rejected(400, "The JSON object has no event_type.")
    if not isinstance(value, str) or not value.strip():
        raise Rejected(400, "event_type must be a non-empty string.")
    name = clean(value.strip().upper(), 64)
    return EVENT_ALIASES.get(name, name)


def _dig(payload: dict[str, Any], path: str) -> Any:
    value: Any = payload
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _first(payload: dict[str, Any], paths: tuple[str, ...]) -> Any:
    for path in paths:
        value = _dig(payload, path)
        if value not in (None, ""):
            return value
    return None


def _text(payload: dict[str, Any], paths: tuple[str, ...], limit: int = 1000) -> str:
    for path in paths:
        value = _dig(payload, path)
        if isinstance(value, str) and value.strip():
            return clean(value.strip(), limit)
    return ""


def _as_int(value: Any, *, bound: int) -> int | None:
    """An integer from an int, an integral float or a string of digits; None if out of range."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        value = int(value) if value.is_integer() else None
    elif isinstance(value, str):
        text = value.strip()
        if not 0 < len(text) <= 20 or not text.lstrip("-").isdecimal():
            return None
        value = int(text)
    if isinstance(value, int) and -bound <= value < bound:
        return value
    return None


def _as_time(value: Any) -> datetime | None:
    """ISO-8601 (with or without offset; naive means UTC) or epoch seconds/milliseconds."""
    parsed: datetime | None = None
    try:
        if isinstance(value, str):
            parsed = parse_datetime(value.strip()[:64])
            if parsed is None and (epoch := _as_int(value, bound=_BIGINT)) is not None:
                parsed = _from_epoch(epoch)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            parsed = _from_epoch(value)
    except (ValueError, OverflowError, OSError):
        return None
    if parsed is None or not 1 < parsed.year < 9999:
        return None
    return parsed if timezone.is_aware(parsed) else parsed.replace(tzinfo=UTC)


def _from_epoch(value: float) -> datetime:
    return datetime.fromtimestamp(value / 1000 if value > 1e11 else value, UTC)


# --- What each event does ----------------------------------------------------------------


@dataclass(frozen=True)
class Action:
    engagement: EngagementType
    score: int = 0
    status: EnrollmentStatus | None = None
    unsubscribe: bool = False


ACTIONS = {
    "EMAIL_SENT": Action(EngagementType.EMAIL_SENT),
    "FIRST_EMAIL_SENT": Action(EngagementType.EMAIL_SENT),
    "EMAIL_OPEN": Action(EngagementType.EMAIL_OPENED, score=10),
    "EMAIL_LINK_CLICK": Action(EngagementType.EMAIL_CLICKED, score=15),
    "EMAIL_REPLY": Action(EngagementType.EMAIL_REPLIED, score=50, status=EnrollmentStatus.REPLIED),
    "EMAIL_BOUNCE": Action(EngagementType.EMAIL_BOUNCED, status=EnrollmentStatus.BOUNCED),
    "LEAD_UNSUBSCRIBED": Action(
        EngagementType.EMAIL_UNSUBSCRIBED, status=EnrollmentStatus.UNSUBSCRIBED, unsubscribe=True
    ),
    "LEAD_CATEGORY_UPDATED": Action(EngagementType.LEAD_CATEGORY_UPDATED),
}
# An event only moves an enrollment up this ladder, never down: a late bounce does not undo a
# reply, nothing undoes an unsubscribe. Being order-free also lets a batch apply in any order.
STATUS_RANK = {
    EnrollmentStatus.BOUNCED: 1,
    EnrollmentStatus.REPLIED: 2,
    EnrollmentStatus.UNSUBSCRIBED: 3,
}


def metadata(event: WebhookEvent, payload: dict[str, Any]) -> dict[str, Any]:
    """The engagement's metadata: every Smartlead id we have, plus what the event is about."""
    reply = event.event_type == "EMAIL_REPLY"
    data: dict[str, Any] = {
        "source": "smartlead_webhook",
        "webhook_event_id": event.pk,
        "event_type": event.event_type,
        "campaign_id": event.campaign_id,
        "sequence_number": event.sequence_number,
        "stats_id": event.stats_id,
        "stats_thread_id": _text(payload, ("stats_thread_id",)),
        "sl_email_lead_id": _id(payload, "sl_email_lead_id", "lead_id"),
        "sl_email_lead_map_id": _id(payload, "sl_email_lead_map_id"),
        "subject": _text(payload, ("subject", "custom_subject", "email.subject")),
        # In a reply's legacy shape `message_id` is the reply's id, not the sent email's.
        "message_id": _text(
            payload,
            ("sent_message.message_id", "email.message_id") + (() if reply else ("message_id",)),
        ),
    }
    data |= EXTRA_METADATA.get(event.event_type, lambda _: {})(payload)
    return {k: v for k, v in data.items() if v not in (None, "", [])}


def _id(payload: dict[str, Any], *paths: str) -> int | None:
    return _as_int(_first(payload, paths), bound=_BIGINT)


def _reply_metadata(payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "reply_message_id": _text(payload, ("reply_message.message_id", "message_id")),
        "reply_preview": _text(
            payload, ("reply_message.text", "preview_text", "reply.body"), limit=500
        ),
        "replied_from": _text(payload, ("leadCorrespondence.replyReceivedFrom", "to_email")),
    }


def _bounce_metadata(payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "bounce_message_id": _text(
            payload, ("bounce_message.message_id", "bounce_reply_message_id")
        ),
        "bounce_preview": _text(
            payload, ("bounce_message.text", "bounce_reply_email_preview"), limit=500
        ),
    }


def _click_metadata(payload: dict[str, Any]) -> dict[str, Any]:
    links = payload.get("link_clicked")
    links = [links] if isinstance(links, str) else links if isinstance(links, list) else []
    return {"link_clicked": [clean(link, 2000) for link in links[:20] if isinstance(link, str)]}


def _category_metadata(payload: dict[str, Any]) -> dict[str, Any]:
    category = payload.get("lead_category")
    legacy = payload.get("category")
    if not isinstance(category, dict):
        category = {
            "new_name": legacy.get("name") if isinstance(legacy, dict) else legacy,
            "new_id": payload.get("lead_category_id"),
        }
    return {
        "old_category_id": _id(category, "old_id"),
        "old_category": _text(category, ("old_name",)),
        "new_category_id": _id(category, "new_id"),
        "new_category": _text(category, ("new_name",)),
    }


EXTRA_METADATA = {
    "EMAIL_REPLY": _reply_metadata,
    "EMAIL_BOUNCE": _bounce_metadata,
    "EMAIL_LINK_CLICK": _click_metadata,
    "LEAD_CATEGORY_UPDATED": _category_metadata,
}


# --- Applying ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    sequence_id: UUID
    contact_id: UUID
    enrollment_id: UUID | None


@dataclass
class Changes:
    """Row changes of a batch of events, written as a few set-based statements."""

    engagements: list[Engagement] = field(default_factory=list)
    scores: Counter[UUID] = field(default_factory=Counter)
    statuses: dict[UUID, EnrollmentStatus] = field(default_factory=dict)
    unsubscribes: dict[str, datetime] = field(default_factory=dict)

    def add(self, event: WebhookEvent, action: Action, target: Target, now: datetime) -> None:
        payload = json.loads(event.raw_body)
        self.engagements.append(
            Engagement(
                contact_id=target.contact_id,
                sequence_id=target.sequence_id,
                enrollment_id=target.enrollment_id,
                engagement_type=action.engagement,
                metadata=metadata(event, payload),
                engaged_at=event.event_time or now,
            )
        )
        if action.score:
            self.scores[target.contact_id] += action.score
        if action.status and target.enrollment_id:
            current = self.statuses.get(target.enrollment_id)
            if current is None or STATUS_RANK[action.status] > STATUS_RANK[current]:
                self.statuses[target.enrollment_id] = action.status
        if action.unsubscribe:
            when = event.event_time or now
            earliest = self.unsubscribes.get(event.lead_email, when)
            self.unsubscribes[event.lead_email] = min(when, earliest)

    def write(self, now: datetime) -> None:
        Engagement.objects.bulk_create(self.engagements)
        # One UPDATE per distinct increment (a handful: sums of 10, 15 and 50), not one CASE
        # with a branch per contact, which cost more Python to build than the rest of a batch.
        # Those statements would lock the contacts in no particular order, so they are locked
        # first, in id order: two batches at once (a reprocess beside the applier) queue
        # instead of deadlocking. Contacts are always locked before enrollments.
        by_points: defaultdict[int, list[UUID]] = defaultdict(list)
        for pk, points in sorted(self.scores.items()):
            by_points[points].append(pk)
        if len(by_points) > 1:
            locked = Contact.objects.filter(pk__in=sorted(self.scores)).order_by("pk")
            list(locked.select_for_update().values_list("pk", flat=True))
        for points, ids in sorted(by_points.items()):
            Contact.objects.filter(pk__in=ids).update(
                engagement_score=Coalesce(F("engagement_score"), Value(0)) + points
            )
        if self.unsubscribes:
            # Every row of those addresses: duplicates of a contact are the same person.
            same_people = _contacts_by_email(sorted(self.unsubscribes)).values("pk")
            at_their_time = Case(
                *(When(Exact(EMAIL, e), then=Value(t)) for e, t in self.unsubscribes.items()),
                output_field=DateTimeField(),
            )
            Contact.objects.filter(pk__in=same_people, unsubscribed_at__isnull=True).update(
                unsubscribed_at=at_their_time
            )
        for status, rank in STATUS_RANK.items():
            ids = sorted(pk for pk, wanted in self.statuses.items() if wanted == status)
            at_least = [s for s, r in STATUS_RANK.items() if r >= rank]
            if ids:
                Enrollment.objects.filter(pk__in=ids).exclude(status__in=at_least).update(
                    status=status, updated_at=now
                )


# How a contact's address is compared: case-insensitively, as contacts_lower_email_idx in
# migrations/PROPOSED_INDEXES.sql indexes it (an expression must match an index exactly).
EMAIL = Lower("email")


def _contacts_by_email(emails: list[str]) -> Any:
    return Contact.objects.annotate(_email=EMAIL).filter(_email__in=emails)


def resolve(keys: set[tuple[str, str]]) -> dict[tuple[str, str], Target | str]:
    """(campaign id, lead email) → the enrollment, else the contact, else why not.

    One query through the hosted indexes (sequences.smartlead_campaign_id, enrollments by
    sequence) finds enrolled leads; contacts may be duplicated, so an enrolled one is preferred,
    and the most recent enrollment. Only keys left over cost two more queries.
    """
    found: dict[tuple[str, str], Target | str] = {}
    enrolled = (
        Enrollment.objects.annotate(
            _campaign=F("sequence__smartlead_campaign_id"), _email=Lower("contact__email")
        )
        .filter(_campaign__in={c for c, _ in keys}, _email__in={e for _, e in keys})
        .order_by(F("enrolled_at").desc(nulls_last=True))
        .values_list("_campaign", "_email", "sequence_id", "contact_id", "id")
    )
    for campaign, email, sequence_id, contact_id, enrollment_id in enrolled:
        if (campaign, email) in keys:
            found.setdefault((campaign, email), Target(sequence_id, contact_id, enrollment_id))
    missing = keys - found.keys()
    if missing:
        found |= _resolve_unenrolled(missing)
    return found


def _resolve_unenrolled(keys: set[tuple[str, str]]) -> dict[tuple[str, str], Target | str]:
    # Should two sequences share a campaign, the newest wins (later rows overwrite).
    sequences = dict(
        Sequence.objects.filter(smartlead_campaign_id__in={c for c, _ in keys})
        .order_by(F("created_at").asc(nulls_first=True))
        .values_list("smartlead_campaign_id", "id")
    )
    contacts: dict[str, UUID] = {}
    wanted = [e for c, e in keys if c in sequences]
    for email, pk in _contacts_by_email(wanted).order_by("created_at").values_list("_email", "pk"):
        contacts.setdefault(email, pk)
    result: dict[tuple[str, str], Target | str] = {}
    for campaign, email in keys:
        if campaign not in sequences:
            result[campaign, email] = f"No sequence has smartlead_campaign_id {campaign}."
        elif email not in contacts:
            result[campaign, email] = f"No contact has the email {email}."
        else:
            result[campaign, email] = Target(sequences[campaign], contacts[email], None)
    return result


NOT_ENROLLED = "The contact is not enrolled in the sequence; no enrollment status changed."


def targets_for(events: list[WebhookEvent]) -> dict[tuple[str, str], Target | str]:
    """Where the events that are acted on land: see `resolve()`."""
    keys = {
        (str(e.campaign_id), e.lead_email)
        for e in events
        if e.event_type in ACTIONS and e.campaign_id is not None and e.lead_email
    }
    return resolve(keys) if keys else {}


def apply_events(
    events: list[WebhookEvent], targets: dict[tuple[str, str], Target | str] | None = None
) -> Counter[str]:
    """Apply claimed (locked) events inside the caller's transaction: all of it, or nothing.

    1. Events we don't act on are ignored; events without campaign or lead are unmatched.
    2. The rest resolve to enrollments (or bare contacts) in one query (three if some don't),
       unless the caller resolved them already (`targets`).
    3. Their engagements, scores, statuses and unsubscribes are written set-based.
    4. Outcomes are recorded with one UPDATE per distinct (outcome, detail).
    """
    now = timezone.now()
    outcomes: defaultdict[tuple[str, str], list[int]] = defaultdict(list)
    work: list[tuple[WebhookEvent, Action]] = []
    for event in events:
        action = ACTIONS.get(event.event_type)
        if action is None:
            outcomes[Outcome.IGNORED, f"{event.event_type} is not applied."].append(event.pk)
        elif event.campaign_id is None or not event.lead_email:
            missing = "campaign_id" if event.campaign_id is None else "lead email"
            outcomes[Outcome.UNMATCHED, f"The payload has no {missing}."].append(event.pk)
        else:
            work.append((event, action))
    if targets is None:
        targets = targets_for([e for e, _ in work])
    changes = Changes()
    for event, action in work:
        target = targets[str(event.campaign_id), event.lead_email]
        if isinstance(target, str):
            outcomes[Outcome.UNMATCHED, target].append(event.pk)
            continue
        changes.add(event, action, target, now)
        outcomes[Outcome.APPLIED, "" if target.enrollment_id else NOT_ENROLLED].append(event.pk)
    changes.write(now)
    counts: Counter[str] = Counter()
    for (outcome, detail), ids in outcomes.items():
        WebhookEvent.objects.filter(pk__in=ids).update(
            outcome=outcome, detail=detail, processed_at=now, attempts=F("attempts") + 1
        )
        counts[outcome] += len(ids)
    return counts


class Busy(Exception):
    """Another process is applying events right now (see Applier)."""


# Names the background applier's turn (a Postgres advisory lock); any constant unique in the DB.
APPLIER_LOCK = 0x5EB_400C


def apply(
    events: WebhookEventQuerySet,
    *,
    batch_size: int = 100,
    limit: int | None = None,
    time_budget: float | None = None,
    exclusive: bool = False,
) -> Counter[str]:
    """Claim and apply these events in batches until none is left, `limit` or the budget.

    With `exclusive`, each batch first takes the applier's turn and raises Busy if another
    process has it. Correctness never depends on that (the claim's row locks do); it makes the
    background appliers of several processes take turns, so batches are bigger and fewer.
    """
    counts: Counter[str] = Counter()
    deadline = time.monotonic() + time_budget if time_budget else None
    after, remaining = 0, limit
    while remaining is None or remaining > 0:
        size = batch_size if remaining is None else min(batch_size, remaining)
        ids, done = _apply_batch(events, after=after, size=size, exclusive=exclusive)
        counts += done
        # A short batch means nothing older is waiting; what arrived since is newer than our
        # read (its own request nudges an applier). Events another process holds are skipped
        # (it applies them), and `limit` counts them as seen.
        if len(ids) < size or (deadline and time.monotonic() > deadline):
            break
        after = ids[-1]
        remaining = None if remaining is None else remaining - len(ids)
    return counts


def _apply_batch(
    events: WebhookEventQuerySet, *, after: int, size: int, exclusive: bool
) -> tuple[list[int], Counter[str]]:
    peeked: list[WebhookEvent] = []
    try:
        with transaction.atomic():
            if exclusive and not _take_turn():
                raise Busy
            # Resolve before locking: resolving is the slow read (the hosted schema has no
            # index on contact emails), and a re-delivery of an event waits for its row lock.
            peeked = events.peek(after=after, limit=size)
            targets = targets_for(peeked)
            batch = events.lock(peeked)
            ids = [e.pk for e in peeked]
            return ids, apply_events(batch, targets) if batch else Counter()
    except Exception:
        if not peeked:
            raise  # Busy, or reading the events failed (the database is in trouble)
        # Resolving or applying failed: one event per transaction isolates the culprit, which
        # is recorded as failed (apply_one locks each event itself, skipping any held elsewhere).
        log.warning("A batch of %d webhook events failed; applying them one by one", len(peeked))
        ids = [e.pk for e in peeked]
        return ids, sum((apply_one(events, pk) for pk in ids), Counter())


def _take_turn() -> bool:
    """A transaction-level advisory lock: released at commit, and safe behind Supavisor's
    transaction pooling. Other databases (SQLite) serialize writers anyway."""
    if connection.vendor != "postgresql":
        return True
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [APPLIER_LOCK])
        return bool(cursor.fetchone()[0])


def apply_one(events: WebhookEventQuerySet, pk: int) -> Counter[str]:
    """Apply one event in its own transaction; if that fails, record the error on the event."""
    with transaction.atomic():
        claimed = events.filter(pk=pk).claim(limit=1)
        if not claimed:
            return Counter()
        try:
            with transaction.atomic():
                return apply_events(claimed)
        except Exception as exc:
            log.exception("Applying webhook event %s failed", pk)
            WebhookEvent.objects.filter(pk=pk).update(
                outcome=Outcome.FAILED,
                detail=clean(f"{type(exc).__name__}: {exc}", 2000),
                attempts=F("attempts") + 1,
                processed_at=timezone.now(),
            )
            return Counter({Outcome.FAILED: 1})


def apply_pending(*, time_budget: float = 2.0) -> Counter[str]:
    """Apply what is waiting, whoever stored it."""
    return apply(WebhookEvent.objects.pending(), time_budget=time_budget)


class Applier:
    """Applies stored events from a daemon thread of each web process, in batches.

    Applying in the request would cost every delivery a transaction of its own; here a burst of
    deliveries becomes one batch. The view nudges after storing; the thread (started on first
    use, so after gunicorn has forked) waits `window` for more events, then claims and applies
    everything waiting. The processes take turns (`exclusive`); one that finds another applying
    looks again after `window`. A nudge is never lost: the flag is cleared before claiming, so
    an event stored meanwhile sets it again. An idle thread still looks every `idle_poll`
    seconds, for events a dead process left behind.
    """

    window = 0.25
    idle_poll = 30.0

    def __init__(self) -> None:
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def nudge(self) -> None:
        if not self._running():
            with self._lock:
                if not self._running():
                    self._pid = os.getpid()
                    self._stopping.clear()
                    # This thread shares the GIL with the worker's request thread. Python hands
                    # the GIL over every 5 ms by default; 1 ms caps what a batch adds to a
                    # request's latency (p99 at 200/s: about 30-60 ms -> 15 ms in bench/).
                    sys.setswitchinterval(0.001)
                    self._thread = threading.Thread(
                        target=self._run, name="smartlead-webhook-applier", daemon=True
                    )
                    self._thread.start()
                    # A recycled gunicorn worker exits normally: apply what it stored first.
                    atexit.register(self.stop, timeout=5.0)
        self._wake.set()

    def _running(self) -> bool:
        alive = self._thread is not None and self._thread.is_alive()
        return alive and self._pid == os.getpid()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the current pass and close the thread's connection (tests, clean exits)."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(timeout=self.idle_poll)
            time.sleep(self.window)
            self._wake.clear()
            # The last pass before exiting cannot wait for its turn.
            self._pass(exclusive=not self._stopping.is_set())
        connection.close()

    def _pass(self, *, exclusive: bool) -> None:
        try:
            close_old_connections()
            # Web processes skip connection health checks: a dropped connection costs a retry.
            once_more_if_disconnected(
                lambda: apply(WebhookEvent.objects.pending(), exclusive=exclusive)
            )
        except Busy:
            self._wake.set()  # another process is applying: look again after the window
        except Exception:  # noqa: BLE001 - the events stay stored; the next pass retries
            log.exception("Applying Smartlead webhook events in the background failed")
            time.sleep(1.0)


applier = Applier()


def hand_off() -> None:
    """After a new event is acknowledged: apply it here (inline mode, for tests) or in the
    background applier (the default; see Applier)."""
    if getattr(settings, "SMARTLEAD_WEBHOOK_APPLY_INLINE", False):
        apply_pending()
    else:
        applier.nudge()


def summary(counts: Counter[str], skipped: int) -> str:
    """One line for people: how many events ended how."""
    done = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items())) or "nothing"
    text = f"Reprocessed {sum(counts.values())} event(s): {done}."
    if skipped:
        text += f" {skipped} skipped (applied, ignored, rejected, or being applied right now)."
    return text
