"""Applying stored Smartlead webhook events to our rows: exactly once, in batches, off the request.

The receiver (smartlead/views.py) stores each delivery and calls `hand_off()`; the background
`Applier` of that web process then applies what is waiting. `apply()` also serves
`manage.py reprocess_webhooks` and the admin action. What each event does is in webhooks.py.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from django.db import connection, transaction
from django.db.models import F, Value
from django.db.models.functions import Coalesce, Lower
from django.utils import timezone

from sequences import optouts
from sequences.models import (
    CampaignProvisioning,
    Contact,
    Engagement,
    EngagementType,
    Enrollment,
    EnrollmentStatus,
    OptOutOrigin,
)
from smartlead import notices
from smartlead.api import events
from smartlead.effects import DECIDED, EFFECTS, SENDER_BOUNCE, Effect, Target
from smartlead.models import Outcome, WebhookEvent, WebhookEventQuerySet
from smartlead.replies import Decider, ReplyChanges
from smartlead.webhooks import clean, metadata, sender_originated

log = logging.getLogger(__name__)


# What each event does is smartlead/effects.py (Effect, EFFECTS); replies and category changes
# are decided per event there and written by smartlead/replies.py.
@dataclass
class Changes:
    """Row changes of a batch of events, written as a few set-based statements."""

    engagements: list[Engagement] = field(default_factory=list)
    scores: Counter[UUID] = field(default_factory=Counter)
    statuses: dict[UUID, EnrollmentStatus] = field(default_factory=dict)
    opt_outs: list[optouts.Origin] = field(default_factory=list)
    replies: ReplyChanges = field(default_factory=ReplyChanges)

    def add(
        self,
        event: WebhookEvent,
        effect: Effect,
        target: Target,
        now: datetime,
        payload: dict[str, Any] | None = None,
    ) -> None:
        payload = json.loads(event.raw_body) if payload is None else payload
        self.engagements.append(
            Engagement(
                contact_id=target.contact_id,
                sequence_id=target.sequence_id,
                enrollment_id=target.enrollment_id,
                engagement_type=effect.engagement,
                metadata=metadata(event, payload) | dict(effect.note),
                engaged_at=event.event_time or now,
            )
        )
        self.replies.add(event, effect, target, payload)
        if effect.score:
            self.scores[target.contact_id] += effect.score
        if effect.status and target.enrollment_id:
            # Of several events for one enrollment in a batch, the highest on the ladder wins.
            current = self.statuses.get(target.enrollment_id)
            if current is None or Enrollment.rung(effect.status) > Enrollment.rung(current):
                self.statuses[target.enrollment_id] = effect.status
        if effect.unsubscribe:  # an unsubscribe, or the Do Not Contact category
            dnc = event.event_type == events.LEAD_CATEGORY_UPDATED
            origin = OptOutOrigin.DO_NOT_CONTACT if dnc else OptOutOrigin.UNSUBSCRIBED
            self.opt_out(event, target, origin, now)

    def opt_out(self, event: WebhookEvent, target: Target, origin: str, now: datetime) -> None:
        """The prospect opted out (an unsubscribe; a Do Not Contact category): applied by the
        one policy (sequences/optouts.py) when the batch is written."""
        self.opt_outs.append(
            optouts.Origin(
                kind=origin,
                email=event.lead_email,
                when=event.event_time or now,
                contact_id=target.contact_id,
                sequence_id=target.sequence_id,
                campaign_id=event.campaign_id,
                webhook_event_id=event.pk,
            )
        )

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
        for origin in sorted(self.opt_outs, key=lambda o: o.when):
            optouts.apply(origin, now)  # which contacts and enrollments: the policy's word
        self.replies.hold(now)  # an absence first: a real reply in the batch then ends it
        Enrollment.objects.end_by_event(self.statuses, now)
        self.replies.write(now)


def resolve(keys: set[tuple[str, str]]) -> dict[tuple[str, str], Target | str]:
    """(campaign id, lead email) → the enrollment of that lead in the sequence that owns the
    campaign, else why not.

    Tenant scoping: the campaign's owner is the sequence the backend provisioned it for
    (`CampaignProvisioning.objects.owners`), and only that sequence's enrollments are looked at.
    An address not enrolled there stays unmatched: it is never attached to another contact with
    the same email, which may be another SDR's. Contacts may be duplicated, so of several
    enrollments of the same address the most recent wins.
    """
    owners = CampaignProvisioning.objects.owners({int(c) for c, _ in keys})
    enrolled = (
        Enrollment.objects.annotate(_email=Lower("contact__email"))
        .filter(sequence_id__in={o for o in owners.values() if o}, _email__in={e for _, e in keys})
        .order_by(F("enrolled_at").desc(nulls_last=True))
        .values_list("sequence_id", "_email", "contact_id", "id")
    )
    targets: dict[tuple[UUID, str], Target] = {}
    for sequence_id, email, contact_id, enrollment_id in enrolled:
        targets.setdefault((sequence_id, email), Target(sequence_id, contact_id, enrollment_id))
    found: dict[tuple[str, str], Target | str] = {}
    for campaign, email in keys:
        owner = owners.get(int(campaign))
        if owner is None and int(campaign) in owners:
            found[campaign, email] = (
                f"Sequences of several SDRs name campaign {campaign} and none has our record "
                "of it (an id set by hand?); the event is kept, and applied to none."
            )
        elif owner is None:
            found[campaign, email] = f"No sequence of ours owns campaign {campaign}."
        else:
            found[campaign, email] = targets.get((owner, email)) or (
                f"{email} is not enrolled in the sequence that owns campaign {campaign}; the "
                "event is kept, and not attached to any other contact."
            )
    return found


def targets_for(events: list[WebhookEvent]) -> dict[tuple[str, str], Target | str]:
    """Where the events that are acted on land: see `resolve()`."""
    keys = {
        (str(e.campaign_id), e.lead_email)
        for e in events
        if e.event_type in EFFECTS and e.campaign_id is not None and e.lead_email
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
    work: list[tuple[WebhookEvent, Effect]] = []
    for event in events:
        effect = EFFECTS.get(event.event_type)
        notice = notices.NOTICES.get(event.event_type)
        if notice is not None:
            outcomes[notice(event, json.loads(event.raw_body), now)].append(event.pk)
        elif effect is None:
            outcomes[Outcome.IGNORED, f"{event.event_type} is not applied."].append(event.pk)
        elif event.campaign_id is None or not event.lead_email:
            missing = "campaign_id" if event.campaign_id is None else "lead email"
            outcomes[Outcome.UNMATCHED, f"The payload has no {missing}."].append(event.pk)
        else:
            if effect.engagement == EngagementType.EMAIL_BOUNCED:
                effect = _bounce_effect(event)
            work.append((event, effect))
    if targets is None:
        targets = targets_for([e for e, _ in work])
    changes = Changes()
    sender_bounces: defaultdict[UUID, list[str]] = defaultdict(list)
    senders: set[str] = set()  # the SDRs' mailboxes those bounces name (`from_email`)
    decide = None
    if any(event.event_type in DECIDED for event, _ in work):
        decide = Decider(t for t in targets.values() if isinstance(t, Target))
    for event, effect in work:
        target = targets[str(event.campaign_id), event.lead_email]
        if isinstance(target, str):
            outcomes[Outcome.UNMATCHED, target].append(event.pk)
            continue
        payload = json.loads(event.raw_body)
        if decide is not None and event.event_type in DECIDED:
            effect = decide(event, payload, target)
        changes.add(event, effect, target, now, payload)
        if effect is SENDER_BOUNCE:
            sender_bounces[target.sequence_id].append(_bounce_reason(event))
            senders.add(_bounce_sender(event))
            outcomes[Outcome.APPLIED, SENDER_BOUNCE_DETAIL].append(event.pk)
            continue
        outcomes[Outcome.APPLIED, ""].append(event.pk)
    changes.write(now)
    if sender_bounces:
        reasons = [r for rs in sender_bounces.values() for r in rs]
        notices.flag_mailboxes(sender_bounces, reasons, senders - {""})
    counts: Counter[str] = Counter()
    for (outcome, detail), ids in outcomes.items():
        WebhookEvent.objects.filter(pk__in=ids).update(
            outcome=outcome, detail=detail, processed_at=now, attempts=F("attempts") + 1
        )
        counts[outcome] += len(ids)
    return counts


SENDER_BOUNCE_DETAIL = (
    "A bounce caused by the SDR's own mailbox: the lead is not marked bounced; the mailbox that "
    "sent it is marked failed until a health read finds it working."
)


def _bounce_effect(event: WebhookEvent) -> Effect:
    if sender_originated(json.loads(event.raw_body)):
        return SENDER_BOUNCE
    return EFFECTS[events.EMAIL_BOUNCE]


def _bounce_sender(event: WebhookEvent) -> str:
    payload = json.loads(event.raw_body)
    sender = payload.get("from_email") if isinstance(payload, dict) else None
    return sender.strip().lower() if isinstance(sender, str) else ""


def _bounce_reason(event: WebhookEvent) -> str:
    payload = json.loads(event.raw_body)
    reason = payload.get("bounce_reason") if isinstance(payload, dict) else None
    return clean(reason, 200) if isinstance(reason, str) and reason.strip() else "no reason given"


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
    progress: Callable[[Counter[str]], None] | None = None,
) -> Counter[str]:
    """Claim and apply these events in batches until none is left, `limit` or the budget;
    `progress`, if given, hears the counts so far after each batch.

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
        if progress is not None:
            progress(counts)
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


def reprocess_summary(counts: Counter[str], skipped: int) -> str:
    """One line for people: how many events ended how."""
    done = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items())) or "nothing"
    text = f"Reprocessed {sum(counts.values())} event(s): {done}."
    if skipped:
        text += f" {skipped} skipped (applied, ignored, rejected, or being applied right now)."
    return text
