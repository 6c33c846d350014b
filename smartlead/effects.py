"""What applying a Smartlead event does to our rows, decided per event.

Most event types always do the same (`EFFECTS`). A reply and a category change depend on what
they say (`reply_effect`, `category_effect`):

- a reply Smartlead categorises "Out Of Office", or with no category an auto-reply by its text:
  the enrollment paused until the return date the reply states (else
  SMARTLEAD_OUT_OF_OFFICE_DAYS); no score, no call; kept as a category engagement, not a reply;
- any other reply: `email_replied`, score +50, the enrollment `replied`; with
  SMARTLEAD_PAUSE_SAME_COMPANY_ON_REPLY the SDR's other enrollments at the company paused;
- category Interested or Meeting Request: `replied`, and one call task for the SDR, ever;
- category Not Interested: `replied` (it ends);
- category Do Not Contact: as LEAD_UNSUBSCRIBED (`unsubscribed`, the contact opted out);
- category Out Of Office: as an out-of-office reply, also when that reply came first as one.

Writing it is applying.py's `Changes` and replies.py's `ReplyChanges`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from django.conf import settings

from sequences.models import EngagementType, EnrollmentStatus
from smartlead import categories, out_of_office
from smartlead.api import events
from smartlead.webhooks import campaign_id_of, clean


@dataclass(frozen=True)
class Target:
    sequence_id: uuid.UUID
    contact_id: uuid.UUID
    enrollment_id: uuid.UUID | None


@dataclass(frozen=True)
class Effect:
    """What applying one event does to our rows."""

    engagement: EngagementType
    score: int = 0
    status: EnrollmentStatus | None = None
    unsubscribe: bool = False
    # Replies and categories (written by replies.ReplyChanges):
    away_until: datetime | None = None  # out of office: paused until then
    message_id: str = ""  # the reply it is about
    category: str = ""  # the category the enrollment has now
    category_id: int | None = None
    call: bool = False  # one call task for the SDR
    same_company: bool = False  # a real reply: the SDR's leads at the company may pause
    note: Mapping[str, Any] = field(default_factory=dict)  # added to the engagement's metadata


REPLY = Effect(
    EngagementType.EMAIL_REPLIED, score=50, status=EnrollmentStatus.REPLIED, same_company=True
)
UNSUBSCRIBE = Effect(
    EngagementType.EMAIL_UNSUBSCRIBED, status=EnrollmentStatus.UNSUBSCRIBED, unsubscribe=True
)
EFFECTS = {
    events.EMAIL_SENT: Effect(EngagementType.EMAIL_SENT),
    events.FIRST_EMAIL_SENT: Effect(EngagementType.EMAIL_SENT),
    events.EMAIL_OPEN: Effect(EngagementType.EMAIL_OPENED, score=10),
    events.EMAIL_LINK_CLICK: Effect(EngagementType.EMAIL_CLICKED, score=15),
    events.EMAIL_REPLY: REPLY,
    events.EMAIL_BOUNCE: Effect(EngagementType.EMAIL_BOUNCED, status=EnrollmentStatus.BOUNCED),
    events.LEAD_UNSUBSCRIBED: UNSUBSCRIBE,
    events.LEAD_CATEGORY_UPDATED: Effect(EngagementType.LEAD_CATEGORY_UPDATED),
}
# A bounce caused by the SDR's own mailbox: recorded, but the lead did not bounce (notices.py).
SENDER_BOUNCE = Effect(EngagementType.EMAIL_BOUNCED)
# The events whose effect depends on what they say.
DECIDED = (events.EMAIL_REPLY, events.LEAD_CATEGORY_UPDATED)


def reply_category(payload: dict[str, Any]) -> tuple[str, int | None]:
    """A category the reply itself carries, when it does. Smartlead's docs list none on
    EMAIL_REPLY; integrators read `reply_category` (an id), so it is read, with the names
    others guess, and never required."""
    for key in ("reply_category", "lead_category", "category", "lead_category_id"):
        name, category_id = _category(payload.get(key))
        if name or category_id is not None:
            return name, category_id
    return "", None


def category_of(payload: dict[str, Any]) -> tuple[str, int | None]:
    """LEAD_CATEGORY_UPDATED's new category: `lead_category{new_id, new_name}`, or the older
    flat `category` and `lead_category_id`."""
    new = payload.get("lead_category")
    if isinstance(new, dict):
        name, category_id = _text(new.get("new_name")), campaign_id_of(new.get("new_id"))
    else:
        name, category_id = _category(payload.get("category"))
    if category_id is None:
        category_id = campaign_id_of(payload.get("lead_category_id"))
    return name, category_id


def reply_effect(
    payload: dict[str, Any], replied: datetime, *, category: str, away_message: str
) -> Effect:
    """A reply: out of office (Smartlead's category says so; or, with no category, the reply is
    the auto-reply an absence was already made for, or reads like one), or a real reply."""
    message_id = _text(_dig(payload, "reply_message", "message_id") or payload.get("message_id"))
    if not settings.SMARTLEAD_OUT_OF_OFFICE_PAUSE:
        return REPLY
    subject = _text(payload.get("subject"))
    body = _reply_text(payload)
    if category:
        away = categories.normal(category) == categories.OUT_OF_OFFICE
        by = "smartlead_category"
    elif away_message and message_id == away_message:
        away, by = True, "smartlead_category"
    else:
        away, by = out_of_office.looks_out_of_office(subject, body), "reply_text"
    if not away:
        return replace(REPLY, note={"category": category}) if category else REPLY
    return _away(subject, body, replied, message_id, by=by)


def category_effect(
    payload: dict[str, Any], at: datetime, *, name: str, category_id: int | None
) -> Effect:
    """A category change: what the category asks for (module docstring)."""
    kind = categories.normal(name)
    base: dict[str, Any] = {"engagement": EngagementType.LEAD_CATEGORY_UPDATED, "category": name}
    base |= {"category_id": category_id, "note": {"category": name} if name else {}}
    if kind in (categories.INTERESTED, categories.MEETING_REQUEST):
        return Effect(**base, status=EnrollmentStatus.REPLIED, call=True)
    if kind == categories.NOT_INTERESTED:
        return Effect(**base, status=EnrollmentStatus.REPLIED)
    if kind == categories.DO_NOT_CONTACT:
        # The same path as LEAD_UNSUBSCRIBED (Changes.unsubscribes): one opt-out policy for both.
        return Effect(**base, status=UNSUBSCRIBE.status, unsubscribe=True)
    if kind == categories.OUT_OF_OFFICE and settings.SMARTLEAD_OUT_OF_OFFICE_PAUSE:
        last = payload.get("last_reply") or payload.get("lastReply")
        last = last if isinstance(last, dict) else {}
        body = _body(last.get("email_body"))
        away = _away("", body, at, _text(last.get("message_id")), by="smartlead_category")
        return replace(away, **(base | {"note": away.note}))
    return Effect(**base)


def _away(subject: str, body: str, replied: datetime, message_id: str, *, by: str) -> Effect:
    until, stated = out_of_office.resume_at(subject, body, replied)
    note = {
        "category": "Out Of Office",
        "out_of_office_until": until.isoformat(),
        "out_of_office_by": by,
        "return_date_stated": stated,
    }
    return Effect(
        EngagementType.LEAD_CATEGORY_UPDATED,
        away_until=until,
        message_id=message_id,
        category="Out Of Office",
        note=note,
    )


def _reply_text(payload: dict[str, Any]) -> str:
    for value in (
        _dig(payload, "reply_message", "text"),
        payload.get("preview_text"),
        _dig(payload, "reply_message", "html"),
        payload.get("reply_body"),
    ):
        if _body(value):
            return _body(value)
    return ""


def _body(value: Any) -> str:
    return clean(value, 20_000) if isinstance(value, str) and value.strip() else ""


def _category(value: Any) -> tuple[str, int | None]:
    if isinstance(value, dict):
        name = _text(value.get("new_name") or value.get("name"))
        return name, campaign_id_of(value.get("new_id", value.get("id")))
    number = campaign_id_of(value)
    if number is not None:
        return "", number
    return _text(value), None


def _dig(payload: dict[str, Any], *path: str) -> Any:
    value: Any = payload
    for part in path:
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _text(value: Any) -> str:
    return clean(value.strip(), 998) if isinstance(value, str) else ""
