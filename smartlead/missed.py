"""What a webhook would have brought: the events the reconcile pass (smartlead/reconcile.py)
rebuilds from a campaign's lead lists and message history, in Smartlead's flat shape, stored like
deliveries with the same identity (so a webhook before or after is a duplicate, applied once)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from sequences.models import (
    CampaignProvisioning,
    Engagement,
    EngagementType,
    Enrollment,
    EnrollmentStatus,
)
from smartlead import bodies, categories, webhooks
from smartlead.api import CampaignLead, HistoryMessage, SmartleadClient, events
from smartlead.models import LeadCategory, WebhookEvent

# emailStatus filter → the event a webhook would have brought.
MISSED = {
    "is_replied": events.EMAIL_REPLY,
    "is_bounced": events.EMAIL_BOUNCE,
    "is_unsubscribed": events.LEAD_UNSUBSCRIBED,
}


def missed_events(
    event_type: str,
    campaign_id: int,
    lead: CampaignLead,
    history: list[HistoryMessage],
    since: datetime | None,
) -> list[dict[str, Any]]:
    """The payloads Smartlead's webhook would have sent, in its flat shape."""
    sent = [m for m in history if m.type == "SENT"]
    base = {
        "event_type": event_type,
        "campaign_id": campaign_id,
        "sl_lead_email": lead.email,
        "to_email": lead.email,
        "sl_email_lead_id": lead.id,
        "description": "Found by the reconcile pass (no webhook delivery arrived).",
    }
    if event_type == events.EMAIL_REPLY:
        replies = [m for m in history if m.type == "REPLY" and after(m.time, since)]
        return [
            base
            | {
                "stats_id": reply.stats_id,
                "event_timestamp": reply.time,
                "subject": reply.subject,
                "reply_message": {
                    "message_id": reply.message_id,
                    "text": reply.body,
                    "time": reply.time,
                },
            }
            for reply in replies
        ]
    last = sent[-1] if sent else None
    when = {"event_timestamp": last.time, "sequence_number": last.sequence_number} if last else {}
    if event_type == events.LEAD_UNSUBSCRIBED:
        # When it happened is unknown (after the last email, at the earliest), so `since` cannot
        # rule it out; its identity (campaign and lead) makes one already stored a duplicate.
        return [base | when]
    if last is None or not after(last.time, since):
        return []
    return [base | {"stats_id": last.stats_id} | when]


# The categories whose change does something (smartlead/effects.py); others only inform.
ACTED_ON = (
    categories.INTERESTED,
    categories.MEETING_REQUEST,
    categories.NOT_INTERESTED,
    categories.DO_NOT_CONTACT,
    categories.OUT_OF_OFFICE,
)


def categorised(
    client: SmartleadClient,
    record: CampaignProvisioning,
    ledger: dict[str, Any],
    leads: list[CampaignLead],
) -> list[int]:
    """Step 5: the lost category changes, as the events Smartlead would have sent, stored."""
    marked = [lead for lead in leads if lead.category_id is not None and lead.email in ledger]
    if not marked:
        return []
    names = categories.read(client, record.sequence.created_by_id)
    applied = last_categories([ledger[lead.email] for lead in marked])
    stored: list[int] = []
    for lead in marked:
        name = categories.name_of(lead.category_id, names)
        known = applied.get(ledger[lead.email])
        if categories.normal(name) not in ACTED_ON or known is None:
            continue  # nothing to do, or the enrollment has ended for good
        if categories.normal(known) == categories.normal(name):
            continue
        payload = category_event(record.campaign_id, lead, name, known)
        if categories.normal(name) == categories.OUT_OF_OFFICE:
            payload |= last_reply(client.message_history(record.campaign_id, lead.id))
        stored += store(payload)
    return stored


def last_categories(enrollment_ids: list[Any]) -> dict[Any, str]:
    """The category each enrollment last had applied ("" for none), for those a category can
    still change: not unsubscribed or failed. One delivered before categories acted (only
    its engagement was kept) counts as applied: old categories are not acted on afresh."""
    live = Enrollment.objects.filter(pk__in=enrollment_ids).exclude(
        status__in=[EnrollmentStatus.UNSUBSCRIBED, EnrollmentStatus.FAILED]
    )
    found = dict.fromkeys(live.values_list("pk", flat=True), "")
    engaged = (
        Engagement.objects.filter(
            enrollment_id__in=list(found), engagement_type=EngagementType.LEAD_CATEGORY_UPDATED
        )
        .order_by("engaged_at")
        .values_list("enrollment_id", "metadata")
    )
    for pk, data in engaged:
        found[pk] = (data or {}).get("new_category") or (data or {}).get("category") or found[pk]
    for pk, name in LeadCategory.objects.filter(pk__in=list(found)).values_list("pk", "name"):
        found[pk] = name
    return found


def category_event(campaign_id: int, lead: CampaignLead, name: str, old: str) -> dict[str, Any]:
    """LEAD_CATEGORY_UPDATED in Smartlead's flat shape, as the webhook would have carried it."""
    return {
        "event_type": events.LEAD_CATEGORY_UPDATED,
        "campaign_id": campaign_id,
        "lead_id": lead.id,
        "to_email": lead.email,
        "lead_data": {"email": lead.email},
        "lead_category": {
            "old_id": None,
            "old_name": old or None,
            "new_id": lead.category_id,
            "new_name": name,
        },
        "description": "Found by the reconcile pass (no webhook delivery arrived).",
    }


def last_reply(history: list[HistoryMessage]) -> dict[str, Any]:
    replies = [m for m in history if m.type == "REPLY"]
    if not replies:
        return {}
    last = replies[-1]
    reply = {"message_id": last.message_id, "email_body": last.body, "time": last.time}
    return {"last_reply": reply, "event_timestamp": last.time}


def after(moment: str, since: datetime | None) -> bool:
    """Whether a message's time is at or after `since`; a time that does not parse (Smartlead's
    data, e.g. the 30th of February) counts as after: the event is kept, dated unknown."""
    if since is None or not moment:
        return True
    try:
        when = parse_datetime(moment.strip()[:64])
    except ValueError:
        return True
    if when is None:
        return True
    return (when if timezone.is_aware(when) else when.replace(tzinfo=UTC)) >= since


def store(payload: dict[str, Any]) -> list[int]:
    raw = json.dumps(payload)
    identity = webhooks.identify(payload, raw)
    # A reply's whole text comes from its history: kept within the same bound as a delivery.
    stored = WebhookEvent.objects.store(
        **identity.fields(),
        source="reconcile",
        raw_body=bodies.kept(raw, identity.event_type),
        headers={},
    )
    return [stored.id] if stored.created else []
