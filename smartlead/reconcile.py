"""Smartlead → app without webhooks: the reconcile pass repairs what lost deliveries missed.

A delivery can be lost (a deploy, an outage past Smartlead's 3 retries); then the app never
learns of a reply and would go on to create a call task for someone who answered. Hourly (a
django-q2 schedule, also `manage.py reconcile_smartlead`), for each provisioned campaign of a
connected SDR, with that SDR's key, within its rate limit and a time budget:

1. the campaign's leads Smartlead marks replied, bounced or unsubscribed (`emailStatus`), only
   those whose enrollment here an event can still change (`Enrollment.open_to_events()`: a
   completed one too, since a reply to the last email often comes after it);
2. for each, its message history, turned into the event the webhook would have carried, with the
   same identity (`webhooks.identify`: campaign + stats_id + type), stored like a delivery
   (source `reconcile`): a webhook that arrives before or after is a duplicate, applied once;
3. the new events applied by the webhook path (`applying.apply`, tenant scoping included);
4. leads Smartlead has COMPLETED whose remaining steps here are all emails: their enrollment
   completes (a call step still ahead is ours to do, so that one is left to the executor);
5. leads whose category (the list's `lead_category_id`, read by the account's names) is one we
   act on and not the one we last applied: the LEAD_CATEGORY_UPDATED that was lost, stored and
   applied like the rest (an Interested lead gets its call task, an out-of-office one its pause).

Each SDR's mailboxes are read for health first (`read_health`): the hourly health read that
holds a failing mailbox and releases a mended one.

What it found is on a `ReconcileRun` (admin).
"""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db.models import F
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from outboundhq import logs
from profiles.health import read_mailbox_health
from profiles.models import Profile
from sequences.models import (
    CampaignProvisioning,
    Engagement,
    EngagementType,
    Enrollment,
    EnrollmentStatus,
    Push,
    SequenceStatus,
    StepType,
)
from sequences.provisioning import campaign_gone, needs_attention
from smartlead import applying, bodies, categories, webhooks
from smartlead.api import (
    CampaignLead,
    HistoryMessage,
    NotFound,
    SmartleadClient,
    SmartleadError,
    events,
    limits,
)
from smartlead.models import LeadCategory, ReconcileRun, WebhookEvent

log = logging.getLogger(__name__)

# emailStatus filter → the event a webhook would have brought.
MISSED = {
    "is_replied": events.EMAIL_REPLY,
    "is_bounced": events.EMAIL_BOUNCE,
    "is_unsubscribed": events.LEAD_UNSUBSCRIBED,
}


def reconcile(
    *,
    trigger: str,
    user_id: Any = None,
    sequence_id: Any = None,
    since: datetime | None = None,
    time_budget: float | None = None,
    progress: Callable[[int, int, int], None] | None = None,
) -> ReconcileRun:
    """One pass; `progress(campaigns done, campaigns in all, events found)` after each campaign
    (the command's terminal output)."""
    run = ReconcileRun.objects.create(trigger=trigger)
    deadline = limits.clock() + (time_budget or settings.RECONCILE_TIME_BUDGET_SECONDS)
    by_sdr = campaigns_to_read(user_id=user_id, sequence_id=sequence_id)
    stored: list[int] = []
    total = waiting = sum(len(campaigns) for campaigns in by_sdr.values())
    for sender in Profile.objects.senders(by_sdr):
        campaigns = by_sdr[sender.profile_id]
        if sender.credentials is None:
            run.errors.append(f"{sender.why_not}: {len(campaigns)} campaigns wait.")
            waiting -= len(campaigns)
            continue
        # The client's deadline is on the same clock: a wait in its limiter or a retry that
        # would pass it raises instead (the campaign's error), so the pass ends on time.
        with SmartleadClient(sender.credentials.api_key, deadline=deadline) as client:
            read_health(run, client, sender.profile)
            for record in campaigns:
                if limits.clock() >= deadline:
                    break
                stored += read(run, client, record, since)
                waiting -= 1
                if progress is not None:
                    progress(run.campaigns, total, len(stored))
    if waiting:
        run.errors.append(
            f"The time budget is spent: {waiting} campaigns wait, and go first in the next pass."
        )
    if stored:
        applying.apply(WebhookEvent.objects.filter(pk__in=stored))
        applied = WebhookEvent.objects.filter(pk__in=stored, outcome="applied")
        run.repaired = dict(Counter(applied.values_list("event_type", flat=True)))
    run.finished_at = timezone.now()
    run.save()
    log.info("Reconcile run %s: %s", run.pk, summary(run))
    return run


def read_health(run: ReconcileRun, client: SmartleadClient, profile: Profile) -> None:
    """One SDR's hourly mailbox health read (profiles/health.py), counted on the run: a mailbox
    failing is held, a mended one released; the outbox acts on either at the next run."""
    before = client.requests_sent
    run.errors.extend(read_mailbox_health(client, profile))
    run.smartlead_requests += client.requests_sent - before


def campaigns_to_read(
    *, user_id: Any = None, sequence_id: Any = None
) -> dict[Any, list[CampaignProvisioning]]:
    """Provisioned campaigns of live sequences by SDR, those read longest ago (or never) first:
    a pass the time budget cuts short leaves the rest to go first in the next one, so no
    campaign is starved by those ahead of it."""
    records = (
        CampaignProvisioning.objects.filter(
            state="ready",
            campaign_id__isnull=False,
            sequence__status__in=[SequenceStatus.ACTIVE, SequenceStatus.PAUSED],
        )
        .select_related("sequence")
        .order_by(F("reconciled_at").asc(nulls_first=True), "campaign_id")
    )
    if user_id:
        records = records.filter(sequence__created_by_id=user_id)
    if sequence_id:
        records = records.filter(sequence_id=sequence_id)
    by_sdr: dict[Any, list[CampaignProvisioning]] = defaultdict(list)
    for record in records:
        by_sdr[record.sequence.created_by_id].append(record)
    return by_sdr


def read(
    run: ReconcileRun, client: SmartleadClient, record: CampaignProvisioning, since: Any
) -> list[int]:
    """One campaign read and counted on the run; the ids of the events it stored.

    Nothing one campaign holds stops the pass for the others: Smartlead failing is retried
    first next pass (the campaign keeps its place); anything else (data we cannot read) is on
    the run's errors, and the campaign goes to the back, so it cannot stand first every hour."""
    before = client.requests_sent
    stored: list[int] = []
    try:
        stored = repair(run, client, record, since)
        CampaignProvisioning.objects.filter(pk=record.pk).update(reconciled_at=timezone.now())
    except SmartleadError as exc:
        run.errors.append(logs.redact(f"Campaign {record.campaign_id}: {exc}"))
        if isinstance(exc, NotFound):
            lost(run, client, record)
    except Exception as exc:  # noqa: BLE001 - one campaign's bad data must not stop the others
        log.exception("Reconciling campaign %s failed", record.campaign_id)
        run.errors.append(
            logs.redact(f"Campaign {record.campaign_id}: {type(exc).__name__}: {exc}")[:1000]
        )
        CampaignProvisioning.objects.filter(pk=record.pk).update(reconciled_at=timezone.now())
    run.campaigns += 1
    run.smartlead_requests += client.requests_sent - before
    return stored


def lost(run: ReconcileRun, client: SmartleadClient, record: CampaignProvisioning) -> None:
    """A 404 on a campaign's leads: asked as the executor asks (`campaign_gone`), a campaign
    Smartlead no longer has stops being "ready" and needs attention, instead of failing every
    pass while the admin and dashboard call it ready."""
    creator = record.sequence.created_by
    mailbox = record.mailbox_id or (creator.mailbox_id if creator else None)
    try:
        reason = campaign_gone(client, record.campaign_id, mailbox or 0)
    except SmartleadError as exc:
        run.errors.append(logs.redact(f"Campaign {record.campaign_id} not looked up: {exc}"))
        return
    if reason is not None:
        needs_attention(record.sequence_id, reason)
        run.errors.append(f"Sequence {record.sequence_id} needs attention: {reason}")


def repair(
    run: ReconcileRun, client: SmartleadClient, record: CampaignProvisioning, since: Any
) -> list[int]:
    """One campaign: the events its open leads are missing, stored; returns their ids."""
    campaign_id = record.campaign_id
    ledger = dict(
        Push.objects.filter(campaign_id=campaign_id, state="pushed").values_list(
            "email", "enrollment_id"
        )
    )
    open_ids = set(
        Enrollment.objects.filter(
            pk__in=ledger.values(), status__in=Enrollment.open_to_events()
        ).values_list("pk", flat=True)
    )
    stored: list[int] = []
    for flag, event_type in MISSED.items():
        for lead in client.campaign_leads(campaign_id, email_status=flag):
            if ledger.get(lead.email) not in open_ids:
                continue
            history = client.message_history(campaign_id, lead.id)
            for payload in missed_events(event_type, campaign_id, lead, history, since):
                stored += _store(payload)
    leads = client.campaign_leads(campaign_id)
    finished = [lead for lead in leads if lead.status == "COMPLETED"]
    run.completed += complete(
        record, [ledger[lead.email] for lead in finished if lead.email in ledger]
    )
    try:
        stored += categorised(client, record, ledger, leads)
    except SmartleadError as exc:  # what was found so far is still applied
        run.errors.append(logs.redact(f"Campaign {campaign_id} categories: {exc}"))
    return stored


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
        replies = [m for m in history if m.type == "REPLY" and _after(m.time, since)]
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
    if last is None or not _after(last.time, since):
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
            payload |= _last_reply(client.message_history(record.campaign_id, lead.id))
        stored += _store(payload)
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


def _last_reply(history: list[HistoryMessage]) -> dict[str, Any]:
    replies = [m for m in history if m.type == "REPLY"]
    if not replies:
        return {}
    last = replies[-1]
    reply = {"message_id": last.message_id, "email_body": last.body, "time": last.time}
    return {"last_reply": reply, "event_timestamp": last.time}


def _after(moment: str, since: datetime | None) -> bool:
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


def _store(payload: dict[str, Any]) -> list[int]:
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


def complete(record: CampaignProvisioning, enrollment_ids: list[Any]) -> int:
    """Enrollments whose emails Smartlead has all sent, and whose remaining steps are emails."""
    steps = sorted(record.sequence.steps.all(), key=lambda s: s.step_number)
    candidates = Enrollment.objects.filter(
        pk__in=enrollment_ids, status=EnrollmentStatus.ACTIVE
    ).values_list("pk", "current_step")
    done = [
        pk
        for pk, current in candidates
        if all(s.step_type == StepType.EMAIL for s in steps if s.step_number >= current)
    ]
    if not done:
        return 0
    return Enrollment.objects.end(done, EnrollmentStatus.COMPLETED, timezone.now())


def summary(run: ReconcileRun) -> str:
    repaired = ", ".join(f"{n} {kind}" for kind, n in sorted(run.repaired.items())) or "nothing"
    return (
        f"{run.campaigns} campaigns read, repaired: {repaired}, {run.completed} completed, "
        f"{run.smartlead_requests} Smartlead requests, {len(run.errors)} errors"
    )
