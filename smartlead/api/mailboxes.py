"""The client's calls about which mailbox sends a campaign's leads (SmartleadClient inherits them).

Smartlead pins each lead to the mailbox that first wrote to it (help centre articles 23 and 397):
a lead whose mailbox leaves the campaign gets nothing more until it is moved. The reference pages
these calls follow (api.smartlead.ai/api-reference/campaigns/…):

- `get-email-accounts`: the campaign's attached mailboxes, a bare array;
- `remove-email-accounts`: refused when it would leave an ACTIVE campaign with none;
- `reallocate-mailboxes`: called *after* the removal, it moves the leads of mailboxes no longer
  attached (and leads with none) to random attached ones, except leads still `STARTED`; a listed
  id that is still attached is a 400;
- `update-lead-email-account`: one lead to one mailbox (`override_lead_email_account` forces it).

No read route documents which mailbox a lead is on. The message history names the mailbox that
wrote to it (`from`, beside `history`, in the legacy reference and as integrators read it; some
also see it on each row), which is how `lead_sender` tells.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from smartlead.api.results import EmailAccount, as_int, as_str, email_account_from, rows_of
from smartlead.api.transport import Transport, check_reply


@dataclass(frozen=True)
class Reallocation:
    """What reallocate-mailboxes answered: how many leads moved, onto which pool."""

    leads_reallocated: int
    to_email_account_ids: tuple[int, ...]


class MailboxCalls(Transport):
    def campaign_email_accounts(self, campaign_id: int) -> list[EmailAccount]:
        path = f"/campaigns/{campaign_id}/email-accounts"
        answer = self._call("GET", path, what=f"campaign {campaign_id}")
        return [a for a in map(email_account_from, rows_of(answer)) if a is not None]

    def reallocate_mailboxes(self, campaign_id: int, from_ids: Sequence[int]) -> Reallocation:
        """Moves the leads of these (already detached) mailboxes onto the attached ones."""
        ids = sorted({int(i) for i in from_ids})
        if not 1 <= len(ids) <= 100:
            raise ValueError("Name 1 to 100 removed email accounts to move leads off.")
        path = f"/campaigns/{campaign_id}/reallocate-mailboxes"
        body = {"from_email_account_ids": ids}
        answer = self._call("POST", path, body=body, what=f"campaign {campaign_id}")
        check_reply(answer, "POST", path)
        answer = answer if isinstance(answer, dict) else {}
        pool = answer.get("to_email_account_ids")
        return Reallocation(
            leads_reallocated=as_int(answer.get("leads_reallocated")) or 0,
            to_email_account_ids=tuple(
                i for i in (as_int(v) for v in (pool if isinstance(pool, list) else [])) if i
            ),
        )

    def update_lead_email_account(self, campaign_id: int, lead_id: int, mailbox_id: int) -> None:
        """Puts one lead on one mailbox, even if it has one (Smartlead's lead id, not the map id).
        The reference shows `{"success": true}`; an `ok` or `success` of false raises."""
        body = {
            "email_account_id": int(mailbox_id),
            "email_campaign_id": int(campaign_id),
            "email_lead_id": int(lead_id),
            "override_lead_email_account": True,
        }
        path = "/campaigns/update-lead-email-account"
        answer = self._call("POST", path, body=body, what=f"campaign {campaign_id}")
        check_reply(answer, "POST", path)

    def lead_sender(self, campaign_id: int, lead_id: int) -> str | None:
        """The address of the mailbox that last wrote to the lead (lowercased); None when none
        has (a lead still STARTED)."""
        path = f"/campaigns/{campaign_id}/leads/{int(lead_id)}/message-history"
        answer = self._call("GET", path, what=f"campaign {campaign_id}")
        if not isinstance(answer, dict):
            return None
        sent = [
            r
            for r in rows_of(answer.get("history"))
            if (as_str(r.get("type")) or "").upper() == "SENT"
        ]
        found = as_str(sent[-1].get("from")) if sent else None
        found = found or (as_str(answer.get("from")) if sent else None)
        return found.strip().lower() if found else None
