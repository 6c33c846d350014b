"""The one HTTP seam to Smartlead: one method per call, typed results and typed errors; how a
call travels (timeouts, retries, the per-key limiter) is transport.py beside it.

Nothing else in the project talks to Smartlead. Facts about the live API (bare arrays, numbers as
strings, several error body shapes, a flat schedule body) come from docs/smartlead-api.md in the
shared docs, which wins over Smartlead's own reference wherever they disagree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from outboundhq.logs import mask
from smartlead.api.add_leads import AddLeadsResult, add_leads_result_from
from smartlead.api.errors import NotFound, SmartleadError
from smartlead.api.guard import refuse_sandbox_key
from smartlead.api.mailboxes import MailboxCalls
from smartlead.api.results import (
    Campaign,
    CampaignLead,
    Category,
    EmailAccount,
    FoundLead,
    HistoryMessage,
    Lead,
    SequenceStepSpec,
    Webhook,
    as_int,
    campaign_from,
    campaign_lead_from,
    category_from,
    email_account_from,
    found_lead_from,
    history_message_from,
    object_of,
    rows_of,
    webhook_from,
)
from smartlead.api.transport import check_reply

PAGE_SIZE = 100  # /email-accounts/ answers 422 above this
MAX_PAGES = 1000
STATUS_WRITES = ("START", "PAUSED", "STOPPED")


class SmartleadClient(MailboxCalls):
    """One Smartlead account's API, a method per call (smartlead/transport.py carries them; the
    calls that move leads between mailboxes are in smartlead/api/mailboxes.py).

    Use one client per thread; the rate limiter behind it is shared by every client of the same
    key in the process.
    """

    def __repr__(self) -> str:
        return f"<SmartleadClient {self.base_url} key={mask(self._api_key)}>"

    def __enter__(self) -> SmartleadClient:
        return self

    def _call(self, method: str, path: str, **call: Any) -> Any:
        # Every call passes here first: no sandbox key leaves for the real Smartlead.
        refuse_sandbox_key(self.base_url, self._api_key)
        return super()._call(method, path, **call)

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- Email accounts ---
    def list_email_accounts(self) -> list[EmailAccount]:
        accounts: list[EmailAccount] = []
        # The page cap guards against a server that ignores `offset` and repeats a full page.
        for offset in range(0, MAX_PAGES * PAGE_SIZE, PAGE_SIZE):
            page = {"offset": offset, "limit": PAGE_SIZE}
            rows = rows_of(
                self._call("GET", "/email-accounts/", params=page, what="email accounts")
            )
            accounts.extend(a for a in map(email_account_from, rows) if a is not None)
            if len(rows) < PAGE_SIZE:
                break
        return accounts

    def get_email_account(self, account_id: int) -> EmailAccount:
        what = f"email account {account_id}"
        account = email_account_from(
            object_of(self._call("GET", f"/email-accounts/{account_id}/", what=what))
        )
        if account is None:
            raise NotFound(f"Smartlead has no {what} for this API key.", status=200)
        return account

    # --- Campaigns ---
    def create_campaign(self, name: str) -> Campaign:
        body = object_of(
            self._call(
                "POST", "/campaigns/create", body={"name": name}, what="campaign", repeatable=False
            )
        )
        if as_int(body.get("id")) is None:
            raise SmartleadError(
                "Smartlead answered the campaign creation without a campaign id; look for a "
                f"campaign named {name!r} in Smartlead before trying again.",
                status=200,
                permanent=False,
            )
        return campaign_from(body, default_name=name, default_status="DRAFTED")

    def get_campaign(self, campaign_id: int) -> Campaign:
        what = f"campaign {campaign_id}"
        body = object_of(self._call("GET", f"/campaigns/{campaign_id}", what=what))
        if as_int(body.get("id")) is None:
            raise NotFound(f"Smartlead has no {what} for this API key.", status=200)
        return campaign_from(body)

    def list_campaigns(self) -> list[Campaign]:
        rows = rows_of(self._call("GET", "/campaigns/", what="campaigns"))
        return [campaign_from(row) for row in rows if as_int(row.get("id")) is not None]

    def save_sequences(self, campaign_id: int, steps: Sequence[SequenceStepSpec]) -> None:
        if not steps:
            raise ValueError("A campaign needs at least one sequence step.")
        sequences = [
            {
                "id": None,
                "seq_number": step.seq_number,
                "seq_delay_details": {"delay_in_days": step.delay_in_days},
                "subject": step.subject,
                "email_body": step.email_body,
            }
            for step in steps
        ]
        self._campaign_post(campaign_id, "sequences", {"sequences": sequences})

    def add_email_accounts(self, campaign_id: int, account_ids: Sequence[int]) -> None:
        if not account_ids:
            raise ValueError("Attach at least one email account.")
        ids = [int(account_id) for account_id in account_ids]
        self._campaign_post(campaign_id, "email-accounts", {"email_account_ids": ids})

    def remove_email_accounts(self, campaign_id: int, account_ids: Sequence[int]) -> None:
        if not account_ids:
            raise ValueError("Name at least one email account to remove.")
        ids = [int(account_id) for account_id in account_ids]
        path = f"/campaigns/{campaign_id}/email-accounts"
        answer = self._call(
            "DELETE", path, body={"email_account_ids": ids}, what=f"campaign {campaign_id}"
        )
        check_reply(answer, "DELETE", path)

    def set_schedule(
        self,
        campaign_id: int,
        *,
        timezone: str,
        days_of_the_week: Sequence[int],
        start_hour: str,
        end_hour: str,
        min_time_btw_emails: int = 10,
        max_new_leads_per_day: int = 100,
    ) -> None:
        days = [int(day) for day in days_of_the_week]
        if not days or any(day < 0 or day > 6 for day in days):
            raise ValueError("days_of_the_week must be integers 0 (Sunday) to 6 (Saturday).")
        # Flat body: the {schedule: {...}} wrapper in Smartlead's newer docs is rejected live.
        schedule = {
            "timezone": timezone,
            "days_of_the_week": days,
            "start_hour": start_hour,
            "end_hour": end_hour,
            "min_time_btw_emails": min_time_btw_emails,
            "max_new_leads_per_day": max_new_leads_per_day,
        }
        self._campaign_post(campaign_id, "schedule", schedule)

    def update_settings(self, campaign_id: int, **settings: Any) -> None:
        if not settings:
            raise ValueError("Pass at least one campaign setting.")
        self._campaign_post(campaign_id, "settings", settings)

    def set_status(self, campaign_id: int, status: str) -> None:
        if status not in STATUS_WRITES:
            raise ValueError(f"Smartlead only accepts status {', '.join(STATUS_WRITES)}.")
        self._campaign_post(campaign_id, "status", {"status": status})

    # --- Leads ---
    def add_leads(
        self,
        campaign_id: int,
        leads: Sequence[Lead],
        *,
        lead_settings: Mapping[str, bool] | None = None,
    ) -> AddLeadsResult:
        """One add-leads request. It always asks for the lead id map (`return_lead_ids`), which
        says per address whether the lead is new, already in the campaign or in another one;
        `lead_settings` (e.g. ignore_global_block_list) are added to it. Smartlead rejects the
        whole request for one unknown settings key. What happened to each lead:
        `AddLeadsResult.outcomes()`."""
        if len(leads) > self.batch_size:
            raise ValueError(f"At most {self.batch_size} leads per request, got {len(leads)}.")
        if not leads:
            return add_leads_result_from({}, 0)
        body: dict[str, Any] = {
            "lead_list": [lead.as_payload() for lead in leads],
            "settings": {"return_lead_ids": True, **(lead_settings or {})},
        }
        # Repeating an add is harmless: a lead already added comes back as already_added.
        answer = self._call(
            "POST", f"/campaigns/{campaign_id}/leads", body=body, what=f"campaign {campaign_id}"
        )
        return add_leads_result_from(object_of(answer), len(leads))

    def find_lead(self, email: str) -> FoundLead | None:
        answer = self._call("GET", "/leads/", params={"email": email}, what="lead with that email")
        return found_lead_from(object_of(answer))

    def campaign_leads(
        self, campaign_id: int, *, email_status: str | None = None
    ) -> list[CampaignLead]:
        """The campaign's leads with their status (paged by 100), optionally only those with an
        `emailStatus` such as is_replied, is_bounced or is_unsubscribed."""
        leads: list[CampaignLead] = []
        what, offset = f"campaign {campaign_id}", 0
        for _ in range(MAX_PAGES):
            page: dict[str, Any] = {"offset": offset, "limit": PAGE_SIZE}
            if email_status:
                page["emailStatus"] = email_status
            answer = self._call("GET", f"/campaigns/{campaign_id}/leads", params=page, what=what)
            rows = rows_of(answer)
            leads.extend(lead for lead in map(campaign_lead_from, rows) if lead is not None)
            offset += len(rows)
            # `total_leads` (a string) says where the list ends: a page shorter than asked for
            # is not the end while it says more, or every reply after it would stay unseen.
            total = as_int(answer.get("total_leads")) if isinstance(answer, dict) else None
            if not rows or (offset >= total if total is not None else len(rows) < PAGE_SIZE):
                break
        return leads

    def lead_categories(self) -> list[Category]:
        """The account's lead categories, global and its own (a bare array); their ids are the
        account's, so names are what the backend acts on."""
        rows = rows_of(self._call("GET", "/leads/fetch-categories", what="lead categories"))
        return [c for c in map(category_from, rows) if c is not None]

    def message_history(self, campaign_id: int, lead_id: int) -> list[HistoryMessage]:
        path = f"/campaigns/{campaign_id}/leads/{int(lead_id)}/message-history"
        answer = self._call("GET", path, what=f"campaign {campaign_id}")
        if isinstance(answer, dict) and isinstance(answer.get("history"), list):
            answer = answer["history"]
        return [history_message_from(row) for row in rows_of(answer)]

    # Per-lead actions in one campaign. `lead_id` is Smartlead's lead id (`FoundLead.id`), not
    # the campaign-lead map id. Each answers {ok: true}; a refusal in the reply raises.
    def pause_lead(self, campaign_id: int, lead_id: int) -> None:
        self._campaign_post(campaign_id, f"leads/{int(lead_id)}/pause", {})

    def resume_lead(self, campaign_id: int, lead_id: int) -> None:
        """Resumes where the lead stopped (Smartlead refuses it after the last email)."""
        self._campaign_post(campaign_id, f"leads/{int(lead_id)}/resume", {})

    def unsubscribe_lead(self, campaign_id: int, lead_id: int) -> None:
        """Unsubscribes within the campaign; Smartlead has no undo."""
        self._campaign_post(campaign_id, f"leads/{int(lead_id)}/unsubscribe", {})

    def remove_lead(self, campaign_id: int, lead_id: int) -> None:
        path = f"/campaigns/{campaign_id}/leads/{int(lead_id)}"
        check_reply(self._call("DELETE", path, what=f"campaign {campaign_id}"), "DELETE", path)

    # --- Webhooks ---
    def list_campaign_webhooks(self, campaign_id: int) -> list[Webhook]:
        what = f"campaign {campaign_id}"
        answer = self._call("GET", f"/campaigns/{campaign_id}/webhooks", what=what)
        if isinstance(answer, dict) and "id" in answer:  # the legacy shape: one webhook, bare
            answer = [answer]
        return [webhook_from(row) for row in rows_of(answer)]

    def save_campaign_webhook(
        self,
        campaign_id: int,
        *,
        name: str,
        url: str,
        event_types: Sequence[str],
        categories: Sequence[str] = ("Interested",),
        webhook_id: int | None = None,
    ) -> None:
        """Create the webhook (webhook_id None) or update it. Empty `categories` are left out,
        because Smartlead answers 400 to `"categories": []`."""
        body: dict[str, Any] = {
            "id": webhook_id,
            "name": name,
            "webhook_url": url,
            "event_types": list(event_types),
        }
        if categories:
            body["categories"] = list(categories)
        self._campaign_post(campaign_id, "webhooks", body, repeatable=webhook_id is not None)
