"""Walking claimed enrollments through their steps, and the database writes that go with it.

The executor (sequences/executor.py) decides what to send and when; this module holds the
per-sequence plan, the claim, the step rules and every write to the hosted tables and the
ledger. Writes are grouped per chunk or per batch, so the number of SQL statements grows with
batches, not with enrollments.
"""

from __future__ import annotations

import json
import re
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from profiles.models import Profile, SmartleadCredentials
from sequences import sql
from sequences.models import (
    CallTask,
    Engagement,
    EngagementType,
    Enrollment,
    EnrollmentStatus,
    ExecutorRun,
    Push,
    PushState,
    Sequence,
    SequenceStatus,
    SequenceStep,
    StepRecord,
    StepType,
)
from sequences.provisioning import forget_campaign, lease_length
from smartlead.client import AddLeadsResult, Lead


@dataclass
class Plan:
    """One active, provisioned sequence with its steps and its creator's credentials."""

    sequence_id: uuid.UUID
    campaign_id: int
    creator: Profile
    credentials: SmartleadCredentials
    steps: dict[int, SequenceStep]
    first_email_step: int | None
    has_conditions: bool

    @classmethod
    def build(cls, sequence: Sequence, credentials: SmartleadCredentials) -> Plan:
        steps = {s.step_number: s for s in sequence.steps.all()}
        emails = sorted(n for n, s in steps.items() if s.step_type == StepType.EMAIL)
        conditional = any(
            s.condition_previous_opened or s.condition_previous_clicked or s.condition_not_replied
            for s in steps.values()
        )
        return cls(
            sequence_id=sequence.id,
            campaign_id=int(sequence.smartlead_campaign_id),
            creator=sequence.created_by,
            credentials=credentials,
            steps=steps,
            first_email_step=emails[0] if emails else None,
            has_conditions=conditional,
        )

    @property
    def creator_id(self) -> uuid.UUID:
        return self.creator.id

    def next_step(self, current: int) -> SequenceStep | None:
        later = [n for n in self.steps if n > current]
        return self.steps[min(later)] if later else None


@dataclass
class Tally:
    """What one worker did; the run adds every worker's tally to its record."""

    due: int = 0
    pushed: int = 0
    failed: int = 0
    call_tasks: int = 0
    completed: int = 0
    advanced: int = 0
    deferred: int = 0
    campaigns_provisioned: int = 0
    smartlead_requests: int = 0
    errors: list[str] = field(default_factory=list)

    COUNTERS = (
        "due",
        "pushed",
        "failed",
        "call_tasks",
        "completed",
        "advanced",
        "deferred",
        "campaigns_provisioned",
        "smartlead_requests",
    )

    def add_to(self, record: ExecutorRun) -> None:
        for name in self.COUNTERS:
            setattr(record, name, getattr(record, name) + getattr(self, name))
        record.errors.extend(self.errors[: max(0, 200 - len(record.errors))])


CLAIM_FIELDS = (
    "id",
    "contact_id",
    "current_step",
    "contact__email",
    "contact__first_name",
    "contact__last_name",
    "contact__company",
    "contact__phone",
    "contact__title",
    "contact__unsubscribed_at",
)


@dataclass
class Claimed:
    """A claimed enrollment with what its contact needs to become a Smartlead lead."""

    id: uuid.UUID
    contact_id: uuid.UUID
    current_step: int
    email: str | None
    first_name: str | None
    last_name: str | None
    company: str | None
    phone: str | None
    title: str | None
    unsubscribed_at: datetime | None
    _lead: Lead | None = field(default=None, repr=False, compare=False)

    @property
    def lead(self) -> Lead:
        # Built once, on first use. Not functools.cached_property: on Python 3.11 it takes one
        # lock shared by every instance, which the executor's threads then queue on.
        if self._lead is None:
            self._lead = self._build_lead()
        return self._lead

    def _build_lead(self) -> Lead:
        return Lead(
            email=(self.email or "").strip().lower(),
            first_name=self.first_name,
            last_name=self.last_name,
            company_name=self.company,
            phone_number=self.phone,
            custom_fields={"title": self.title} if self.title else {},
        )

    def email_problem(self) -> str | None:
        email = (self.email or "").strip()
        if not email:
            return "The contact has no email address."
        if len(email) > 254 or not PLAUSIBLE_EMAIL.match(email):
            return f"The contact's email address {email!r} is not valid."
        return None


# Smartlead validates addresses itself and reports the ones it rejects; this catches what people
# mistype (no @, spaces, no domain) without Django's IDN-aware validator, whose regex costs more
# to compile than a whole run of checks.
PLAUSIBLE_EMAIL = re.compile(r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$")


def claim(plan: Plan, started: datetime, size: int) -> list[Claimed]:
    """Leases up to `size` ready enrollments of one sequence by moving their next_send_at."""
    lease_until = timezone.now() + lease_length()
    if connection.vendor == "postgresql":
        rows = sql.claim(plan.sequence_id, started, size, lease_until)
        return [Claimed(*row) for row in rows]
    # SQLite (the embedded default) has one writer at a time and no SKIP LOCKED.
    with transaction.atomic():
        rows = list(
            Enrollment.objects.filter(
                sequence_id=plan.sequence_id,
                sequence__status=SequenceStatus.ACTIVE,
                status=EnrollmentStatus.ACTIVE,
                next_send_at__lte=started,
            ).values_list(*CLAIM_FIELDS)[:size]
        )
        Enrollment.objects.filter(id__in=[r[0] for r in rows]).update(next_send_at=lease_until)
    return [Claimed(*row) for row in rows]


@dataclass
class Changes:
    """The writes one chunk needs, grouped so each group is one statement."""

    # (from step, to step) → enrollments; the update applies only where the row is still on
    # its from step, so a change made elsewhere during the run is never overwritten.
    advance: dict[tuple[int, int], list[uuid.UUID]] = field(
        default_factory=lambda: defaultdict(list)
    )
    complete: list[uuid.UUID] = field(default_factory=list)
    calls: list[Claimed] = field(default_factory=list)
    failed: dict[uuid.UUID, str] = field(default_factory=dict)
    unsubscribed: list[uuid.UUID] = field(default_factory=list)


def walk(plan: Plan, chunk: list[Claimed], tally: Tally, run_id: uuid.UUID) -> list[Claimed]:
    """Applies each enrollment's due step and returns the ones to push to Smartlead."""
    signals = _engagement_signals(plan, chunk) if plan.has_conditions else {}
    changes, candidates, troubled = Changes(), [], []
    for item in chunk:
        step = plan.steps.get(item.current_step)
        if step is None:
            changes.complete.append(item.id)
        elif not _conditions_met(step, signals.get(item.id, set())):
            _advance(plan, changes, item)
        elif step.step_type == StepType.CALL:
            changes.calls.append(item)
            _advance(plan, changes, item)
        elif item.unsubscribed_at or item.email_problem():
            troubled.append(item)
        else:
            candidates.append(item)
    # Any email step pushes an enrollment that is not in the campaign yet (normally at the first
    # email step); for one already pushed, Smartlead sends the follow-ups and we only advance.
    to_push, already = _reserve(plan, candidates, run_id)
    for item in already + _pushed_before(plan, troubled, changes):
        _advance(plan, changes, item)
    _apply(plan, changes, tally)
    return to_push


def _engagement_signals(plan: Plan, chunk: list[Claimed]) -> dict[uuid.UUID, set[str]]:
    wanted = [
        EngagementType.EMAIL_OPENED,
        EngagementType.EMAIL_CLICKED,
        EngagementType.EMAIL_REPLIED,
    ]
    by_contact = {c.contact_id: c.id for c in chunk}
    rows = Engagement.objects.filter(
        Q(enrollment_id__in=[c.id for c in chunk])
        | Q(contact_id__in=list(by_contact), sequence_id=plan.sequence_id),
        engagement_type__in=wanted,
    ).values_list("enrollment_id", "contact_id", "engagement_type")
    signals: dict[uuid.UUID, set[str]] = defaultdict(set)
    for enrollment_id, contact_id, kind in rows:
        signals[enrollment_id or by_contact.get(contact_id)].add(kind)
    return signals


def _conditions_met(step: SequenceStep, signals: set[str]) -> bool:
    # Judged on the enrollment's own engagements: the contract ties opens and clicks to the
    # enrollment, not to a particular email.
    if step.condition_previous_opened and EngagementType.EMAIL_OPENED not in signals:
        return False
    if step.condition_previous_clicked and EngagementType.EMAIL_CLICKED not in signals:
        return False
    return not (step.condition_not_replied and EngagementType.EMAIL_REPLIED in signals)


def _pushed_before(plan: Plan, troubled: list[Claimed], changes: Changes) -> list[Claimed]:
    """Unsubscribed or bad-address contacts end here, unless already in the campaign."""
    if not troubled:
        return []
    pushed = set(
        Push.objects.filter(
            enrollment_id__in=[c.id for c in troubled],
            campaign_id=plan.campaign_id,
            state=PushState.PUSHED,
        ).values_list("enrollment_id", flat=True)
    )
    for item in troubled:
        if item.id in pushed:
            continue
        if item.unsubscribed_at:
            changes.unsubscribed.append(item.id)
        else:
            changes.failed[item.id] = item.email_problem() or "The contact's email is not valid."
    return [c for c in troubled if c.id in pushed]


def _advance(plan: Plan, changes: Changes, item: Claimed) -> None:
    following = plan.next_step(item.current_step)
    if following is None:
        changes.complete.append(item.id)
    else:
        changes.advance[(item.current_step, following.step_number)].append(item.id)


def _reserve(
    plan: Plan, candidates: list[Claimed], run_id: uuid.UUID
) -> tuple[list[Claimed], list[Claimed]]:
    """Ledger first: `pending` rows before the request. Already-pushed ones are not sent again."""
    if not candidates:
        return [], []
    if connection.vendor == "postgresql":
        sendable = sql.reserve(
            campaign_id=plan.campaign_id,
            sequence_id=plan.sequence_id,
            profile_id=plan.creator_id,
            run_id=run_id,
            ids=[c.id for c in candidates],
            emails=[c.lead.email for c in candidates],
        )
    else:
        sendable = _reserve_with_orm(plan, candidates, run_id)
    return (
        [c for c in candidates if c.id in sendable],
        [c for c in candidates if c.id not in sendable],
    )


def _reserve_with_orm(plan: Plan, candidates: list[Claimed], run_id: uuid.UUID) -> set[uuid.UUID]:
    known = dict(
        Push.objects.filter(
            enrollment_id__in=[c.id for c in candidates], campaign_id=plan.campaign_id
        ).values_list("enrollment_id", "state")
    )
    retry = [c.id for c in candidates if known.get(c.id) in (PushState.PENDING, PushState.REJECTED)]
    fresh = [c for c in candidates if c.id not in known]
    with transaction.atomic():
        # Interrupted before: send again; Smartlead de-duplicates within a campaign.
        Push.objects.filter(enrollment_id__in=retry, campaign_id=plan.campaign_id).update(
            attempts=F("attempts") + 1, run_id=run_id
        )
        Push.objects.bulk_create(
            [
                Push(
                    enrollment_id=c.id,
                    campaign_id=plan.campaign_id,
                    sequence_id=plan.sequence_id,
                    profile_id=plan.creator_id,
                    email=c.lead.email,
                    run_id=run_id,
                )
                for c in fresh
            ]
        )
    return {c.id for c in fresh} | set(retry)


def _apply(plan: Plan, changes: Changes, tally: Tally) -> None:
    if not (
        changes.advance
        or changes.complete
        or changes.unsubscribed
        or changes.failed
        or changes.calls
    ):
        return
    now = timezone.now()
    active = Enrollment.objects.filter(status=EnrollmentStatus.ACTIVE)
    with transaction.atomic():
        for (from_step, to_step), ids in changes.advance.items():
            next_at = now + plan.steps[to_step].delay
            tally.advanced += active.filter(id__in=ids, current_step=from_step).update(
                current_step=to_step, next_send_at=next_at, updated_at=now
            )
        if changes.complete:
            tally.completed += active.filter(id__in=changes.complete).update(
                status=EnrollmentStatus.COMPLETED, completed_at=now, updated_at=now
            )
        if changes.unsubscribed:
            active.filter(id__in=changes.unsubscribed).update(
                status=EnrollmentStatus.UNSUBSCRIBED, updated_at=now
            )
        if changes.failed:
            _fail(plan, changes.failed, tally, now)
        if changes.calls:
            _create_calls(plan, changes.calls, tally, now)


def _fail(plan: Plan, reasons: dict[uuid.UUID, str], tally: Tally, now: datetime) -> None:
    tally.failed += Enrollment.objects.filter(
        id__in=list(reasons), status=EnrollmentStatus.ACTIVE
    ).update(status=EnrollmentStatus.FAILED, updated_at=now)
    StepRecord.objects.bulk_create(
        [
            StepRecord(
                enrollment_id=eid,
                step_number=plan.first_email_step or 0,
                action="failed",
                detail=reason[:1000],
            )
            for eid, reason in reasons.items()
        ],
        ignore_conflicts=True,
    )


def _create_calls(plan: Plan, items: list[Claimed], tally: Tally, now: datetime) -> None:
    """One call task per enrollment and step, however often the step is walked."""
    done = set(
        StepRecord.objects.filter(
            enrollment_id__in=[c.id for c in items], action="call"
        ).values_list("enrollment_id", "step_number")
    )
    new = [c for c in items if (c.id, c.current_step) not in done]
    calls = [
        CallTask(
            contact_id=c.contact_id,
            sequence_id=plan.sequence_id,
            enrollment_id=c.id,
            call_objective=plan.steps[c.current_step].call_objective,
            call_script=plan.steps[c.current_step].call_script,
            scheduled_at=now,
        )
        for c in new
    ]
    StepRecord.objects.bulk_create(
        [StepRecord(enrollment_id=c.id, step_number=c.current_step, action="call") for c in new]
    )
    CallTask.objects.bulk_create(calls)
    Engagement.objects.bulk_create(
        [
            Engagement(
                contact_id=c.contact_id,
                sequence_id=plan.sequence_id,
                enrollment_id=c.id,
                engagement_type=EngagementType.CALL_SCHEDULED,
                engaged_at=now,
                metadata={"step_number": c.current_step, "call_id": str(call.id)},
            )
            for c, call in zip(new, calls, strict=True)
        ]
    )
    tally.call_tasks += len(new)


def record_pushed(plan: Plan, items: list[Claimed], result: AddLeadsResult, tally: Tally) -> None:
    """Smartlead accepted the batch: ledger `pushed`, enrollments advanced, rejections recorded."""
    outcomes: dict[str, list[Claimed]] = defaultdict(list)
    for item in items:
        outcomes[result.outcome_for(item.lead.email)].append(item)
    now = timezone.now()
    _accept(plan, outcomes.pop("added_or_existing", []), result.counts, tally)
    changes = Changes()
    for item in outcomes.pop("unsubscribed", []):
        changes.unsubscribed.append(item.id)
    for item in outcomes.pop("invalid", []):
        changes.failed[item.id] = "Smartlead rejected the email address as invalid."
    if changes.unsubscribed or changes.failed:
        with transaction.atomic():
            _mark(
                plan,
                [c for c in items if c.id in changes.unsubscribed],
                PushState.REJECTED,
                "unsubscribed",
                result.counts,
                now,
            )
            _mark(
                plan,
                [c for c in items if c.id in changes.failed],
                PushState.REJECTED,
                "invalid",
                result.counts,
                now,
            )
            _apply(plan, changes, tally)
    not_imported = [c.id for items_ in outcomes.values() for c in items_]
    if not_imported:
        release(not_imported, plan, now)
        tally.deferred += len(not_imported)
        tally.errors.append(
            f"Smartlead's lead limit is exhausted for campaign {plan.campaign_id}: "
            f"{len(not_imported)} leads wait for the next run."
        )


def _accept(plan: Plan, items: list[Claimed], counts: dict[str, Any], tally: Tally) -> None:
    """Ledger `pushed` and enrollments advanced together, one statement per step they are on."""
    by_step: dict[int, list[Claimed]] = defaultdict(list)
    for item in items:
        by_step[item.current_step].append(item)
    tally.pushed += len(items)
    for from_step, group in by_step.items():
        _accept_step(plan, from_step, group, counts, tally)


def _accept_step(
    plan: Plan, from_step: int, items: list[Claimed], counts: dict[str, Any], tally: Tally
) -> None:
    now = timezone.now()
    following = plan.next_step(from_step)
    step = following.step_number if following else None
    next_at = now + following.delay if following else None
    ids = [c.id for c in items]
    if connection.vendor == "postgresql":
        moved = sql.pushed(
            campaign_id=plan.campaign_id,
            ids=ids,
            counts=json.dumps(counts),
            from_step=from_step,
            step=step,
            next_send_at=next_at,
            now=now,
        )
    else:
        with transaction.atomic():
            _mark(plan, items, PushState.PUSHED, "added_or_existing", counts, now)
            active = Enrollment.objects.filter(
                id__in=ids, status=EnrollmentStatus.ACTIVE, current_step=from_step
            )
            if step is None:
                moved = active.update(
                    status=EnrollmentStatus.COMPLETED, completed_at=now, updated_at=now
                )
            else:
                moved = active.update(current_step=step, next_send_at=next_at, updated_at=now)
    if step is None:
        tally.completed += moved
    else:
        tally.advanced += moved


def record_rejected(plan: Plan, items: list[Claimed], message: str, tally: Tally) -> None:
    """Smartlead refused this lead permanently: the enrollment fails with Smartlead's reason."""
    now = timezone.now()
    with transaction.atomic():
        _mark(plan, items, PushState.REJECTED, "rejected", {"message": message[:500]}, now)
        _fail(plan, {c.id: f"Smartlead rejected the lead: {message}" for c in items}, tally, now)


def _mark(
    plan: Plan,
    items: Iterable[Claimed],
    state: str,
    outcome: str,
    counts: dict[str, Any],
    now: datetime,
) -> None:
    ids = [c.id for c in items]
    if ids:
        Push.objects.filter(enrollment_id__in=ids, campaign_id=plan.campaign_id).update(
            state=state, outcome=outcome, counts=counts, pushed_at=now
        )


def release(ids: list[uuid.UUID], plan: Plan, at: datetime, *, maybe_sent: bool = False) -> None:
    """Gives claimed enrollments back, due now (after the run's start, so not re-taken by it).

    `maybe_sent`: the request may have reached Smartlead (a read timeout), so the `pending`
    ledger rows stay and the next run's re-send shows as a second attempt.
    """
    now = max(timezone.now(), at)
    with transaction.atomic():
        Enrollment.objects.filter(id__in=ids, status=EnrollmentStatus.ACTIVE).update(
            next_send_at=now
        )
        if not maybe_sent:
            Push.objects.filter(
                enrollment_id__in=ids, campaign_id=plan.campaign_id, state=PushState.PENDING
            ).delete()


def campaign_gone(plan: Plan, reason: str) -> None:
    forget_campaign(plan.sequence_id, f"Campaign {plan.campaign_id} was not found: {reason}")
