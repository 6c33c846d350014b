"""Replies and category changes of one batch of events: deciding each (`Decider`, with what
smartlead/effects.py rules) and writing what they ask for (`ReplyChanges`), inside applying's
transaction:

1. before the ladder (`hold`): out-of-office absences (`Enrollment.objects.hold_out_of_office`),
   so that a real reply in the same batch still ends the enrollment;
2. after it (`write`): a reply Smartlead has since categorised out-of-office, when it is the
   enrollment's only reply, that very message, and no positive category came (`misread`); the
   categories recorded (`LeadCategory`); one call task per positive category, ever; and, with
   SMARTLEAD_PAUSE_SAME_COMPANY_ON_REPLY, the SDR's other enrollments at a replying lead's
   company paused (`Enrollment.objects.pause_same_company`).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db.models import F, Value
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from sequences.models import (
    CallTask,
    Contact,
    Engagement,
    EngagementType,
    Enrollment,
    EnrollmentHold,
    EnrollmentStatus,
    Sequence,
)
from smartlead import categories, effects, out_of_office
from smartlead.api import events
from smartlead.effects import Effect, Target
from smartlead.models import LeadCategory, WebhookEvent

# A reply from one of these says nothing about a company: its other people are not paused.
FREE_MAIL = frozenset(
    "gmail.com googlemail.com yahoo.com ymail.com hotmail.com outlook.com live.com msn.com "
    "aol.com icloud.com me.com mac.com proton.me protonmail.com gmx.com gmx.de gmx.net web.de "
    "mail.com zoho.com yandex.com yandex.ru mail.ru qq.com 163.com hey.com fastmail.com".split()
)
# Call tasks never go to an enrollment that ended this way.
NO_CALL = (EnrollmentStatus.UNSUBSCRIBED, EnrollmentStatus.BOUNCED, EnrollmentStatus.FAILED)


class Decider:
    """What each reply or category event of a batch does; reads what it needs once a batch."""

    def __init__(self, targets: Iterable[Target]) -> None:
        self.targets = [t for t in targets if t.enrollment_id is not None]
        ids = [t.enrollment_id for t in self.targets]
        # The auto-reply each absence was made for: seen again, it is no reply.
        self.away = EnrollmentHold.objects.message_ids(ids)
        self._names: dict[uuid.UUID, dict[int, str]] | None = None

    def __call__(self, event: WebhookEvent, payload: dict[str, Any], target: Target) -> Effect:
        when = event.event_time or timezone.now()
        if event.event_type == events.EMAIL_REPLY:
            name, category_id = effects.reply_category(payload)
            away = self.away.get(target.enrollment_id, "") if target.enrollment_id else ""
            category = name or self._name(category_id, target)
            return effects.reply_effect(payload, when, category=category, away_message=away)
        name, category_id = effects.category_of(payload)
        name = name or self._name(category_id, target)
        return effects.category_effect(payload, when, name=name, category_id=category_id)

    def _name(self, category_id: int | None, target: Target) -> str:
        """An id alone, read by the SDR's account's names (categories.py)."""
        if category_id is None:
            return ""
        if self._names is None:
            sequences = {t.sequence_id for t in self.targets}
            sdrs = dict(Sequence.objects.filter(pk__in=sequences).values_list("pk", "created_by"))
            cached = categories.cached(sdr for sdr in sdrs.values() if sdr)
            self._names = {pk: cached.get(sdr, {}) for pk, sdr in sdrs.items()}
        return categories.name_of(category_id, self._names.get(target.sequence_id, {}))


@dataclass
class ReplyChanges:
    """What a batch's replies and category changes ask for, by enrollment (the last wins)."""

    away: dict[uuid.UUID, tuple[datetime, str, str]] = field(default_factory=dict)
    misread: dict[uuid.UUID, str] = field(default_factory=dict)
    categories: dict[uuid.UUID, tuple[str, int | None]] = field(default_factory=dict)
    calls: dict[uuid.UUID, tuple[Target, str, str]] = field(default_factory=dict)
    replies: dict[uuid.UUID, tuple[Target, str, str]] = field(default_factory=dict)

    def add(
        self, event: WebhookEvent, effect: Effect, target: Target, payload: dict[str, Any]
    ) -> None:
        pk = target.enrollment_id
        if pk is None:
            return
        # An absence already over (a category found late) pauses nothing.
        if effect.away_until is not None and effect.away_until > timezone.now():
            detail = f"{event.lead_email} is out of office (Smartlead {event.event_type})"
            self.away[pk] = (effect.away_until, effect.message_id, detail)
            if event.event_type == events.LEAD_CATEGORY_UPDATED and effect.message_id:
                self.misread[pk] = effect.message_id
        if effect.category:
            self.categories[pk] = (effect.category[:200], effect.category_id)
        if effect.call:
            self.calls[pk] = (target, effect.category, _last_reply(payload))
        if effect.same_company:
            who = payload.get("leadCorrespondence") or {}
            who = who.get("replyReceivedFrom") if isinstance(who, dict) else None
            self.replies[pk] = (target, event.lead_email, who if isinstance(who, str) else "")

    def hold(self, now: datetime) -> None:
        """Step 1: before the ladder's statuses are written."""
        if self.away:
            Enrollment.objects.hold_out_of_office(self.away, now)

    def write(self, now: datetime) -> None:
        """Step 2: after them."""
        self._misread(now)
        for pk, (name, category_id) in self.categories.items():
            LeadCategory.objects.update_or_create(
                enrollment_id=pk,
                defaults={"name": name, "category_id": category_id, "updated_at": now},
            )
        for pk, (target, name, script) in self.calls.items():
            _call_once(pk, target, name, script, now)
        self._same_company(now)

    def _misread(self, now: datetime) -> None:
        """The reply an out-of-office category names, applied first as a real reply, was
        none: the enrollment is away instead, the engagement says so, the +50 is taken back.
        Only when that message is the enrollment's only reply and no positive category came."""
        wanted = {pk: mid for pk, mid in self.misread.items() if pk in self.away}
        if not wanted:
            return
        replies = defaultdict(list)
        rows = Engagement.objects.filter(
            enrollment_id__in=wanted, engagement_type=EngagementType.EMAIL_REPLIED
        ).values("pk", "enrollment_id", "contact_id", "metadata")
        for row in rows:
            replies[row["enrollment_id"]].append(row)
        called = LeadCategory.objects.filter(pk__in=wanted, call_id__isnull=False)
        positive = set(called.values_list("pk", flat=True))
        found = {
            pk: only[0]
            for pk, mid in wanted.items()
            if len(only := replies.get(pk, [])) == 1
            and (only[0]["metadata"] or {}).get("reply_message_id") == mid
            and pk not in positive
        }
        if not found:
            return
        holds = {pk: self.away[pk] for pk in found}
        for pk in Enrollment.objects.hold_out_of_office(holds, now, misread=list(found)):
            row = found[pk]
            note = {"out_of_office": True, "category": "Out Of Office", "was": "email_replied"}
            Engagement.objects.filter(pk=row["pk"]).update(
                engagement_type=EngagementType.LEAD_CATEGORY_UPDATED,
                metadata=(row["metadata"] or {}) | note,
            )
            Contact.objects.filter(pk=row["contact_id"]).update(
                engagement_score=Greatest(Coalesce(F("engagement_score"), Value(0)) - 50, Value(0))
            )

    def _same_company(self, now: datetime) -> None:
        if not (self.replies and settings.SMARTLEAD_PAUSE_SAME_COMPANY_ON_REPLY):
            return
        replied = set(
            Enrollment.objects.filter(
                pk__in=list(self.replies), status=EnrollmentStatus.REPLIED
            ).values_list("pk", flat=True)
        )
        sequences = {target.sequence_id for target, _, _ in self.replies.values()}
        sdrs = dict(Sequence.objects.filter(pk__in=sequences).values_list("pk", "created_by"))
        todo = {}
        for pk, (target, lead, who) in self.replies.items():
            domain = lead.rpartition("@")[2]
            sdr = sdrs.get(target.sequence_id)
            if pk in replied and sdr and domain and domain not in FREE_MAIL:
                todo[pk] = (sdr, domain, f"{who or lead} replied to the email sent to {lead}")
        Enrollment.objects.pause_same_company(todo, now)


def _call_once(pk: uuid.UUID, target: Target, name: str, script: str, now: datetime) -> None:
    """One call task for the enrollment's SDR, whatever category or delivery comes after:
    the category's row is claimed first (a conditional UPDATE; a second one finds it taken)."""
    status = Enrollment.objects.filter(pk=pk).values_list("status", flat=True).first()
    call_id = uuid.uuid4()
    if status in NO_CALL or not LeadCategory.objects.filter(pk=pk, call_id__isnull=True).update(
        call_id=call_id
    ):
        return
    CallTask.objects.create(
        id=call_id,
        contact_id=target.contact_id,
        sequence_id=target.sequence_id,
        enrollment_id=pk,
        call_objective=f'Smartlead marked the lead "{name}": call them.',
        call_script=script,
        scheduled_at=now,
    )
    Engagement.objects.create(
        contact_id=target.contact_id,
        sequence_id=target.sequence_id,
        enrollment_id=pk,
        engagement_type=EngagementType.CALL_SCHEDULED,
        engaged_at=now,
        metadata={"source": "smartlead_category", "category": name, "call_id": str(call_id)},
    )


def _last_reply(payload: dict[str, Any]) -> str:
    """What the lead wrote last, for the call's script."""
    last = payload.get("last_reply") or payload.get("lastReply")
    body = last.get("email_body") if isinstance(last, dict) else None
    if not isinstance(body, str):
        return ""
    text = " ".join(out_of_office.plain(body).split())
    return f"They wrote: {text[:1000]}" if text else ""
