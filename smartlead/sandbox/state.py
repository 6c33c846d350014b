"""The sandbox's Smartlead accounts and the rules of each v1 route, with no HTTP and no Django.

Each route is a SandboxState method taking (account, query, body, **path ids) and returning the
JSON body, or raising ApiError. Behaviour follows the integrators' live findings in the shared
smartlead-api.md, not Smartlead's doc examples. Every account has its own lock, so 1,000 keys
never queue behind one another; work per request is proportional to its batch.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from smartlead.api import MAX_LEADS_PER_REQUEST
from smartlead.sandbox.data import (
    CAMPAIGN_SETTINGS,
    EMAIL,
    LEAD_FIELDS,
    LEAD_SETTINGS,
    ODD_REPLIES,
    STATUS_WRITES,
    STOP_SETTINGS,
    TRACK_SETTINGS,
    Account,
    ApiError,
    CampaignState,
    campaign_json,
    check_startable,
    int_param,
    joi,
    legacy,
    mailbox_json,
    reject_unknown,
    require_object,
    sequence_step,
    timestamp,
    validated_schedule,
    validated_webhook,
)


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
        max_leads_per_request: int = MAX_LEADS_PER_REQUEST,
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
        self.global_block_list: set[str] = set()  # Smartlead's own, for every account

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
        offset, limit = _paging(query)
        ids = sorted(account.mailboxes)[offset : offset + limit]
        return [mailbox_json(account.mailboxes[i], encoded=True) for i in ids]

    def get_mailbox(self, account: Account, query: dict, body: Any, mailbox_id: str) -> dict:
        mailbox = account.mailboxes.get(int(mailbox_id))
        if mailbox is None:
            raise legacy("Email account not found", 404)
        return mailbox_json(mailbox, encoded=False)

    # --- Campaigns ---
    def create_campaign(self, account: Account, query: dict, body: Any) -> dict:
        body = require_object(body)
        reject_unknown(body, ("name", "client_id"))
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

    def delete_campaign(self, account: Account, query: dict, body: Any, campaign_id: str) -> dict:
        campaign = self._campaign(account, campaign_id)
        with account.lock:
            del account.campaigns[campaign.id]
        return {"ok": True}

    def save_sequences(self, account: Account, query: dict, body: Any, campaign_id: str) -> dict:
        campaign = self._campaign(account, campaign_id)
        steps = require_object(body).get("sequences")
        if not isinstance(steps, list):
            raise joi('"sequences" is required')
        saved = [sequence_step(step, i) for i, step in enumerate(steps)]
        with account.lock:
            if campaign.status == "ACTIVE":
                raise legacy("Cannot update sequences of an ACTIVE campaign; pause it first.")
            for step in saved:
                step["id"] = step["id"] or next(self._step_ids)
            campaign.sequences = saved
        return {"ok": True, "data": "success"}

    def attach_mailboxes(self, account: Account, query: dict, body: Any, campaign_id: str) -> dict:
        campaign = self._campaign(account, campaign_id)
        ids = require_object(body).get("email_account_ids")
        if not isinstance(ids, list) or not ids:
            raise joi('"email_account_ids" is required')
        foreign = [i for i in ids if not isinstance(i, int) or i not in account.mailboxes]
        if foreign:
            raise legacy(f"Email account not found - {foreign[0]}")
        with account.lock:
            campaign.email_account_ids = sorted(set(campaign.email_account_ids) | set(ids))
        return {"ok": True}

    def detach_mailboxes(self, account: Account, query: dict, body: Any, campaign_id: str) -> dict:
        campaign = self._campaign(account, campaign_id)
        ids = require_object(body).get("email_account_ids")
        if not isinstance(ids, list) or not ids:
            raise joi('"email_account_ids" is required')
        with account.lock:
            kept = [i for i in campaign.email_account_ids if i not in ids]
            removed = len(campaign.email_account_ids) - len(kept)
            campaign.email_account_ids = kept
        return {"ok": True, "result": removed}

    def set_schedule(self, account: Account, query: dict, body: Any, campaign_id: str) -> dict:
        campaign = self._campaign(account, campaign_id)
        schedule = validated_schedule(require_object(body))
        with account.lock:
            campaign.schedule = schedule
        return {"ok": True}

    def update_settings(self, account: Account, query: dict, body: Any, campaign_id: str) -> dict:
        campaign = self._campaign(account, campaign_id)
        body = require_object(body)
        reject_unknown(body, CAMPAIGN_SETTINGS)
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
        wanted = require_object(body).get("status")
        if wanted not in STATUS_WRITES:
            raise legacy("Allowed values are - START,STOPPED,PAUSED")
        with account.lock:
            if wanted == "START":
                check_startable(campaign)
            campaign.status = STATUS_WRITES[wanted]
        return {"ok": True}

    # --- Leads ---
    def add_leads(self, account: Account, query: dict, body: Any, campaign_id: str) -> dict:
        campaign = self._campaign(account, campaign_id)
        body = require_object(body)
        leads, options = self._validated_leads(body)
        with account.lock:
            return _import(
                account, campaign, leads, options, self._lead_ids, self.global_block_list
            )

    def _validated_leads(self, body: dict) -> tuple[list[dict], dict]:
        reject_unknown(body, ("lead_list", "settings"))
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
        reject_unknown(options, LEAD_SETTINGS, "settings.")
        for index, lead in enumerate(leads):
            if not isinstance(lead, dict):
                raise joi(f'"lead_list[{index}]" must be of type object')
            reject_unknown(lead, LEAD_FIELDS, f"lead_list[{index}].")
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

    def _campaign_lead(self, account: Account, campaign_id: str, lead_id: str) -> CampaignState:
        campaign = self._campaign(account, campaign_id)
        if not lead_id.isdigit() or int(lead_id) not in campaign.lead_status:
            raise legacy("Lead not found in this campaign.", 404)
        return campaign

    def pause_lead(
        self, account: Account, query: dict, body: Any, campaign_id: str, lead_id: str
    ) -> dict:
        campaign = self._campaign_lead(account, campaign_id, lead_id)
        with account.lock:
            if campaign.lead_status[int(lead_id)] in ("COMPLETED", "STOPPED"):
                raise legacy("Lead is already completed or stopped; it cannot be paused.")
            campaign.lead_status[int(lead_id)] = "PAUSED"
        return {"ok": True, "data": "success"}

    def resume_lead(
        self, account: Account, query: dict, body: Any, campaign_id: str, lead_id: str
    ) -> dict:
        campaign = self._campaign_lead(account, campaign_id, lead_id)
        with account.lock:
            current = campaign.lead_status[int(lead_id)]
            if current in ("COMPLETED", "STOPPED"):
                raise legacy("This is the last sequence. You cannot resume this lead.")
            campaign.lead_status[int(lead_id)] = "INPROGRESS"  # where it stopped, not email 1
        return {"ok": True, "data": "success"}

    def unsubscribe_lead(
        self, account: Account, query: dict, body: Any, campaign_id: str, lead_id: str
    ) -> dict:
        campaign = self._campaign_lead(account, campaign_id, lead_id)
        with account.lock:
            campaign.lead_status[int(lead_id)] = "STOPPED"
        return {"ok": True}

    def delete_lead(
        self, account: Account, query: dict, body: Any, campaign_id: str, lead_id: str
    ) -> dict:
        campaign = self._campaign_lead(account, campaign_id, lead_id)
        with account.lock:
            del campaign.lead_status[int(lead_id)]
            address = next(a for a, i in campaign.leads.items() if i == int(lead_id))
            del campaign.leads[address]
        return {"ok": True, "message": "success"}

    def campaign_leads(self, account: Account, query: dict, body: Any, campaign_id: str) -> dict:
        campaign = self._campaign(account, campaign_id)
        offset, limit = _paging(query)
        wanted = query.get("emailStatus")
        with account.lock:
            rows = [
                {
                    "campaign_lead_map_id": lead_id + campaign.id,
                    "lead_category_id": None,
                    "status": campaign.lead_status.get(lead_id, "STARTED"),
                    "created_at": account.leads[address].get("created_at"),
                    "lead": {
                        "id": lead_id,
                        "email": address,
                        "is_unsubscribed": address in account.unsubscribed,
                    },
                }
                for address, lead_id in campaign.leads.items()
                if not wanted or wanted in campaign.flags.get(lead_id, set())
            ]
        page = rows[offset : offset + limit]
        # total_leads is a string in the live API.
        return {"total_leads": str(len(rows)), "offset": offset, "limit": limit, "data": page}

    def message_history(
        self, account: Account, query: dict, body: Any, campaign_id: str, lead_id: str
    ) -> dict:
        campaign = self._campaign_lead(account, campaign_id, lead_id)
        with account.lock:
            return {"history": [dict(row) for row in campaign.history.get(int(lead_id), [])]}

    def record(
        self, api_key: str, campaign_id: int, email: str, kind: str, step: int | None, text: str
    ) -> str:
        """What a lead did (server.py's lead_* helpers): history, flags and status; returns the
        stats_id involved (a new one for a sent email, the last sent one otherwise)."""
        account = self.accounts[api_key]
        campaign = account.campaigns[int(campaign_id)]
        address = email.strip().lower()
        with account.lock:
            lead_id = campaign.leads[address]
            history = campaign.history.setdefault(lead_id, [])
            flags = campaign.flags.setdefault(lead_id, set())
            sent = [row for row in history if row["type"] == "SENT"]
            if kind == "SENT" or not sent:
                stats_id = str(uuid.uuid4())
                history.append(_history_row("SENT", stats_id, step or 1, "Hello", timestamp()))
                campaign.lead_status[lead_id] = "INPROGRESS"
                if kind == "SENT":
                    return stats_id
                sent = [history[-1]]
            stats_id = sent[-1]["stats_id"]
            if kind == "REPLY":
                history.append(_history_row("REPLY", stats_id, None, text, timestamp()))
                flags.add("is_replied")
                campaign.lead_status[lead_id] = "STOPPED"  # stop_lead_settings: on reply
            elif kind == "BOUNCE":
                flags.add("is_bounced")
                campaign.lead_status[lead_id] = "BLOCKED"
            elif kind == "UNSUBSCRIBE":
                flags.add("is_unsubscribed")
                account.unsubscribed.add(address)
                campaign.lead_status[lead_id] = "STOPPED"
            return stats_id

    # --- Webhooks ---
    def list_webhooks(self, account: Account, query: dict, body: Any, campaign_id: str) -> list:
        campaign = self._campaign(account, campaign_id)
        with account.lock:
            return [dict(hook) for hook in campaign.webhooks.values()]

    def save_webhook(self, account: Account, query: dict, body: Any, campaign_id: str) -> dict:
        campaign = self._campaign(account, campaign_id)
        hook = validated_webhook(require_object(body))
        with account.lock:
            hook_id = hook.pop("id") or next(self._webhook_ids)
            old = campaign.webhooks.get(hook_id)
            if body.get("id") is not None and old is None:
                raise legacy("Webhook not found", 404)
            created = old["created_at"] if old else timestamp()
            campaign.webhooks[hook_id] = hook | {
                "id": hook_id,
                "email_campaign_id": campaign.id,
                "created_at": created,
                "updated_at": timestamp(),
            }
        return {"ok": True, "id": hook_id}

    def delete_webhook(self, account: Account, query: dict, body: Any, campaign_id: str) -> dict:
        campaign = self._campaign(account, campaign_id)
        with account.lock:
            if campaign.webhooks.pop(require_object(body).get("id"), None) is None:
                raise legacy("Webhook not found", 404)
        return {"ok": True}


def _import(
    account: Account,
    campaign: CampaignState,
    leads: list[dict],
    options: dict,
    lead_ids: Iterator[int],
    global_block_list: set[str],
) -> Any:
    """Add one validated batch to a campaign (the caller holds the account lock)."""
    counts = dict.fromkeys(("added", "already", "duplicates", "blocked", "bounced", "other"), 0)
    counts["stopped"] = 0
    invalid: list[str] = []
    unsubscribed: list[str] = []
    by_bucket: dict[str, dict[str, int]] = {"added": {}, "already": {}, "other": {}}
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
        outcome = _place(account, campaign, address, lead, options, lead_ids, global_block_list)
        if outcome == "unsubscribed":
            unsubscribed.append(raw)
            continue
        counts[outcome] += 1
        if outcome in by_bucket:
            by_bucket[outcome][raw] = account.leads[address]["id"]
    answer: dict[str, Any] = {
        "ok": True,
        "upload_count": len(leads),
        "total_leads": counts["added"],
        "already_added_to_campaign": counts["already"],
        "duplicate_count": counts["duplicates"],
        "invalid_email_count": len(invalid),
        "invalid_emails": invalid,
        "block_count": counts["blocked"],
        "bounce_count": counts["bounced"],
        "skipped_in_other_campaign_count": counts["other"],
        "unsubscribed_leads": unsubscribed,
        "is_lead_limit_exhausted": counts["stopped"] > 0,
        "lead_import_stopped_count": counts["stopped"],
    }
    if counts["stopped"]:
        answer["error"] = "The lead credit limit has been reached. Upgrade to add more leads."
    odd = ODD_REPLIES.get(account.add_leads_reply)
    if account.add_leads_reply != "live" and odd != "counters_only":
        return odd
    if options.get("return_lead_ids") and odd is None:
        answer["emailToLeadIdMap"] = {
            "newlyAddedLeads": by_bucket["added"],
            "existingLeads": by_bucket["already"],
            "existingLeadsInOtherCampaigns": by_bucket["other"],
        }
    return answer


def _place(
    account: Account,
    campaign: CampaignState,
    address: str,
    lead: dict,
    options: dict,
    lead_ids: Iterator[int],
    global_block_list: set[str],
) -> str:
    """One lead's fate: added, already, other (in another campaign of the account), blocked,
    bounced, unsubscribed or stopped (the lead credits are used up)."""
    domain = address.rsplit("@", 1)[1]
    blocked = (account.blocked | global_block_list) & {address, domain}
    if not options.get("ignore_global_block_list") and blocked:
        return "blocked"
    if not options.get("ignore_community_bounce_list") and address in account.bounced:
        return "bounced"
    if not options.get("ignore_unsubscribe_list") and address in account.unsubscribed:
        return "unsubscribed"
    record = account.leads.get(address)
    if address in campaign.leads:
        record.update(_lead_fields(lead))  # Smartlead still updates the lead account-wide
        return "already"
    elsewhere = any(address in c.leads for c in account.campaigns.values() if c is not campaign)
    if elsewhere and not options.get("ignore_duplicate_leads_in_other_campaign"):
        return "other"
    if record is None:
        if account.lead_quota is not None and len(account.leads) >= account.lead_quota:
            return "stopped"
        record = account.leads[address] = {"id": next(lead_ids), "created_at": timestamp()}
    record.update(_lead_fields(lead))
    campaign.leads[address] = record["id"]
    campaign.lead_status[record["id"]] = "STARTED"
    return "added"


def _lead_fields(lead: dict) -> dict:
    fields = {key: value for key, value in lead.items() if key in LEAD_FIELDS}
    fields["custom_fields"] = dict(lead.get("custom_fields") or {})
    return fields


def _history_row(kind: str, stats_id: str, step: int | None, text: str, when: str) -> dict:
    return {
        "type": kind,
        "stats_id": stats_id,
        "message_id": f"<{uuid.uuid4().hex}@sandbox.smartlead.test>",
        "subject": "Hello" if kind == "SENT" else "Re: Hello",
        "email_body": f"<p>{text}</p>",
        "time": when,
        "seq_number": step,
    }


def _paging(query: dict) -> tuple[int, int]:
    """offset/limit as the live API takes them: limit at most 100 (422 above)."""
    offset, limit = int_param(query, "offset", 0), int_param(query, "limit", 100)
    if limit > 100:
        raise legacy("limit must be less than or equal to 100", 422)
    return max(0, offset), max(0, limit)
