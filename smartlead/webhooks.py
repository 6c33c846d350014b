"""Smartlead webhook events: a payload's identity (pure parsing) and what each event does.

What Smartlead sends is described in ../shared/docs/smartlead-api.md §6: a flat JSON object keyed
by `event_type`, field names that changed over time (read the new one, fall back to the old),
numbers that are sometimes strings, no event id, duplicates and retries. The nested shape of the
older docs (`event`, `timestamp`, `lead{}`, `email{}`) is tolerated as a fallback. Applying
stored events to our rows is in applying.py.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from smartlead.api import events
from smartlead.models import IDENTITY_FIELDS, WebhookEvent

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
# A rejected body is kept up to this many characters, then a marker with the size received.
REJECTED_BODY_KEPT = 64 * 1024
# Smartlead's payloads are 4 levels deep at most; deeper JSON is refused (stored as rejected),
# so nothing we keep needs deep recursion to read or show (the admin pretty-prints bodies).
MAX_DEPTH = 32
REDACTED = "[redacted]"
_BIGINT = 2**63
_INT = 2**31
# An optional minus and 1-19 ASCII digits: not "--7", "1e3", "٣" or "+7".
_INTEGER = re.compile(r"-?[0-9]{1,19}", re.ASCII)
# Smartlead's own per-webhook secret in every body, and secrets in any URL a body quotes.
_SECRET_KEY = re.compile(r'("secret_key"\s*:\s*")(?:[^"\\]|\\.)*(")')
_URL_SECRET = re.compile(r"(?<![A-Za-z_])(token|secret)=[^&\s\"'#\\]+", re.IGNORECASE)

# Older doc pages used other names for the same events; store and act on the backend constant.
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
CAMPAIGN_FIELDS = ("campaign_id", "email_campaign_id", "campaign.id", "campaignId")
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


def redact_body(text: str, secrets: Iterable[str]) -> str:
    """The body with `secret_key`'s value, every given secret and any `token=`/`secret=` in a
    URL replaced by a marker: what we store and show of it."""
    for secret in secrets:
        if len(secret) >= 8:  # a short value would blank out ordinary text, and is no secret
            text = text.replace(secret, REDACTED)
    text = _SECRET_KEY.sub(rf"\g<1>{REDACTED}\g<2>", text)
    return _URL_SECRET.sub(rf"\g<1>={REDACTED}", text)


def clip_rejected(text: str) -> str:
    """A rejected body as kept: whole up to REJECTED_BODY_KEPT characters, else clipped."""
    if len(text) <= REJECTED_BODY_KEPT:
        return text
    size = len(text.encode("utf-8", "replace"))
    return text[:REJECTED_BODY_KEPT] + f"\n[truncated: {size} bytes received]"


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
    if depth(payload) > MAX_DEPTH:
        raise Rejected(400, f"The JSON is nested more than {MAX_DEPTH} levels deep.")
    return payload


def depth(value: Any) -> int:
    """How deeply arrays and objects nest in parsed JSON, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = (
            item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        )
        if children is None:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children)
    return deepest


def pretty(text: str) -> str:
    """A stored body indented for people; as it is when it is not JSON or nests too deeply."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return text
    if depth(value) > MAX_DEPTH:
        return text
    return json.dumps(value, indent=2, ensure_ascii=False)


def campaign_id_of(value: Any) -> int | None:
    """A campaign id from a payload field or the URL's `campaign=`; None when it is not one."""
    return _as_int(value, bound=_BIGINT)


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
    campaign_id = campaign_id_of(_first(payload, CAMPAIGN_FIELDS))
    lead_email = clean(_text(payload, EMAIL_FIELDS).lower(), 320)
    sequence_number = _as_int(_first(payload, SEQUENCE_FIELDS), bound=_INT)
    stats = payload.get("stats_id")
    usable = isinstance(stats, str | int) and not isinstance(stats, bool)
    stats_id = clean(str(stats).strip(), 128) if usable else ""
    raw_time = _first(payload, TIME_FIELDS)
    event_time = _as_time(raw_time)
    if event_type == events.LEAD_UNSUBSCRIBED and campaign_id is not None and lead_email:
        # A lead leaves a campaign once (Smartlead has no undo), and its payload carries neither
        # stats_id nor time; the reconcile pass, which cannot know when it happened, must name
        # it as the webhook does, or a late delivery would be applied a second time.
        parts = [event_type, str(campaign_id), lead_email]
        key = "lead:" + hashlib.sha256("|".join(parts).encode()).hexdigest()
    elif stats_id:
        # Scoped by campaign: a caller holding one campaign's token must not be able to
        # pre-empt (as a "duplicate") a real event of another campaign by quoting its stats_id.
        key = f"stats:{campaign_id or ''}:{stats_id}:{event_type}"
    else:
        # No stats_id: hash what identifies the event. Without any time either, the body
        # itself is part of the hash, so two different time-less events never collapse.
        when = event_time.isoformat() if event_time else clean(str(raw_time or ""), 64)
        parts = [event_type, str(campaign_id or ""), lead_email, str(sequence_number or "")]
        parts.append(when or "body:" + hashlib.sha256(raw.encode()).hexdigest())
        key = "hash:" + hashlib.sha256("|".join(parts).encode()).hexdigest()
    return Identity(event_type, campaign_id, lead_email, sequence_number, stats_id, event_time, key)


def _event_type(payload: dict[str, Any]) -> str:
    # `eventType` is how account notifications (EMAIL_ACCOUNT_DISCONNECTED, ...) name it.
    value = payload.get("event_type", payload.get("event", payload.get("eventType")))
    if value is None:
        raise Rejected(400, "The JSON object has no event_type.")
    if not isinstance(value, str) or not value.strip():
        raise Rejected(400, "event_type must be a non-empty string.")
    name = clean(value.strip().upper(), 64)
    return events.ALIASES.get(name, name)


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
    """An integer from an int, an integral float or a string of digits; None if out of range.

    Anything else (booleans, "--7", "1e309", NaN, infinity) is no number: None, never a raise,
    so a strange field can only make an event unmatched, not lose its delivery."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        value = int(value) if value.is_integer() else None  # NaN and infinities are not
    elif isinstance(value, str):
        text = value.strip()
        value = int(text) if _INTEGER.fullmatch(text) else None
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


# --- What an event says, for its engagement's metadata ------------------------------


def metadata(event: WebhookEvent, payload: dict[str, Any]) -> dict[str, Any]:
    """The engagement's metadata: every Smartlead id we have, plus what the event is about."""
    reply = event.event_type == events.EMAIL_REPLY
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
            payload,
            ("reply_message.text", "preview_text", "reply_body", "reply.body"),
            limit=500,
        ),
        # Who wrote it: the lead, an alias, or a colleague (the lead of record is the event's
        # lead email, `sl_lead_email`); SameCompany/DifferentCompany/Unknown says which.
        "replied_from": _text(payload, ("leadCorrespondence.replyReceivedFrom", "to_email")),
        "replied_company": _text(payload, ("leadCorrespondence.repliedCompanyDomain",), limit=64),
    }


def _bounce_metadata(payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "bounce_message_id": _text(
            payload, ("bounce_message.message_id", "bounce_reply_message_id")
        ),
        "bounce_preview": _text(
            payload, ("bounce_message.text", "bounce_reply_email_preview"), limit=500
        ),
        "bounce_reason": _text(payload, ("bounce_reason",), limit=500),
        "bounce_type": _text(payload, ("bounce_type",), limit=64),
        "sender_originated": sender_originated(payload) or None,
    }


def sender_originated(payload: dict[str, Any]) -> bool:
    """A bounce caused by the SDR's own mailbox (its SMTP failed), not by the lead's address."""
    flag = payload.get("is_sender_originated_bounce")
    return flag is True or (isinstance(flag, str) and flag.strip().lower() == "true")


def _click_metadata(payload: dict[str, Any]) -> dict[str, Any]:
    """The clicked links from every shape seen: `link_clicked` (a list or one string),
    `link_details` (objects with `url`, or one object) and `link.url`."""
    found: list[Any] = []
    for value in (payload.get("link_clicked"), payload.get("link_details"), payload.get("link")):
        for item in value if isinstance(value, list) else [value]:
            found.append(item.get("url") if isinstance(item, dict) else item)
    links = [clean(link, 2000) for link in found if isinstance(link, str) and link.strip()]
    return {"link_clicked": list(dict.fromkeys(links))[:20]}


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
    events.EMAIL_REPLY: _reply_metadata,
    events.EMAIL_BOUNCE: _bounce_metadata,
    events.EMAIL_LINK_CLICK: _click_metadata,
    events.LEAD_CATEGORY_UPDATED: _category_metadata,
}
