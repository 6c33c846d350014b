"""The sandbox's replies as people send them, and lead categories.

- `GET /leads/fetch-categories` (`CategoryRoutes`): the account's categories, a bare array of
  `{id, name, sentiment_type, created_at}` sorted by id; Smartlead's nine defaults, whose ids a
  test may move (`SandboxServer.renumber_categories`) to prove ids are read by name.
- Each lead's category (`ReplyBook`), which the lead lists carry as `lead_category_id`.
- The campaign settings' out-of-office object and same-company switch, checked as Joi would
  (`check_settings`, from `update_settings`).
- `ReplyHelpers` (mixed into SandboxServer): what a lead does — a reply from another address,
  an out-of-office auto-reply, a category — recorded as Smartlead records it (history, flags,
  the lead's status by the campaign's settings) and returned as the webhook payloads Smartlead
  sends for it, in its flat shapes (help.smartlead.ai "Threaded Replies" and "Lead Category
  Updated"; `leadCorrespondence` from api.smartlead.ai/reference/email-reply-webhooks). The
  sandbox delivers no webhooks itself: tests post these to the receiver.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

from smartlead.sandbox.data import Account, ApiError, CampaignState, joi, reject_unknown, timestamp

DEFAULT_CATEGORIES = (
    (1, "Interested", "positive"),
    (2, "Meeting Request", "positive"),
    (3, "Not Interested", "negative"),
    (4, "Do Not Contact", "negative"),
    (5, "Information Request", "neutral"),
    (6, "Out Of Office", "neutral"),
    (7, "Wrong Person", "neutral"),
    (8, "Uncategorizable by AI", "neutral"),
    (9, "Sender Originated Bounce", "negative"),
)
OUT_OF_OFFICE_FLAGS = ("ignoreOOOasReply", "autoReactivateOOO", "autoCategorizeOOO")
OUT_OF_OFFICE_KEYS = (*OUT_OF_OFFICE_FLAGS, "reactivateOOOwithDelay")


def check_settings(body: dict) -> None:
    """The reply settings of `POST /campaigns/{id}/settings`: an object with the four keys
    integrators send (booleans; the delay a whole number of days, null or a digit string),
    and a boolean same-company switch. Anything else is refused as Joi refuses it."""
    if "out_of_office_detection_settings" in body:
        ooo = body["out_of_office_detection_settings"]
        if not isinstance(ooo, dict):
            raise joi('"out_of_office_detection_settings" must be of type object')
        reject_unknown(ooo, OUT_OF_OFFICE_KEYS, "out_of_office_detection_settings.")
        for key in OUT_OF_OFFICE_FLAGS:
            if key in ooo and not isinstance(ooo[key], bool):
                raise joi(f'"out_of_office_detection_settings.{key}" must be a boolean')
        delay = ooo.get("reactivateOOOwithDelay")
        numeric = isinstance(delay, int) and not isinstance(delay, bool) and delay >= 0
        if delay is not None and not numeric and not (isinstance(delay, str) and delay.isdigit()):
            raise joi('"out_of_office_detection_settings.reactivateOOOwithDelay" must be a number')
    pause = body.get("auto_pause_domain_leads_on_reply", False)
    if not isinstance(pause, bool):
        raise joi('"auto_pause_domain_leads_on_reply" must be a boolean')


@dataclass
class ReplyBook:
    """Categories of each account, and of each lead in each campaign (campaign ids are unique
    across the sandbox's accounts)."""

    categories: dict[str, list[dict]] = field(default_factory=dict)
    leads: dict[tuple[int, int], int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def of(self, api_key: str) -> list[dict]:
        with self.lock:
            return self.categories.setdefault(
                api_key,
                [
                    {"id": i, "name": n, "sentiment_type": s, "created_at": "2024-01-15T10:30:00Z"}
                    for i, n, s in DEFAULT_CATEGORIES
                ],
            )

    def category_of(self, campaign_id: int, lead_id: int) -> int | None:
        return self.leads.get((campaign_id, lead_id))


class CategoryRoutes:
    """Mixed into SandboxState."""

    replies: ReplyBook

    def fetch_categories(self, account: Account, query: dict, body: Any) -> list[dict]:
        return sorted((dict(c) for c in self.replies.of(account.api_key)), key=lambda c: c["id"])


class ReplyHelpers:
    """Mixed into SandboxServer: what leads do, as Smartlead records and reports it."""

    state: Any  # SandboxState

    def renumber_categories(self, api_key: str, offset: int) -> None:
        """The account's categories get other ids (as a workspace's own would have)."""
        for category in self.state.replies.of(api_key):
            category["id"] += offset

    def lead_replied_from(
        self, api_key: str, campaign_id: int, email: str, sender: str, text: str
    ) -> dict:
        """Someone else (an alias, an assistant, a colleague) answered the email sent to
        `email`: a reply as any, the lead stopped (stop on reply), and with the campaign's
        `auto_pause_domain_leads_on_reply` its other leads at that domain paused. Returns the
        EMAIL_REPLY payload."""
        payload = self._reply(api_key, campaign_id, email, text, "Re: Hello", sender=sender)
        campaign = self._campaign(api_key, campaign_id)
        if campaign.settings.get("auto_pause_domain_leads_on_reply"):
            self._pause_domain(api_key, campaign, email)
        return payload

    def lead_out_of_office(
        self,
        api_key: str,
        campaign_id: int,
        email: str,
        text: str,
        subject: str = "Automatic reply: Hello",  # Gmail's vacation responder keeps "Re: …"
    ) -> tuple[dict, dict | None]:
        """An auto-reply. With the campaign's `ignoreOOOasReply` the lead is not stopped, and
        with `autoCategorizeOOO` it is categorised "Out Of Office". Returns the EMAIL_REPLY
        payload and the LEAD_CATEGORY_UPDATED one (None when not categorised): whether
        Smartlead sends the first for an ignored auto-reply is not documented, so tests post
        either, or both in either order."""
        campaign = self._campaign(api_key, campaign_id)
        ooo = campaign.settings.get("out_of_office_detection_settings") or {}
        lead_id = campaign.leads[email.strip().lower()]
        before = campaign.lead_status.get(lead_id)
        reply = self._reply(api_key, campaign_id, email, text, subject)
        if ooo.get("ignoreOOOasReply"):  # not a reply: the lead goes on as it was
            with self.state.accounts[api_key].lock:
                campaign.lead_status[lead_id] = before if before != "STARTED" else "INPROGRESS"
        if not ooo.get("autoCategorizeOOO"):
            return reply, None
        return reply, self.lead_categorised(api_key, campaign_id, email, "Out Of Office")

    def lead_categorised(self, api_key: str, campaign_id: int, email: str, name: str) -> dict:
        """The lead's category set (by Smartlead's AI or by hand). Returns the
        LEAD_CATEGORY_UPDATED payload."""
        account = self.state.accounts[api_key]
        campaign = self._campaign(api_key, campaign_id)
        address = email.strip().lower()
        lead_id = campaign.leads[address]
        by_name = {c["name"].lower(): c for c in self.state.replies.of(api_key)}
        new = by_name.get(name.lower())
        if new is None:
            raise ValueError(f"The account has no category {name!r}")
        old_id = self.state.replies.category_of(campaign.id, lead_id)
        old = next((c for c in self.state.replies.of(api_key) if c["id"] == old_id), None)
        self.state.replies.leads[campaign.id, lead_id] = new["id"]
        lead = account.leads[address]
        history = [dict(row) for row in campaign.history.get(lead_id, [])]
        replies = [row for row in history if row["type"] == "REPLY"]
        now = timestamp()
        return _meta(campaign, lead_id) | {
            "lead_id": lead_id,
            "event_type": "LEAD_CATEGORY_UPDATED",
            "created_at": now,
            "event_timestamp": now,
            "from_email": _mailbox(account, campaign),
            "to_email": address,
            "to_name": " ".join(filter(None, (lead.get("first_name"), lead.get("last_name")))),
            "lead_category": {
                "old_id": old and old["id"],
                "old_name": old and old["name"],
                "new_id": new["id"],
                "new_name": new["name"],
            },
            "lead_data": {"email": address}
            | {k: lead.get(k) for k in ("first_name", "last_name", "company_name", "phone_number")}
            | {"custom_fields": dict(lead.get("custom_fields") or {})},
            "history": [_last(row) | {"subject": row["subject"]} for row in history],
            "last_reply": _last(replies[-1]) if replies else None,
            "description": f"Lead category updated to {new['name']}",
        }

    # --- Helpers ---
    def _campaign(self, api_key: str, campaign_id: int) -> CampaignState:
        campaign = self.state.accounts[api_key].campaigns.get(int(campaign_id))
        if campaign is None:
            raise ApiError(404, {"error": "Campaign not found - Invalid campaign_id."})
        return campaign

    def _reply(
        self,
        api_key: str,
        campaign_id: int,
        email: str,
        text: str,
        subject: str,
        *,
        sender: str | None = None,
    ) -> dict:
        """A REPLY row recorded (state.record) and the EMAIL_REPLY payload for it."""
        stats_id = self.state.record(api_key, campaign_id, email, "REPLY", None, text)
        account = self.state.accounts[api_key]
        campaign = self._campaign(api_key, campaign_id)
        address = email.strip().lower()
        lead_id = campaign.leads[address]
        with account.lock:
            history = campaign.history[lead_id]
            reply = history[-1]
            reply["subject"] = subject
            sent = dict([row for row in history if row["type"] == "SENT"][-1])
            reply = dict(reply)
        responder = (sender or address).strip().lower()
        same = responder.rpartition("@")[2] == address.rpartition("@")[2]
        lead = account.leads[address]
        return _meta(campaign, lead_id) | {
            "event_type": "EMAIL_REPLY",
            "stats_id": stats_id,
            "stats_thread_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{campaign.id}/{lead_id}")),
            "sl_email_lead_id": str(lead_id),  # a string in Smartlead's own example
            "sl_email_lead_map_id": lead_id + campaign.id,
            "sl_lead_email": address,
            "from_email": _mailbox(account, campaign),
            "to_email": responder,
            "to_name": lead.get("first_name") if responder == address else "",
            "cc_emails": [],
            "subject": subject,
            "time_replied": reply["time"],
            "event_timestamp": reply["time"],
            "sequence_number": sent["seq_number"],
            "sent_message": _message(sent),
            "reply_message": _message(reply) | {"text": text},
            "description": f"{responder} replied to Email {sent['seq_number']} for campaign - "
            f"{campaign.name}",
            "leadCorrespondence": {
                "targetLeadEmail": address,
                "replyReceivedFrom": responder,
                "repliedCompanyDomain": "SameCompany" if same else "DifferentCompany",
            },
        }

    def _pause_domain(self, api_key: str, campaign: CampaignState, email: str) -> None:
        domain = email.strip().lower().rpartition("@")[2]
        with self.state.accounts[api_key].lock:
            for address, lead_id in campaign.leads.items():
                status = campaign.lead_status.get(lead_id)
                same = address.endswith(f"@{domain}") and address != email.strip().lower()
                if same and status not in ("COMPLETED", "STOPPED", "BLOCKED"):
                    campaign.lead_status[lead_id] = "PAUSED"


def _meta(campaign: CampaignState, lead_id: int) -> dict:
    """The fields every payload of a campaign webhook carries."""
    hook = next(iter(campaign.webhooks.values()), {})
    return {
        "webhook_id": hook.get("id"),
        "webhook_name": hook.get("name"),
        "webhook_url": hook.get("webhook_url"),
        "campaign_id": campaign.id,
        "campaign_name": campaign.name,
        "campaign_status": campaign.status,
        "client_id": None,
        "secret_key": str(uuid.uuid5(uuid.NAMESPACE_URL, f"sandbox-webhook-{hook.get('id')}")),
        "app_url": f"https://app.smartlead.ai/app/master-inbox?leadMap={lead_id + campaign.id}",
        "metadata": {"webhook_created_at": hook.get("created_at")},
    }


def _mailbox(account: Account, campaign: CampaignState) -> str:
    boxes = [account.mailboxes[i] for i in campaign.email_account_ids if i in account.mailboxes]
    return boxes[0]["from_email"] if boxes else ""


def _last(row: dict) -> dict:
    return {k: row[k] for k in ("stats_id", "type", "message_id", "time", "email_body")}


def _message(row: dict) -> dict:
    html = row["email_body"]
    return {"message_id": row["message_id"], "html": html, "text": html, "time": row["time"]}
