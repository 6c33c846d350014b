"""The sandbox's mailbox routes and rules: which mailboxes a campaign has, how healthy each is,
and which one each lead is pinned to.

As Smartlead's help centre (articles 23 and 397) and reference pages describe it:
- a lead is pinned to the mailbox that first wrote to it; it gets nothing more while that
  mailbox is detached from the campaign, failing (SMTP or IMAP) or suspended;
- attaching takes only mailboxes with SMTP and IMAP working and not suspended;
- removing the last mailbox of an ACTIVE campaign is refused (the reference names no status or
  body for it: a 400 in the legacy shape here);
- reallocate-mailboxes, after a removal, moves the leads of removed mailboxes (and leads with
  none) to random attached ones, except leads still STARTED; a listed id still attached is a 400;
- update-lead-email-account moves one lead, over a mailbox it has only with
  `override_lead_email_account`.
Emails go out only when a test says so (`send_next`), one step per lead, the way Smartlead's
scheduler would: from the pinned mailbox, or for a lead not written to yet, the next healthy
attached mailbox in turn.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from typing import Any

from smartlead.sandbox.data import (
    Account,
    CampaignState,
    history_row,
    joi,
    legacy,
    mailbox_json,
    reject_unknown,
    require_object,
    timestamp,
)

HEALTH_FIELDS = frozenset(
    "is_smtp_success is_imap_success smtp_failure_error imap_failure_error is_suspended "
    "warmup_reputation".split()
)
SENDING = ("STARTED", "INPROGRESS")  # lead statuses Smartlead's scheduler still writes to
NOT_MOVED = "STARTED"  # reallocate-mailboxes leaves these where they are


def healthy(mailbox: dict) -> bool:
    """What Smartlead needs of a mailbox to attach it or send from it."""
    return (
        bool(mailbox["is_smtp_success"])
        and bool(mailbox["is_imap_success"])
        and not mailbox["is_suspended"]
    )


def pin(account: Account, campaign: CampaignState, lead_id: int, *, healthy_only: bool) -> Any:
    """The mailbox that writes to this lead: the one it is pinned to, or (none yet) the next
    attached one in turn, which it is then pinned to. None when that cannot send."""
    pinned = campaign.lead_mailbox.get(lead_id)
    if pinned is not None:
        usable = pinned in campaign.email_account_ids and healthy(account.mailboxes[pinned])
        return pinned if usable or not healthy_only else None
    pool = [
        m for m in campaign.email_account_ids if not healthy_only or healthy(account.mailboxes[m])
    ]
    if not pool:
        return None
    chosen = pool[campaign.sends % len(pool)]
    campaign.sends += 1
    campaign.lead_mailbox[lead_id] = chosen
    return chosen


class MailboxRoutes:
    """Mixed into SandboxState, which holds the accounts."""

    accounts: dict[str, Account]
    _campaign: Callable[[Account, str], CampaignState]

    def attach_mailboxes(self, account: Account, query: dict, body: Any, campaign_id: str) -> dict:
        campaign = self._campaign(account, campaign_id)
        ids = _ids(body)
        foreign = [i for i in ids if not isinstance(i, int) or i not in account.mailboxes]
        if foreign:
            raise legacy(f"Email account not found - {foreign[0]}")
        broken = [i for i in ids if not healthy(account.mailboxes[i])]
        if broken:
            raise legacy(
                f"Email account {broken[0]} cannot be added: its SMTP and IMAP must be connected "
                "and it must not be suspended."
            )
        with account.lock:
            campaign.email_account_ids = sorted(set(campaign.email_account_ids) | set(ids))
        return {"ok": True}

    def detach_mailboxes(self, account: Account, query: dict, body: Any, campaign_id: str) -> dict:
        campaign = self._campaign(account, campaign_id)
        ids = _ids(body)
        with account.lock:
            kept = [i for i in campaign.email_account_ids if i not in ids]
            if not kept and campaign.status == "ACTIVE":
                raise legacy(
                    "Cannot remove all email accounts from an ACTIVE campaign. Pause the "
                    "campaign first or add replacement accounts."
                )
            removed = len(campaign.email_account_ids) - len(kept)
            campaign.email_account_ids = kept
        return {"ok": True, "result": removed}

    def campaign_mailboxes(
        self, account: Account, query: dict, body: Any, campaign_id: str
    ) -> list[dict]:
        campaign = self._campaign(account, campaign_id)
        with account.lock:
            attached = list(campaign.email_account_ids)
        return [mailbox_json(account.mailboxes[i], encoded=True) for i in attached]

    def reallocate_mailboxes(
        self, account: Account, query: dict, body: Any, campaign_id: str
    ) -> dict:
        campaign = self._campaign(account, campaign_id)
        body = require_object(body)
        reject_unknown(body, ("from_email_account_ids",))
        wanted = _from_ids(body)
        with account.lock:
            pool = list(campaign.email_account_ids)
            if not pool:
                raise legacy("No email accounts are attached to this campaign.")
            still = [i for i in wanted or () if i in pool]
            if still:
                raise legacy(
                    f"Email account(s) {', '.join(map(str, still))} still attached to this "
                    "campaign. Only leads on mailboxes removed from the campaign can be "
                    "reallocated."
                )
            moved = 0
            for lead_id, status in campaign.lead_status.items():
                current = campaign.lead_mailbox.get(lead_id)
                if status == NOT_MOVED or current in pool:
                    continue
                if wanted is not None and current not in wanted:
                    continue
                campaign.lead_mailbox[lead_id] = random.Random(lead_id).choice(pool)
                moved += 1
        return {"ok": True, "leads_reallocated": moved, "to_email_account_ids": pool}

    def update_lead_mailbox(self, account: Account, query: dict, body: Any) -> dict:
        body = require_object(body)
        reject_unknown(
            body,
            (
                "email_account_id",
                "email_campaign_id",
                "email_lead_id",
                "override_lead_email_account",
            ),
        )
        for name in ("email_account_id", "email_campaign_id", "email_lead_id"):
            if not isinstance(body.get(name), int) or isinstance(body[name], bool):
                raise joi(f'"{name}" is required and must be a number')
        campaign = self._campaign(account, str(body["email_campaign_id"]))
        lead_id, mailbox = body["email_lead_id"], body["email_account_id"]
        if mailbox not in account.mailboxes:
            raise legacy(f"Email account not found - {mailbox}")
        with account.lock:
            if lead_id not in campaign.lead_status:
                raise legacy("Lead not found in this campaign.", 404)
            # Without the override a lead that has a mailbox keeps it (the reference's wording).
            if lead_id not in campaign.lead_mailbox or body.get("override_lead_email_account"):
                campaign.lead_mailbox[lead_id] = mailbox
        return {"success": True, "message": "Lead email account updated"}

    # --- Test helpers (SandboxServer's break_mailbox, fix_mailbox, send_next) ---
    def set_mailbox_health(self, api_key: str, mailbox_id: int, **fields: Any) -> None:
        unknown = set(fields) - HEALTH_FIELDS
        if unknown:
            raise ValueError(f"Not a mailbox health field: {', '.join(sorted(unknown))}")
        account = self.accounts[api_key]
        with account.lock:
            account.mailboxes[int(mailbox_id)].update(fields)

    def send_next(self, api_key: str, campaign_id: int) -> list[tuple[str, int, int]]:
        """Each lead Smartlead would write to now gets its next step: (email, step, mailbox)."""
        account = self.accounts[api_key]
        campaign = account.campaigns[int(campaign_id)]
        sent: list[tuple[str, int, int]] = []
        with account.lock:
            if campaign.status != "ACTIVE":
                return sent
            steps = len(campaign.sequences)
            for address, lead_id in campaign.leads.items():
                history = campaign.history.setdefault(lead_id, [])
                step = sum(row["type"] == "SENT" for row in history) + 1
                if campaign.lead_status.get(lead_id) not in SENDING or step > steps:
                    continue
                mailbox = pin(account, campaign, lead_id, healthy_only=True)
                if mailbox is None:
                    continue  # pinned to a mailbox that cannot send: nothing more
                ours = account.mailboxes[mailbox]["from_email"]
                row = history_row(
                    "SENT", str(uuid.uuid4()), step, "Hello", timestamp(), ours=ours, lead=address
                )
                history.append(row)
                campaign.lead_status[lead_id] = "COMPLETED" if step == steps else "INPROGRESS"
                sent.append((address, step, mailbox))
        return sent


def _ids(body: Any) -> list:
    ids = require_object(body).get("email_account_ids")
    if not isinstance(ids, list) or not ids:
        raise joi('"email_account_ids" is required')
    return ids


def _from_ids(body: dict) -> list[int] | None:
    if "from_email_account_ids" not in body:
        return None
    ids = body["from_email_account_ids"]
    if not isinstance(ids, list) or not 1 <= len(ids) <= 100:
        raise joi('"from_email_account_ids" must contain 1 to 100 items')
    if any(not isinstance(i, int) or isinstance(i, bool) for i in ids):
        raise joi('"from_email_account_ids" must contain only numbers')
    if len(set(ids)) != len(ids):
        raise joi('"from_email_account_ids" contains a duplicate value')
    return ids
