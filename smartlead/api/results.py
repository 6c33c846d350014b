"""What Smartlead answers, as small typed results, and the defensive parsing that makes them.

Smartlead's bodies come as bare arrays or objects, with numbers sometimes as strings and fields
missing (../shared/docs/smartlead-api.md). Mailbox passwords and SMTP/IMAP secrets in email
account rows are dropped here: only the fields below ever leave this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from outboundhq.logs import redact


# --- Results -----------------------------------------------------------------------------
@dataclass(frozen=True)
class EmailAccount:
    id: int
    from_email: str
    from_name: str
    type: str
    smtp_ok: bool
    imap_ok: bool
    daily_limit: int | None
    warmup_status: str | None
    # Health beyond SMTP/IMAP. `is_suspended` is in Smartlead's schema but in none of its
    # examples (missing: not suspended); `warmup_reputation` is "95%" on the list route and 95
    # by id (None: no warmup data).
    suspended: bool = False
    warmup_reputation: float | None = None
    smtp_error: str | None = None
    imap_error: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Campaign:
    id: int
    name: str
    status: str | None


@dataclass(frozen=True)
class SequenceStepSpec:
    seq_number: int
    delay_in_days: int
    subject: str
    email_body: str


@dataclass(frozen=True)
class Lead:
    email: str
    first_name: str | None = None
    last_name: str | None = None
    company_name: str | None = None
    phone_number: str | None = None
    custom_fields: Mapping[str, str] = field(default_factory=dict)

    def as_payload(self) -> dict[str, Any]:
        """The lead_list item: no None fields, since one bad key fails the whole request."""
        payload = {
            "email": self.email,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "company_name": self.company_name,
            "phone_number": self.phone_number,
        }
        payload = {key: value for key, value in payload.items() if value is not None}
        custom = {str(k): str(v) for k, v in self.custom_fields.items() if v is not None}
        if custom:
            payload["custom_fields"] = custom
        return payload


@dataclass(frozen=True)
class FoundLead:
    id: int
    email: str
    is_unsubscribed: bool
    campaign_ids: tuple[int, ...]


@dataclass(frozen=True, repr=False)
class Webhook:
    id: int
    name: str
    webhook_url: str
    event_types: tuple[str, ...]
    categories: tuple[str, ...] = ()  # the category names LEAD_CATEGORY_UPDATED is filtered by

    def __repr__(self) -> str:
        url = redact(self.webhook_url)
        return (
            f"Webhook(id={self.id!r}, name={self.name!r}, webhook_url={url!r}, "
            f"event_types={self.event_types!r}, categories={self.categories!r})"
        )


@dataclass(frozen=True)
class Category:
    """A lead category of the account (`GET /leads/fetch-categories`); ids are the account's."""

    id: int
    name: str
    sentiment: str = ""


# --- Defensive parsing -------------------------------------------------------------------
def as_int(value: Any) -> int | None:
    """Smartlead sends some numbers as strings ("42"); anything unparsable becomes None."""
    if type(value) is int:  # the usual case, first: this runs for every lead id in a reply
        return value
    if isinstance(value, bool) or value is None:
        return None
    try:
        return int(value) if not isinstance(value, str) else int(float(value.strip()))
    except (TypeError, ValueError, OverflowError):
        return None


def as_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def rows_of(payload: Any) -> list[dict]:
    """A list of objects, whether bare or wrapped as {data: [...]}."""
    if isinstance(payload, dict) and isinstance(payload.get("data"), list):
        payload = payload["data"]
    return [row for row in payload if isinstance(row, dict)] if isinstance(payload, list) else []


def object_of(payload: Any) -> dict:
    """One object, whether bare, wrapped as {data: {...}} or as a one-element array."""
    if isinstance(payload, list):
        payload = payload[0] if payload else {}
    if isinstance(payload, dict) and "id" not in payload and isinstance(payload.get("data"), dict):
        payload = payload["data"]
    return payload if isinstance(payload, dict) else {}


def email_account_from(row: dict) -> EmailAccount | None:
    """Keeps only the fields the product uses: passwords and SMTP/IMAP details stop here."""
    account_id = as_int(row.get("id"))
    if account_id is None:
        return None
    warmup = row.get("warmup_details") if isinstance(row.get("warmup_details"), dict) else {}
    return EmailAccount(
        id=account_id,
        from_email=as_str(row.get("from_email")) or "",
        from_name=as_str(row.get("from_name")) or "",
        type=(as_str(row.get("type")) or "").upper(),
        smtp_ok=as_bool(row.get("is_smtp_success")),
        imap_ok=as_bool(row.get("is_imap_success")),
        daily_limit=as_int(row.get("message_per_day")),
        warmup_status=as_str(warmup.get("status")) or as_str(row.get("warmup_status")),
        suspended=as_bool(row.get("is_suspended")),
        warmup_reputation=percent(warmup.get("warmup_reputation")),
        smtp_error=short_text(row.get("smtp_failure_error")),
        imap_error=short_text(row.get("imap_failure_error")),
    )


def percent(value: Any) -> float | None:
    """A percentage sent as "95%", "95", 95 or 95.5; None when missing or unreadable."""
    if isinstance(value, str):
        value = value.strip().removesuffix("%").strip()
    if isinstance(value, bool) or value in (None, ""):
        return None
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return None


def short_text(value: Any, limit: int = 300) -> str | None:
    """Smartlead's error words about a mailbox, redacted and cut (they can quote a server reply)."""
    if not isinstance(value, str) or not value.strip():
        return None
    return redact(value.strip())[:limit]


def campaign_from(row: dict, default_name: str = "", default_status: str | None = None) -> Campaign:
    return Campaign(
        id=as_int(row.get("id")) or 0,
        name=as_str(row.get("name")) or default_name,
        status=as_str(row.get("status")) or default_status,
    )


def webhook_from(row: dict) -> Webhook:
    events = row.get("event_types")
    if not isinstance(events, list) and isinstance(row.get("event_type_map"), dict):
        events = [name for name, on in row["event_type_map"].items() if on]
    return Webhook(
        id=as_int(row.get("id")) or 0,
        name=as_str(row.get("name")) or "",
        webhook_url=as_str(row.get("webhook_url")) or "",
        event_types=tuple(e for e in events or () if isinstance(e, str)),
        categories=tuple(c for c in row.get("categories") or () if isinstance(c, str)),
    )


def category_from(row: dict) -> Category | None:
    category_id, name = as_int(row.get("id")), as_str(row.get("name"))
    if category_id is None or not name or not name.strip():
        return None
    return Category(category_id, name.strip(), as_str(row.get("sentiment_type")) or "")


def found_lead_from(body: dict) -> FoundLead | None:
    lead_id = as_int(body.get("id"))
    if lead_id is None:
        return None
    campaigns = body.get("lead_campaign_data")
    campaign_ids = (as_int(row.get("campaign_id")) for row in rows_of(campaigns))
    return FoundLead(
        id=lead_id,
        email=as_str(body.get("email")) or "",
        is_unsubscribed=as_bool(body.get("is_unsubscribed")),
        campaign_ids=tuple(cid for cid in campaign_ids if cid is not None),
    )


@dataclass(frozen=True)
class CampaignLead:
    """One row of a campaign's lead list: Smartlead's lead id and its status in the campaign."""

    id: int
    email: str
    status: str  # STARTED, INPROGRESS, COMPLETED, PAUSED, STOPPED, BLOCKED
    is_unsubscribed: bool = False
    category_id: int | None = None  # the account's id of the lead's category; None: none


@dataclass(frozen=True)
class HistoryMessage:
    """One message of a lead's history in a campaign (`type` SENT or REPLY)."""

    type: str
    stats_id: str
    message_id: str
    subject: str
    body: str
    time: str
    sequence_number: int | None = None


def campaign_lead_from(row: dict) -> CampaignLead | None:
    lead = row.get("lead") if isinstance(row.get("lead"), dict) else {}
    lead_id = as_int(lead.get("id"))  # the nested lead id, not campaign_lead_map_id
    email = as_str(lead.get("email"))
    if lead_id is None or not email:
        return None
    status = as_str(row.get("status")) or as_str(row.get("lead_status")) or ""
    return CampaignLead(
        lead_id,
        email.strip().lower(),
        status.upper(),
        as_bool(lead.get("is_unsubscribed")),
        as_int(row.get("lead_category_id")),
    )


def history_message_from(row: dict) -> HistoryMessage:
    return HistoryMessage(
        type=(as_str(row.get("type")) or "").upper(),
        stats_id=as_str(row.get("stats_id")) or "",
        message_id=as_str(row.get("message_id")) or "",
        subject=as_str(row.get("subject")) or "",
        body=as_str(row.get("email_body")) or "",
        time=as_str(row.get("time")) or "",
        sequence_number=as_int(row.get("seq_number") or row.get("sequence_number")),
    )
