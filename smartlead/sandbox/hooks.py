"""The sandbox's webhooks: when something happens to a lead, the sandbox POSTs Smartlead's flat
payload to each of the campaign's webhooks that subscribed to the event, as Smartlead does.

Smartlead's own help-centre pages give each payload's fields (`event_type`, `stats_id`,
`sl_email_lead_id`, `sl_lead_email`, `to_email`, `event_timestamp`, `campaign_id`,
`sequence_number`, `sent_message`/`reply_message`, `secret_key`, `webhook_id`...); the sandbox
sends those, with the registered URL as it was saved (so a per-campaign token in it works as
in production). Deliveries go out over plain HTTP from the sandbox's process (the standard
library, like its server), one POST each, no retry: a failed one is reported to the caller.

Events happen through the sandbox's control route (`POST /sandbox/campaigns/{id}/events`)
or `SandboxServer.lead_event` in process (`WebhookHelpers`, mixed into the server); a reply's
payload is the one sandbox/replies.py builds. `deliver: false` records the event at Smartlead
without a webhook, as a lost delivery would (the reconcile pass then finds it).
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime
from typing import Any

from smartlead.api import events
from smartlead.sandbox.data import ApiError, CampaignState, legacy

# What the sandbox's lead history records for each event it can make happen; opens and clicks
# change nothing Smartlead lists there (they are only counted and delivered).
RECORDED = {
    events.EMAIL_SENT: "SENT",
    events.EMAIL_REPLY: "REPLY",
    events.EMAIL_BOUNCE: "BOUNCE",
    events.LEAD_UNSUBSCRIBED: "UNSUBSCRIBE",
}
HAPPENS = frozenset((*RECORDED, events.EMAIL_OPEN, events.EMAIL_LINK_CLICK))
TIMEOUT = 10.0
# The sandbox's own route, outside Smartlead's API: make something happen to a lead and deliver
# its webhooks. Authenticated by the account's key like the others, outside its rate limit.
EVENTS_ROUTE = re.compile(r"^/sandbox/campaigns/(?P<campaign_id>\d+)/events/?$")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def payload(
    event_type: str,
    campaign_id: int,
    campaign: CampaignState,
    lead: dict[str, Any],
    *,
    stats_id: str,
    step: int,
    text: str,
    hook: dict[str, Any],
) -> dict[str, Any]:
    """Smartlead's flat webhook body for one event about one lead (a reply's is
    sandbox/replies.py's)."""
    when = now_iso()
    email = lead.get("email") or lead["address"]
    sent = {
        "message_id": f"<{stats_id}@sandbox.smartlead.test>",
        "html": "<p>Hello</p>",
        "text": "Hello",
        "time": when,
    }
    body: dict[str, Any] = {
        "webhook_id": hook["id"],
        "webhook_name": hook["name"],
        "webhook_url": hook["webhook_url"],
        "event_type": event_type,
        "stats_id": stats_id,
        "sl_email_lead_id": str(lead["id"]),
        "sl_lead_email": email,
        "from_email": "sender@sandbox.smartlead.test",
        "to_email": email,
        "to_name": " ".join(p for p in (lead.get("first_name"), lead.get("last_name")) if p),
        "event_timestamp": when,
        "subject": "Hello",
        "campaign_id": campaign_id,
        "campaign_name": campaign.name,
        "campaign_status": campaign.status,
        "sequence_number": step,
        "sent_message": sent,
        # Smartlead puts a secret of the webhook's in every body; the receiver redacts it.
        "secret_key": str(uuid.uuid5(uuid.NAMESPACE_URL, f"sandbox-webhook-{hook['id']}")),
        "description": f"{event_type} for {email} (Smartlead sandbox)",
        "app_url": f"https://app.smartlead.test/app/master-inbox?leadMap={lead['id']}",
        "metadata": {"webhook_created_at": hook["created_at"]},
    }
    if event_type == events.EMAIL_BOUNCE:
        body |= {"bounce_type": "HARD", "is_bounced": True, "bounce_reason": text}
        body["is_sender_originated_bounce"] = False
    return body


def post(url: str, body: dict[str, Any]) -> int | str:
    """One delivery: the status our receiver answered, or why there was none."""
    request = urllib.request.Request(  # noqa: S310 - the URL is one the campaign registered
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "User-Agent": "SmartleadSandbox/1.0"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:  # noqa: S310
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, OSError) as error:
        return f"not delivered: {error}"


def subscribed(campaign: CampaignState, event_type: str) -> list[dict[str, Any]]:
    """The campaign's webhooks that asked for this event (EMAIL_SENT also covers the legacy
    FIRST_EMAIL_SENT name)."""
    wanted = {event_type} | (
        {events.FIRST_EMAIL_SENT} if event_type == events.EMAIL_SENT else set()
    )
    return [dict(hook) for hook in campaign.webhooks.values() if wanted & set(hook["event_types"])]


class WebhookHelpers:
    """Mixed into SandboxServer (beside sandbox/replies.py's ReplyHelpers, whose reply it
    sends): something happens to a lead, and the campaign's webhooks hear of it."""

    state: Any  # SandboxState
    lead_replied_from: Any  # ReplyHelpers': records a reply, returns its EMAIL_REPLY payload

    def lead_event(
        self,
        api_key: str,
        campaign_id: int,
        email: str,
        event_type: str,
        *,
        text: str = "",
        deliver: bool = True,
    ) -> dict[str, Any]:
        """`event_type` happens to the lead: recorded as Smartlead would, then POSTed to each of
        the campaign's webhooks that asked for it (unless `deliver` is off). Returns the
        stats_id involved and each delivery's answer (a status, or why none)."""
        if event_type not in HAPPENS:
            raise ApiError(400, {"message": f"The sandbox cannot make {event_type!r} happen."})
        account = self.state.accounts[api_key]
        campaign = account.campaigns.get(int(campaign_id))
        address = email.strip().lower()
        if campaign is None or address not in campaign.leads:
            raise legacy(f"Lead {email} not found in campaign {campaign_id}.", 404)
        reply = None
        if event_type == events.EMAIL_REPLY:
            reply = self.lead_replied_from(api_key, int(campaign_id), address, address, text)
        elif event_type in RECORDED:
            self.state.record(api_key, int(campaign_id), address, RECORDED[event_type], None, text)
        with account.lock:
            sent = [
                r for r in campaign.history.get(campaign.leads[address], []) if r["type"] == "SENT"
            ]
            lead = {"address": address} | account.leads[address]
            targets = subscribed(campaign, event_type) if deliver else []
        stats_id = sent[-1]["stats_id"] if sent else str(uuid.uuid4())
        answers = []
        for hook in targets:
            if reply is not None:  # the same reply, as each webhook of the campaign gets it
                body = reply | {field: hook[key] for field, key in HOOK_FIELDS.items()}
            else:
                body = payload(
                    event_type,
                    int(campaign_id),
                    campaign,
                    lead,
                    stats_id=stats_id,
                    step=sent[-1]["seq_number"] if sent else 1,
                    text=text,
                    hook=hook,
                )
            answers.append({"webhook_id": hook["id"], "status": post(hook["webhook_url"], body)})
        return {"stats_id": reply["stats_id"] if reply else stats_id, "deliveries": answers}

    def control(self, api_key: str | None, path: str, body: Any) -> Any:
        """`POST /sandbox/campaigns/{id}/events` {"email", "event_type", "text", "deliver"}."""
        found = EVENTS_ROUTE.match(path)
        if found is None or not isinstance(body, dict):
            raise ApiError(404, f"Cannot POST {path}")
        return self.lead_event(
            api_key or "",
            int(found["campaign_id"]),
            str(body.get("email", "")),
            str(body.get("event_type", "")),
            text=str(body.get("text", "")),
            deliver=body.get("deliver", True) is not False,
        )


# A reply's payload names the webhook it goes to: these fields, per webhook.
HOOK_FIELDS = {"webhook_id": "id", "webhook_name": "name", "webhook_url": "webhook_url"}
