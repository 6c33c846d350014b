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


COUNT_KEYS = (
    "upload_count",
    "total_leads",
    "already_added_to_campaign",
    "duplicate_count",
    "invalid_email_count",
    "block_count",
    "bounce_count",
    "unsubscribed_leads",
    "is_lead_limit_exhausted",
    "lead_import_stopped_count",
)


@dataclass(frozen=True)
class AddLeadsResult:
    submitted: int
    added: int
    already_in_campaign: int
    duplicates: int
    invalid_count: int
    invalid_emails: tuple[str, ...]
    blocked: int
    unsubscribed: tuple[str, ...]
    lead_limit_exhausted: bool
    counts: dict[str, Any]

    def outcome_for(self, email: str) -> str:
        """What happened to one submitted lead, as far as Smartlead's counts can tell.

        Smartlead lists invalid and unsubscribed addresses but only counts the rest, so a lead
        not listed is in the campaign (new or already there) unless the plan's lead quota ran
        out before every lead was accounted for.
        """
        address = email.strip().lower()
        if address in {e.lower() for e in self.invalid_emails}:
            return "invalid"
        if address in {e.lower() for e in self.unsubscribed}:
            return "unsubscribed"
        if self.lead_limit_exhausted and self._accounted_for() < self.submitted:
            return "not_imported"
        return "added_or_existing"

    def _accounted_for(self) -> int:
        listed = self.invalid_count + len(self.unsubscribed) + self.blocked
        return self.added + self.already_in_campaign + self.duplicates + listed


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

    def __repr__(self) -> str:
        url = redact(self.webhook_url)
        return (
            f"Webhook(id={self.id!r}, name={self.name!r}, webhook_url={url!r}, "
            f"event_types={self.event_types!r})"
        )


# --- Defensive parsing -------------------------------------------------------------------
def _int(value: Any) -> int | None:
    """Smartlead sends some numbers as strings ("42"); anything unparsable becomes None."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        return int(value) if not isinstance(value, str) else int(float(value.strip()))
    except (TypeError, ValueError, OverflowError):
        return None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def _rows(payload: Any) -> list[dict]:
    """A list of objects, whether bare or wrapped as {data: [...]}."""
    if isinstance(payload, dict) and isinstance(payload.get("data"), list):
        payload = payload["data"]
    return [row for row in payload if isinstance(row, dict)] if isinstance(payload, list) else []


def _object(payload: Any) -> dict:
    """One object, whether bare, wrapped as {data: {...}} or as a one-element array."""
    if isinstance(payload, list):
        payload = payload[0] if payload else {}
    if isinstance(payload, dict) and "id" not in payload and isinstance(payload.get("data"), dict):
        payload = payload["data"]
    return payload if isinstance(payload, dict) else {}


def _email_account(row: dict) -> EmailAccount | None:
    """Keeps only the fields the product uses: passwords and SMTP/IMAP details stop here."""
    account_id = _int(row.get("id"))
    if account_id is None:
        return None
    warmup = row.get("warmup_details") if isinstance(row.get("warmup_details"), dict) else {}
    return EmailAccount(
        id=account_id,
        from_email=_str(row.get("from_email")) or "",
        from_name=_str(row.get("from_name")) or "",
        type=(_str(row.get("type")) or "").upper(),
        smtp_ok=_bool(row.get("is_smtp_success")),
        imap_ok=_bool(row.get("is_imap_success")),
        daily_limit=_int(row.get("message_per_day")),
        warmup_status=_str(warmup.get("status")) or _str(row.get("warmup_status")),
    )


def _campaign(row: dict, default_name: str = "", default_status: str | None = None) -> Campaign:
    return Campaign(
        id=_int(row.get("id")) or 0,
        name=_str(row.get("name")) or default_name,
        status=_str(row.get("status")) or default_status,
    )


def _webhook(row: dict) -> Webhook:
    events = row.get("event_types")
    if not isinstance(events, list) and isinstance(row.get("event_type_map"), dict):
        events = [name for name, on in row["event_type_map"].items() if on]
    return Webhook(
        id=_int(row.get("id")) or 0,
        name=_str(row.get("name")) or "",
        webhook_url=_str(row.get("webhook_url")) or "",
        event_types=tuple(e for e in events or () if isinstance(e, str)),
    )


def _emails(values: Any) -> tuple[str, ...]:
    """Addresses listed either as strings or as objects carrying an email field."""
    found = []
    for value in values if isinstance(values, list) else ():
        address = value.get("email") if isinstance(value, dict) else value
        if isinstance(address, str):
            found.append(address)
    return tuple(found)


def _add_leads_result(body: dict, submitted: int) -> AddLeadsResult:
    return AddLeadsResult(
        submitted=submitted,
        # total_leads is what the live API reports as newly added; upload_count is what it read.
        added=_int(body.get("total_leads")) or 0,
        already_in_campaign=_int(body.get("already_added_to_campaign")) or 0,
        duplicates=_int(body.get("duplicate_count")) or 0,
        invalid_count=_int(body.get("invalid_email_count")) or 0,
        invalid_emails=_emails(body.get("invalid_emails")),
        blocked=_int(body.get("block_count")) or 0,
        unsubscribed=_emails(body.get("unsubscribed_leads")),
        lead_limit_exhausted=_bool(body.get("is_lead_limit_exhausted")),
        counts={key: body[key] for key in COUNT_KEYS if key in body},
    )


def _found_lead(body: dict) -> FoundLead | None:
    lead_id = _int(body.get("id"))
    if lead_id is None:
        return None
    campaigns = body.get("lead_campaign_data")
    campaign_ids = (_int(row.get("campaign_id")) for row in _rows(campaigns))
    return FoundLead(
        id=lead_id,
        email=_str(body.get("email")) or "",
        is_unsubscribed=_bool(body.get("is_unsubscribed")),
        campaign_ids=tuple(cid for cid in campaign_ids if cid is not None),
    )
