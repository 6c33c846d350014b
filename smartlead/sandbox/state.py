"""The sandbox's Smartlead accounts and the rules of each v1 route, with no HTTP and no Django.

Each route is a SandboxState method taking (account, query, body, **path ids) and returning the
JSON body, or raising ApiError; the lead routes are in leads.py, the mailbox routes (health,
pinning, reallocation) in mailboxes.py. Behaviour follows the integrators' live findings in the
shared smartlead-api.md, not Smartlead's doc examples. Every account has its own lock, so 1,000
keys never queue behind one another; work per request is proportional to its batch.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable
from typing import Any

from smartlead.api import MAX_LEADS_PER_REQUEST
from smartlead.sandbox.data import (
    CAMPAIGN_SETTINGS,
    STATUS_WRITES,
    STOP_SETTINGS,
    TRACK_SETTINGS,
    Account,
    ApiError,
    CampaignState,
    campaign_json,
    check_startable,
    joi,
    legacy,
    mailbox_json,
    paging,
    reject_unknown,
    require_object,
    sequence_step,
    timestamp,
    validated_schedule,
    validated_webhook,
)
from smartlead.sandbox.leads import LeadRoutes
from smartlead.sandbox.mailboxes import MailboxRoutes
from smartlead.sandbox.replies import CategoryRoutes, ReplyBook, check_settings


class SandboxState(LeadRoutes, MailboxRoutes, CategoryRoutes):
    """Every key's account, and the per-key rate limits Smartlead's current guide states
    (Standard: 60 a minute and 1,000 an hour; bursts of 10 in 2 s here, the stricter legacy
    rule), each a sliding window, across every caller of the key."""

    def __init__(
        self,
        accounts: Iterable[Account] = (),
        *,
        requests_per_minute: int = 60,
        window: float = 60.0,
        requests_per_hour: int = 1000,
        hour_window: float = 3600.0,
        burst: int = 10,
        burst_window: float = 2.0,
        max_leads_per_request: int = MAX_LEADS_PER_REQUEST,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.accounts = {account.api_key: account for account in accounts}
        self.requests_per_minute, self.window = requests_per_minute, window
        self.requests_per_hour, self.hour_window = requests_per_hour, hour_window
        self.burst, self.burst_window = burst, burst_window
        self.max_leads_per_request = max_leads_per_request
        self.clock = clock
        self._campaign_ids = itertools.count(3001)
        self._lead_ids = itertools.count(3_000_000_001)  # real lead ids exceed 32 bits
        self._webhook_ids = itertools.count(501)
        self._step_ids = itertools.count(9001)
        self.global_block_list: set[str] = set()  # Smartlead's own, for every account
        self.replies = ReplyBook()  # lead categories (smartlead/sandbox/replies.py)

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
        per_hour = account.requests_per_hour or self.requests_per_hour
        now = self.clock()
        with account.lock:
            hits = account.hits
            while hits and hits[0] <= now - max(self.hour_window, self.window):
                hits.popleft()
            in_minute = sum(
                1 for _ in itertools.takewhile(lambda t: t > now - self.window, reversed(hits))
            )
            wait = 0.0
            for allowed, window, inside in (
                (limit, self.window, in_minute),
                (per_hour, self.hour_window, len(hits)),
                (self.burst, self.burst_window, self.burst),
            ):
                if inside >= allowed and len(hits) >= allowed:
                    wait = max(wait, hits[-allowed] + window - now)
            if wait <= 0:
                hits.append(now)
                in_minute += 1
            oldest = hits[-in_minute] if in_minute else now
            reset_in = wait if wait > 0 else oldest + self.window - now
        headers = {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(0 if wait > 0 else max(0, limit - in_minute)),
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
        offset, limit = paging(query)
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
        check_settings(body)
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
