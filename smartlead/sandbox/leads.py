"""The sandbox's lead routes: adding leads to a campaign, finding them, and what a lead does
there (pause, resume, unsubscribe, delete, its status list and message history), with
`record` for the test helpers that make a lead get an email, reply, bounce or unsubscribe."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

from smartlead.sandbox.data import (
    EMAIL,
    LEAD_FIELDS,
    LEAD_SETTINGS,
    ODD_REPLIES,
    Account,
    ApiError,
    CampaignState,
    history_row,
    joi,
    legacy,
    paging,
    reject_unknown,
    require_object,
    timestamp,
)
from smartlead.sandbox.mailboxes import pin
from smartlead.sandbox.replies import ReplyBook


class LeadRoutes:
    """Mixed into SandboxState, which holds the accounts, the id counters and the limits."""

    max_leads_per_request: int
    global_block_list: set[str]
    replies: ReplyBook
    _lead_ids: Iterator[int]
    _campaign: Callable[[Account, str], CampaignState]

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
                    "lead_category_id": self.replies.category_of(campaign.id, lead["id"]),
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
        offset, limit = paging(query)
        wanted = query.get("emailStatus")
        with account.lock:
            rows = [
                {
                    "campaign_lead_map_id": lead_id + campaign.id,
                    "lead_category_id": self.replies.category_of(campaign.id, lead_id),
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
            rows = [dict(row) for row in campaign.history.get(int(lead_id), [])]
            address = next(a for a, i in campaign.leads.items() if i == int(lead_id))
        # Beside the rows, as in Smartlead's legacy reference: the mailbox that wrote to the
        # lead (`from`) and the lead (`to`).
        ours = next((r["from"] for r in reversed(rows) if r["type"] == "SENT"), None)
        return {"history": rows, "from": ours, "to": address}

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
            mailbox = pin(account, campaign, lead_id, healthy_only=False)
            ours = account.mailboxes[mailbox]["from_email"] if mailbox is not None else None
            if kind == "SENT" or not sent:
                stats_id = str(uuid.uuid4())
                row = history_row(
                    "SENT", stats_id, step or 1, "Hello", timestamp(), ours=ours, lead=address
                )
                history.append(row)
                campaign.lead_status[lead_id] = "INPROGRESS"
                if kind == "SENT":
                    return stats_id
                sent = [history[-1]]
            stats_id = sent[-1]["stats_id"]
            if kind == "REPLY":
                history.append(
                    history_row("REPLY", stats_id, None, text, timestamp(), ours=ours, lead=address)
                )
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
        campaign.arrived_again += 1
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
