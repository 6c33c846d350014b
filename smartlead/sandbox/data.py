"""What the Smartlead sandbox stores, how it checks request bodies and how it renders replies.

Plain data and pure functions for the route handlers in state.py: each follows the
integrators' live findings in the shared smartlead-api.md, not Smartlead's doc examples.
"""

import re
import threading
import uuid
import zoneinfo
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from smartlead.api.events import KNOWN as KNOWN_EVENTS

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
HOUR = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
LEAD_FIELDS = frozenset(
    "email first_name last_name phone_number company_name website location linkedin_profile "
    "company_url custom_fields".split()
)
LEAD_SETTINGS = frozenset(
    "ignore_global_block_list ignore_unsubscribe_list ignore_duplicate_leads_in_other_campaign "
    "ignore_community_bounce_list return_lead_ids".split()
)
CAMPAIGN_SETTINGS = frozenset(
    "name track_settings stop_lead_settings unsubscribe_text send_as_plain_text force_plain_text "
    "follow_up_percentage client_id enable_ai_esp_matching auto_pause_domain_leads_on_reply "
    "bounce_autopause_threshold domain_level_rate_limit add_unsubscribe_tag "
    "ai_categorisation_options out_of_office_detection_settings".split()
)
TRACK_SETTINGS = ("DONT_TRACK_EMAIL_OPEN", "DONT_TRACK_LINK_CLICK", "DONT_TRACK_REPLY_TO_AN_EMAIL")
STOP_SETTINGS = ("REPLY_TO_AN_EMAIL", "CLICK_ON_A_LINK", "OPEN_AN_EMAIL")
SCHEDULE_REQUIRED = ("timezone", "days_of_the_week", "start_hour", "end_hour")
SCHEDULE_FIELDS = frozenset((*SCHEDULE_REQUIRED, "min_time_btw_emails", "max_new_leads_per_day"))
CATEGORIES = frozenset(
    ["Interested", "Meeting Request", "Not Interested", "Do Not Contact", "Information Request"]
    + ["Out Of Office", "Wrong Person"]
)
# Add-leads replies that prove nothing about any lead; the leads are still imported.
ODD_REPLIES: dict[str, object] = {
    "empty_object": {},
    "empty_body": None,
    "not_ok": {"ok": False},
    "docs_shape": {"success": True, "message": "Leads added", "added_count": 0, "skipped_count": 0},
    "counters_only": "counters_only",  # the live counters, never the per-lead map
}
STATUS_WRITES = {"START": "ACTIVE", "PAUSED": "PAUSED", "STOPPED": "STOPPED"}


class ApiError(Exception):
    """An answer other than 200: the status, the JSON (or HTML) body and any extra headers."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None):
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}


def joi(message: str, status: int = 400) -> ApiError:
    """Smartlead's validator (Joi/Boom) shape: the useful text is in `message`."""
    return ApiError(status, {"statusCode": status, "error": "Bad Request", "message": message})


def legacy(message: str, status: int = 400) -> ApiError:
    """The older routes' shape, `error` as a bare string."""
    return ApiError(status, {"error": message})


def timestamp() -> str:
    return datetime.now(UTC).isoformat()


@dataclass
class CampaignState:
    id: int
    name: str
    created_at: str = field(default_factory=timestamp)
    status: str = "DRAFTED"
    sequences: list[dict] = field(default_factory=list)
    email_account_ids: list[int] = field(default_factory=list)
    schedule: dict | None = None
    settings: dict = field(default_factory=dict)
    leads: dict[str, int] = field(default_factory=dict)  # lowercased email -> lead id
    # The lead's status in this campaign (STARTED when added; PAUSED, INPROGRESS after a
    # resume, COMPLETED, STOPPED once unsubscribed), by lead id.
    lead_status: dict[int, str] = field(default_factory=dict)
    # What happened to each lead's emails (message-history rows), and its emailStatus flags.
    history: dict[int, list[dict]] = field(default_factory=dict)
    flags: dict[int, set[str]] = field(default_factory=dict)
    webhooks: dict[int, dict] = field(default_factory=dict)
    # The mailbox each lead is pinned to (the one that first wrote to it), by lead id; a lead
    # not written to yet has none (sandbox/mailboxes.py).
    lead_mailbox: dict[int, int] = field(default_factory=dict)
    sends: int = 0  # emails sent by rotation, so the next goes from the next mailbox
    # Add-leads deliveries of a lead already in the campaign (Smartlead de-duplicates them):
    # how a benchmark or test tells a lead sent twice by us from one sent once.
    arrived_again: int = 0


@dataclass
class Account:
    api_key: str
    plan: str = "pro"
    mailboxes: dict[int, dict] = field(default_factory=dict)
    unsubscribed: set[str] = field(default_factory=set)
    blocked: set[str] = field(default_factory=set)
    bounced: set[str] = field(default_factory=set)  # the account's bounce list
    lead_quota: int | None = None
    # How add-leads answers: "live" (the live API's counters), or one of the odd shapes
    # integrators have seen (ODD_REPLIES), for tests that the client never trusts them.
    add_leads_reply: str = "live"
    requests_per_minute: int | None = None
    requests_per_hour: int | None = None
    campaigns: dict[int, CampaignState] = field(default_factory=dict)
    leads: dict[str, dict] = field(default_factory=dict)  # lowercased email -> lead record
    hits: deque[float] = field(default_factory=deque)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _mailbox(raw: dict, mailbox_id: int) -> dict:
    return {
        "id": mailbox_id,
        "from_email": raw.get("from_email", f"mailbox{mailbox_id}@sandbox.test"),
        "from_name": raw.get("from_name", "Sandbox Sender"),
        "type": raw.get("type", "SMTP"),
        "message_per_day": raw.get("message_per_day", 40),
        "is_smtp_success": raw.get("is_smtp_success", True),
        "is_imap_success": raw.get("is_imap_success", True),
        "smtp_failure_error": raw.get("smtp_failure_error"),
        "imap_failure_error": raw.get("imap_failure_error"),
        "is_suspended": raw.get("is_suspended", False),
        "warmup_status": raw.get("warmup_status", "ACTIVE"),
        "warmup_reputation": raw.get("warmup_reputation", 95),
    }


def build_account(raw: dict, mailbox_ids: Iterable[int]) -> Account:
    """An Account from the JSON file's shape (see smartlead/sandbox/demo.json)."""
    ids = iter(mailbox_ids)
    boxes = [
        _mailbox(box, int(box.get("id") or next(ids))) for box in raw.get("email_accounts", [])
    ]
    return Account(
        api_key=raw["api_key"],
        plan=str(raw.get("plan", "pro")).lower(),
        mailboxes={box["id"]: box for box in boxes},
        unsubscribed={e.strip().lower() for e in raw.get("unsubscribed", [])},
        blocked={e.strip().lower().lstrip("@") for e in raw.get("blocked", [])},
        bounced={e.strip().lower() for e in raw.get("bounced", [])},
        lead_quota=raw.get("lead_quota"),
        requests_per_minute=raw.get("requests_per_minute"),
        requests_per_hour=raw.get("requests_per_hour"),
    )


def history_row(
    kind: str, stats_id: str, step: int | None, text: str, when: str, *, ours: str, lead: str
) -> dict:
    """One message-history row. `from`/`to` as integrators read them (the legacy reference puts
    the mailbox's `from` beside `history`; leads.py's route adds that too): our mailbox `ours`
    writes to the lead, a reply comes from the lead."""
    sent = kind == "SENT"
    return {
        "type": kind,
        "stats_id": stats_id,
        "message_id": f"<{uuid.uuid4().hex}@sandbox.smartlead.test>",
        "subject": "Hello" if sent else "Re: Hello",
        "email_body": f"<p>{text}</p>",
        "time": when,
        "seq_number": step,
        "from": ours if sent else lead,
        "to": lead if sent else ours,
    }


def int_param(query: dict[str, str], name: str, default: int) -> int:
    try:
        return int(query.get(name, default))
    except ValueError:
        raise joi(f'"{name}" must be a number', 422) from None


def require_object(body: Any) -> dict:
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise joi('"value" must be of type object')
    return body


def reject_unknown(body: dict, allowed: Iterable[str], prefix: str = "") -> None:
    unknown = next((key for key in body if key not in allowed), None)
    if unknown is not None:
        raise joi(f'"{prefix}{unknown}" is not allowed')


def sequence_step(step: Any, index: int) -> dict:
    where = f"sequences[{index}]"
    if not isinstance(step, dict):
        raise joi(f'"{where}" must be of type object')
    delay = (step.get("seq_delay_details") or {}).get("delay_in_days")
    if not isinstance(step.get("seq_number"), int) or step["seq_number"] < 1:
        raise joi(f'"{where}.seq_number" must be larger than or equal to 1')
    if not isinstance(delay, int) or delay < 0:
        raise joi(f'"{where}.seq_delay_details.delay_in_days" is required')
    if not isinstance(step.get("email_body"), str):
        raise joi(f'"{where}.email_body" is required')
    return {
        "id": step.get("id"),
        "seq_number": step["seq_number"],
        "seq_delay_details": {"delay_in_days": delay},
        "subject": step.get("subject") or "",
        "email_body": step["email_body"],
    }


def validated_schedule(body: dict) -> dict:
    # Required fields first, in this order: the live API answers a {schedule: {...}} wrapper
    # with '"timezone" is required', and `days` with '"days_of_the_week" is required'.
    for name in (*SCHEDULE_REQUIRED, "max_new_leads_per_day"):
        if name not in body:
            raise joi(f'"{name}" is required')
    reject_unknown(body, SCHEDULE_FIELDS | {"schedule_start_time"})
    if body["timezone"] not in _timezones():
        raise legacy(f"Invalid timezone - {body['timezone']}")
    days = body["days_of_the_week"]
    if not isinstance(days, list) or not days or any(d not in range(7) for d in days):
        raise joi('"days_of_the_week" must be an array of integers 0 to 6')
    for name in ("start_hour", "end_hour"):
        if not isinstance(body[name], str) or not HOUR.match(body[name]):
            raise legacy(f"Invalid {name}")
    if body["start_hour"] > body["end_hour"]:
        raise legacy("startHour cannot be greater that endHour")
    for name, least in (("min_time_btw_emails", 3), ("max_new_leads_per_day", 1)):
        value = body.get(name, least)
        if not isinstance(value, int) or value < least:
            raise joi(f'"{name}" must be larger than or equal to {least}')
    return dict(body)


_TIMEZONES: set[str] = set()


def _timezones() -> set[str]:
    if not _TIMEZONES:
        _TIMEZONES.update(zoneinfo.available_timezones() or {"UTC"})
    return _TIMEZONES


def check_startable(campaign: CampaignState) -> None:
    if campaign.status == "STOPPED":
        raise legacy("A STOPPED campaign cannot be started again; create a new campaign.")
    if not campaign.sequences:
        raise legacy("Campaign cannot be started: add at least one sequence step first.")
    if not campaign.email_account_ids:
        raise legacy("Campaign cannot be started: add at least one email account first.")


def validated_webhook(body: dict) -> dict:
    reject_unknown(body, ("id", "name", "webhook_url", "event_types", "categories"))
    url = body.get("webhook_url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise legacy("Invalid webhook_url")
    events = body.get("event_types")
    if not isinstance(events, list) or not events:
        raise joi('"event_types" is required')
    bad_event = next((e for e in events if e not in KNOWN_EVENTS), None)
    if bad_event is not None:
        raise legacy(f"Invalid event_types - {bad_event}")
    categories = body.get("categories", [])
    if "categories" in body and (not isinstance(categories, list) or not categories):
        raise joi('"categories" must contain at least 1 items')
    bad_category = next((c for c in categories if c not in CATEGORIES), None)
    if bad_category is not None:
        raise legacy(f"Invalid category - {bad_category}")
    return {
        "id": body.get("id"),
        "name": body.get("name") or "Webhook",
        "webhook_url": url,
        "event_types": list(events),
        "categories": list(categories),
    }


def mailbox_json(mailbox: dict, *, encoded: bool) -> dict:
    """The live shape, secrets included (base64 on the list route, plain by id), so the client's
    dropping them at its seam is exercised. As in Smartlead's reference: `warmup_reputation` is
    "95%" on the list route (`encoded`) and 95 by id; `is_suspended`, in its schema but in none
    of its examples, is only there for a suspended mailbox."""
    password = "c2FuZGJveC1wYXNzd29yZA==" if encoded else "sandbox-password"
    box_id = mailbox["id"]
    reputation = mailbox["warmup_reputation"]
    suspended = {"is_suspended": True} if mailbox["is_suspended"] else {}
    return suspended | {
        **{key: mailbox[key] for key in ("id", "from_email", "from_name", "type")},
        "user_id": 1,
        "username": mailbox["from_email"],
        "password": password,
        "imap_password": password,
        "smtp_host": "smtp.sandbox.test",
        "smtp_port": 465,
        "smtp_port_type": "SSL",
        "imap_host": "imap.sandbox.test",
        "imap_port": 993,
        "imap_port_type": "SSL",
        "is_smtp_success": mailbox["is_smtp_success"],
        "is_imap_success": mailbox["is_imap_success"],
        "smtp_failure_error": mailbox["smtp_failure_error"],
        "imap_failure_error": mailbox["imap_failure_error"],
        "message_per_day": str(mailbox["message_per_day"]),  # sometimes a string live
        "daily_sent_count": 0,
        "warmup_details": {
            "status": mailbox["warmup_status"],
            "warmup_reputation": f"{reputation}%" if encoded else reputation,
            "warmup_key_id": f"sandbox-{box_id}",
        },
    }


def campaign_json(campaign: CampaignState) -> dict:
    """GET /campaigns/{id}: a bare object, in the read vocabulary (which differs from writes)."""
    schedule = campaign.schedule or {}
    settings = campaign.settings
    return {
        "id": campaign.id,
        "user_id": 1,
        "created_at": campaign.created_at,
        "updated_at": campaign.created_at,
        "status": campaign.status,
        "name": campaign.name,
        "track_settings": [
            t.replace("DONT_TRACK_", "DONT_") for t in settings.get("track_settings", [])
        ],
        "scheduler_cron_value": {
            "tz": schedule.get("timezone"),
            "days": schedule.get("days_of_the_week", []),
            "startHour": schedule.get("start_hour"),
            "endHour": schedule.get("end_hour"),
        }
        if schedule
        else None,
        "min_time_btwn_emails": schedule.get("min_time_btw_emails"),
        "max_leads_per_day": schedule.get("max_new_leads_per_day"),
        "stop_lead_settings": settings.get("stop_lead_settings"),
        "send_as_plain_text": settings.get("send_as_plain_text", False),
        "client_id": None,
    }


def snapshot(account: Account, campaign: CampaignState) -> dict:
    """One campaign's whole state as plain dicts, for tests (the caller holds the lock)."""
    return {
        "id": campaign.id,
        "name": campaign.name,
        "status": campaign.status,
        "sequences": [dict(step) for step in campaign.sequences],
        "email_account_ids": list(campaign.email_account_ids),
        "schedule": dict(campaign.schedule) if campaign.schedule else None,
        "settings": dict(campaign.settings),
        "webhooks": [dict(hook) for hook in campaign.webhooks.values()],
        "leads": [
            dict(account.leads[address])
            | {
                "status": campaign.lead_status.get(lead_id),
                "email_account_id": campaign.lead_mailbox.get(lead_id),
                "sent": [
                    row["seq_number"]
                    for row in campaign.history.get(lead_id, [])
                    if row["type"] == "SENT"
                ],
            }
            for address, lead_id in campaign.leads.items()
        ],
    }


def paging(query: dict) -> tuple[int, int]:
    """offset/limit as the live API takes them: limit at most 100 (422 above)."""
    offset, limit = int_param(query, "offset", 0), int_param(query, "limit", 100)
    if limit > 100:
        raise legacy("limit must be less than or equal to 100", 422)
    return max(0, offset), max(0, limit)
