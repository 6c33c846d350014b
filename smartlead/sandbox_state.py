"""The sandbox's Smartlead accounts and the rules of each v1 route, with no HTTP and no Django.

Each route is a SandboxState method taking (account, query, body, **path ids) and returning the
JSON body, or raising ApiError. Behaviour follows the integrators' live findings in the shared
smartlead-api.md, not Smartlead's doc examples. Every account has its own lock, so 1,000 keys
never queue behind one another; work per request is proportional to its batch.
"""

from __future__ import annotations

import itertools
import re
import threading
import time
import zoneinfo
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

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
EVENT_TYPES = frozenset(
    "EMAIL_SENT FIRST_EMAIL_SENT EMAIL_OPEN EMAIL_LINK_CLICK EMAIL_REPLY EMAIL_BOUNCE "
    "LEAD_UNSUBSCRIBED LEAD_CATEGORY_UPDATED".split()
)
CATEGORIES = frozenset(
    ["Interested", "Meeting Request", "Not Interested", "Do Not Contact", "Information Request"]
    + ["Out Of Office", "Wrong Person"]
)
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


def _now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass
class CampaignState:
    id: int
    name: str
    created_at: str = field(default_factory=_now)
    status: str = "DRAFTED"
    sequences: list[dict] = field(default_factory=list)
    email_account_ids: list[int] = field(default_factory=list)
    schedule: dict | None = None
    settings: dict = field(default_factory=dict)
    leads: dict[str, int] = field(default_factory=dict)  # lowercased email -> lead id
    webhooks: dict[int, dict] = field(default_factory=dict)


@dataclass
class Account:
    api_key: str
    plan: str = "pro"
    mailboxes: dict[int, dict] = field(default_factory=dict)
    unsubscribed: set[str] = field(default_factory=set)
    blocked: set[str] = field(default_factory=set)
    lead_quota: int | None = None
    requests_per_minute: int | None = None
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
        "warmup_status": raw.get("warmup_status", "ACTIVE"),
    }


def build_account(raw: dict, mailbox_ids: Iterable[int]) -> Account:
    """An Account from the JSON file's shape (see smartlead/sandbox_demo.json)."""
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
        lead_quota=raw.get("lead_quota"),
        requests_per_minute=raw.get("requests_per_minute"),
    )


def _int_param(query: dict[str, str], name: str, default: int) -> int:
    try:
        return int(query.get(name, default))
    except ValueError:
        raise joi(f'"{name}" must be a number', 422) from None


def _require_object(body: Any) -> dict:
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise joi('"value" must be of type object')
    return body


def _reject_unknown(body: dict, allowed: Iterable[str], prefix: str = "") -> None:
    unknown = next((key for key in body if key not in allowed), None)
    if unknown is not None:
        raise joi(f'"{prefix}{unknown}" is not allowed')


class SandboxState:
    """Every key's account, and the per-key rate limit (a sliding window plus a burst window)."""

    def __init__(
        self,
        accounts: Iterable[Account] = (),
        *,
        requests_per_minute: int = 60,
        window: float = 60.0,
        burst: int = 10,
        burst_window: float = 2.0,
        max_leads_per_request: int = 350,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.accounts = {account.api_key: account for account in accounts}
        self.requests_per_minute, self.window = requests_per_minute, window
        self.burst, self.burst_window = burst, burst_window
        self.max_leads_per_request = max_leads_per_request
        self.clock = clock
        self._campaign_ids = itertools.count(3001)
        self._lead_ids = itertools.count(3_000_000_001)  # real lead ids exceed 32 bits
        self._webhook_ids = itertools.count(501)
        self._step_ids = itertools.count(9001)

    # --- Gatekeeping ---
    def authenticate(self, api_key: str | None) -> Account:
        account = self.accounts.get(api_key or "")
        if account is None:
            raise ApiError(401, {"message": "Invalid API Key"})
        if account.plan == "basic":
            raise ApiError(403, {"message": "Access denied"})
        return account

    def admit(self, account: Account) -> dict[str, str]:
        """Count one request against the key, or refuse it with Smartlead's documented 429."""
        limit = account.requests_per_minute or self.requests_per_minute
        now = self.clock()
        with account.lock:
            hits = account.hits
            while hits and hits[0] <= now - self.window:
                hits.popleft()
            wait = 0.0
            if len(hits) >= limit:
                wait = hits[-limit] + self.window - now
            if len(hits) >= self.burst and hits[-self.burst] > now - self.burst_window:
                wait = max(wait, hits[-self.burst] + self.burst_window - now)
            if wait <= 0:
                hits.append(now)
            reset_in = (hits[0] + self.window - now) if hits else self.window
        headers = {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(max(0, limit - len(hits))),
            "X-RateLimit-Reset": str(int(time.time() + reset_in)),
        }
        if wait > 0:
            seconds = max(1, int(wait + 0.999))
            message = f"Too many requests. Please retry after {seconds} seconds."
            error = {"code": "RATE_LIMIT_EXCEEDED", "message": message, "retry_after": seconds}
            raise ApiError(429, {"error": error}, headers | {"Retry-After": str(seconds)})
        return headers

    def _campaign(self, account: Account, campaign_id: str) -> CampaignState:
        campaign = account.campaigns.get(int(campaign_id))
        if campaign is None:
            raise legacy("Campaign not found - Invalid campaign_id.", 404)
        return campaign

    # --- Email accounts ---
    def list_mailboxes(self, account: Account, query: dict, body: Any) -> list[dict]:
        offset, limit = _int_param(query, "offset", 0), _int_param(query, "limit", 100)
        if limit > 100:
            raise legacy("limit must be less than or equal to 100", 422)
        ids = sorted(account.mailboxes)[max(0, offset) : max(0, offset) + max(0, limit)]
        return [mailbox_json(account.mailboxes[i], encoded=True) for i in ids]

    def get_mailbox(self, account: Account, query: dict, body: Any, mailbox_id: str) -> dict:
        mailbox = account.mailboxes.get(int(mailbox_id))
        if mailbox is None:
            raise legacy("Email account not found", 404)
        return mailbox_json(mailbox, encoded=False)

    # --- Campaigns ---
    def create_campaign(self, account: Account, query: dict, body: Any) -> dict:
        body = _require_object(body)
        _reject_unknown(body, ("name", "client_id"))
        campaign = CampaignState(next(self._campaign_ids), body.get("name") or "Untitled Campaign")
        with account.lock:
            account.campaigns[campaign.id] = campaign
        return {
            "ok": True,
            "id": campaign.id,
            "name": campaign.name,
            "created_at": campaign.created_at,
        }

    def list_campaigns(self, account: Account, query: dict, body: Any) -> list[dict]:
        with account.lock:
            campaigns = list(account.campaigns.values())
        return [campaign_json(c) for c in reversed(campaigns)]  # newest first, like the live API

    def get_campaign(self, account: Account, query: dict, body: Any, campaign_id: str) -> dict:
        return campaign_json(self._campaign(account, campaign_id))

    def save_sequences(self, account: Account, query: dict, body: Any, campaign_id: str) -> dict:
        campaign = self._campaign(account, campaign_id)
        steps = _require_object(body).get("sequences")
        if not isinstance(steps, list):
            raise joi('"sequences" is required')
        saved = [_sequence_step(step, i) for i, step in enumerate(steps)]
        with account.lock:
            if campaign.status == "ACTIVE":
                raise legacy("Cannot update sequences of an ACTIVE campaign; pause it first.")
            for step in saved:
                step["id"] = step["id"] or next(self._step_ids)
            campaign.sequences = saved
        return {"ok": True, "data": "success"}

    def attach_mailboxes(self, account: Account, query: dict, body: Any, campaign_id: str) -> dict:
        campaign = self._campaign(account, campaign_id)
        ids = _require_object(body).get("email_account_ids")
        if not isinstance(ids, list) or not ids:
            raise joi('"email_account_ids" is required')
        foreign = [i for i in ids if not isinstance(i, int) or i not in account.mailboxes]
        if foreign:
            raise legacy(f"Email account not found - {foreign[0]}")
        with account.lock:
            campaign.email_account_ids = sorted(set(campaign.email_account_ids) | set(ids))
        return {"ok": True}

    def set_schedule(self, account: Account, query: dict, body: Any, campaign_id: str) -> dict:
        campaign = self._campaign(account, campaign_id)
        schedule = _validated_schedule(_require_object(body))
        with account.lock:
            campaign.schedule = schedule
        return {"ok": True}

    def update_settings(self, account: Account, query: dict, body: Any, campaign_id: str) -> dict:
        campaign = self._campaign(account, campaign_id)
        body = _require_object(body)
        _reject_unknown(body, CAMPAIGN_SETTINGS)
        track = body.get("track_settings", [])
        if not isinstance(track, list) or any(t not in TRACK_SETTINGS for t in track):
            raise joi(f'"track_settings" must be an array of {", ".join(TRACK_SETTINGS)}')
        if body.get("stop_lead_settings", STOP_SETTINGS[0]) not in STOP_SETTINGS:
            raise joi(f'"stop_lead_settings" must be one of [{", ".join(STOP_SETTINGS)}]')
        with account.lock:
            campaign.settings.update(body)
            if "name" in body:
                campaign.name = body["name"]
        return {"ok": True}

    def set_status(self, account: Account, query: dict, body: Any, campaign_id: str) -> dict:
        campaign = self._campaign(account, campaign_id)
        wanted = _require_object(body).get("status")
        if wanted not in STATUS_WRITES:
            raise legacy("Allowed values are - START,STOPPED,PAUSED")
        with account.lock:
            if wanted == "START":
                _check_startable(campaign)
            campaign.status = STATUS_WRITES[wanted]
        return {"ok": True}

    # --- Leads ---
    def add_leads(self, account: Account, query: dict, body: Any, campaign_id: str) -> dict:
        campaign = self._campaign(account, campaign_id)
        body = _require_object(body)
        leads, options = self._validated_leads(body)
        with account.lock:
            return _import(account, campaign, leads, options, self._lead_ids)

    def _validated_leads(self, body: dict) -> tuple[list[dict], dict]:
        _reject_unknown(body, ("lead_list", "settings"))
        leads, options = body.get("lead_list"), body.get("settings") or {}
        if not isinstance(leads, list):
            raise joi('"lead_list" is required')
        if not leads:
            raise joi('"lead_list" must contain at least 1 items')
        if len(leads) > self.max_leads_per_request:
            limit = self.max_leads_per_request
            raise ApiError(
                422,
                {
                    "error": f"lead_list cannot exceed {limit} leads per request",
                    "provided_count": len(leads),
                    "max_allowed": limit,
                },
            )
        _reject_unknown(options, LEAD_SETTINGS, "settings.")
        for index, lead in enumerate(leads):
            if not isinstance(lead, dict):
                raise joi(f'"lead_list[{index}]" must be of type object')
            _reject_unknown(lead, LEAD_FIELDS, f"lead_list[{index}].")
            if not isinstance(lead.get("custom_fields", {}), dict):
                raise joi(f'"lead_list[{index}].custom_fields" must be of type object')
        return leads, options

    def find_lead(self, account: Account, query: dict, body: Any) -> dict:
        address = query.get("email", "").strip().lower()
        if not address:
            raise legacy("email is required", 422)
        with account.lock:
            lead = account.leads.get(address)
            if lead is None:
                return {}  # a missing lead is a 200 with {}, not a 404
            data = [
                {
                    "campaign_lead_map_id": lead["id"] + campaign.id,
                    "campaign_id": campaign.id,
                    "campaign_name": campaign.name,
                    "client_id": None,
                    "client_email": None,
                    "lead_category_id": None,
                }
                for campaign in account.campaigns.values()
                if address in campaign.leads
            ]
        unsubscribed = address in account.unsubscribed
        return lead | {"is_unsubscribed": unsubscribed, "lead_campaign_data": data}

    # --- Webhooks ---
    def list_webhooks(self, account: Account, query: dict, body: Any, campaign_id: str) -> list:
        campaign = self._campaign(account, campaign_id)
        with account.lock:
            return [dict(hook) for hook in campaign.webhooks.values()]

    def save_webhook(self, account: Account, query: dict, body: Any, campaign_id: str) -> dict:
        campaign = self._campaign(account, campaign_id)
        hook = _validated_webhook(_require_object(body))
        with account.lock:
            hook_id = hook.pop("id") or next(self._webhook_ids)
            old = campaign.webhooks.get(hook_id)
            if body.get("id") is not None and old is None:
                raise legacy("Webhook not found", 404)
            created = old["created_at"] if old else _now()
            campaign.webhooks[hook_id] = hook | {
                "id": hook_id,
                "email_campaign_id": campaign.id,
                "created_at": created,
                "updated_at": _now(),
            }
        return {"ok": True, "id": hook_id}

    def delete_webhook(self, account: Account, query: dict, body: Any, campaign_id: str) -> dict:
        campaign = self._campaign(account, campaign_id)
        with account.lock:
            if campaign.webhooks.pop(_require_object(body).get("id"), None) is None:
                raise legacy("Webhook not found", 404)
        return {"ok": True}


def _sequence_step(step: Any, index: int) -> dict:
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


def _validated_schedule(body: dict) -> dict:
    # Required fields first, in this order: the live API answers a {schedule: {...}} wrapper
    # with '"timezone" is required', and `days` with '"days_of_the_week" is required'.
    for name in (*SCHEDULE_REQUIRED, "max_new_leads_per_day"):
        if name not in body:
            raise joi(f'"{name}" is required')
    _reject_unknown(body, SCHEDULE_FIELDS | {"schedule_start_time"})
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


def _check_startable(campaign: CampaignState) -> None:
    if campaign.status == "STOPPED":
        raise legacy("A STOPPED campaign cannot be started again; create a new campaign.")
    if not campaign.sequences:
        raise legacy("Campaign cannot be started: add at least one sequence step first.")
    if not campaign.email_account_ids:
        raise legacy("Campaign cannot be started: add at least one email account first.")


def _validated_webhook(body: dict) -> dict:
    _reject_unknown(body, ("id", "name", "webhook_url", "event_types", "categories"))
    url = body.get("webhook_url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise legacy("Invalid webhook_url")
    events = body.get("event_types")
    if not isinstance(events, list) or not events:
        raise joi('"event_types" is required')
    bad_event = next((e for e in events if e not in EVENT_TYPES), None)
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


def _import(
    account: Account,
    campaign: CampaignState,
    leads: list[dict],
    options: dict,
    lead_ids: Iterator[int],
) -> dict:
    """Add one validated batch to a campaign (the caller holds the account lock)."""
    counts = dict.fromkeys(("added", "already", "duplicates", "blocked", "stopped"), 0)
    invalid: list[str] = []
    unsubscribed: list[str] = []
    added_ids: list[int] = []
    seen: set[str] = set()
    for lead in leads:
        raw = lead.get("email")
        address = raw.strip().lower() if isinstance(raw, str) else ""
        if not EMAIL.match(address):
            invalid.append(raw if isinstance(raw, str) else "")
            continue
        if address in seen:
            counts["duplicates"] += 1
            continue
        seen.add(address)
        outcome = _place(account, campaign, address, lead, options, lead_ids)
        if outcome == "unsubscribed":
            unsubscribed.append(raw)
            continue
        counts[outcome] += 1
        if outcome == "added":
            added_ids.append(campaign.leads[address])
    answer = {
        "ok": True,
        "upload_count": len(leads),
        "total_leads": counts["added"],
        "already_added_to_campaign": counts["already"],
        "duplicate_count": counts["duplicates"],
        "invalid_email_count": len(invalid),
        "invalid_emails": invalid,
        "block_count": counts["blocked"],
        "bounce_count": 0,
        "unsubscribed_leads": unsubscribed,
        "is_lead_limit_exhausted": counts["stopped"] > 0,
        "lead_import_stopped_count": counts["stopped"],
    }
    if options.get("return_lead_ids"):
        answer["lead_ids"] = added_ids
    return answer


def _place(
    account: Account,
    campaign: CampaignState,
    address: str,
    lead: dict,
    options: dict,
    lead_ids: Iterator[int],
) -> str:
    """One lead's fate: added, already, blocked, unsubscribed or stopped (quota used up)."""
    domain = address.rsplit("@", 1)[1]
    if not options.get("ignore_global_block_list") and account.blocked & {address, domain}:
        return "blocked"
    if not options.get("ignore_unsubscribe_list") and address in account.unsubscribed:
        return "unsubscribed"
    record = account.leads.get(address)
    if address in campaign.leads:
        record.update(_lead_fields(lead))  # Smartlead still updates the lead account-wide
        return "already"
    if record is None:
        if account.lead_quota is not None and len(account.leads) >= account.lead_quota:
            return "stopped"
        record = account.leads[address] = {"id": next(lead_ids), "created_at": _now()}
    record.update(_lead_fields(lead))
    campaign.leads[address] = record["id"]
    return "added"


def _lead_fields(lead: dict) -> dict:
    fields = {key: value for key, value in lead.items() if key in LEAD_FIELDS}
    fields["custom_fields"] = dict(lead.get("custom_fields") or {})
    return fields


def mailbox_json(mailbox: dict, *, encoded: bool) -> dict:
    """The live shape, secrets included (base64 on the list route, plain by id), so the client's
    dropping them at its seam is exercised."""
    password = "c2FuZGJveC1wYXNzd29yZA==" if encoded else "sandbox-password"
    box_id = mailbox["id"]
    return {
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
        "smtp_failure_error": None,
        "imap_failure_error": None,
        "message_per_day": str(mailbox["message_per_day"]),  # sometimes a string live
        "daily_sent_count": 0,
        "warmup_details": {
            "status": mailbox["warmup_status"],
            "warmup_reputation": "95%",
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
        "leads": [dict(account.leads[address]) for address in campaign.leads],
    }
