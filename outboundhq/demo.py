"""The demo's two steps beyond seeding (scripts/demo): starting over, and what Smartlead reports.

`reset` removes every row the demo made, so a second run starts from the same clean state as
the first (the sandbox restarts empty, and campaign ids the database kept would name nothing
there). It never touches another SDR's rows; runs, reconcile passes and verdicts, which name no
SDR, are removed only when the database holds no SDR but the demo's.

`activity` makes Smartlead's side happen in the sandbox (sandbox/hooks.py), so every part of
the dashboard has data: emails sent, opened and clicked, a reply and a bounce per campaign,
each delivered to our receiver at the campaign's own signed URL; a reply recorded at Smartlead
whose webhook never came (the reconcile pass finds it); one delivery from a misconfigured
webhook (another campaign's URL), which the receiver rejects; and, in the app, a paused
enrollment the next run carries to Smartlead (the outbox).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from collections import Counter, defaultdict
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from outboundhq.models import VerdictState
from profiles.models import CredentialCheck, Profile
from sequences.models import (
    CallTask,
    CampaignProvisioning,
    Contact,
    Engagement,
    Enrollment,
    ExecutorRun,
    Push,
    PushState,
    Sequence,
    SequenceStep,
    StepRecord,
    SyncChange,
)
from sequences.provisioning import receiver_url
from smartlead.api import events, tokens
from smartlead.models import ReconcileRun, WebhookEvent
from smartlead.sandbox import control

# What happens to each campaign's leads, in email order: every one is sent the first email;
# then (index: events) some open, one clicks, one replies, one bounces.
HAPPENINGS = {
    0: [events.EMAIL_OPEN, events.EMAIL_LINK_CLICK],
    1: [events.EMAIL_OPEN, events.EMAIL_REPLY],
    2: [events.EMAIL_BOUNCE],
}
LOST_REPLY = 3  # this lead's reply is recorded at Smartlead, its webhook never sent
PAUSED_IN_APP = 4  # the SDR pauses this lead's enrollment in the web app
REPLY_TEXT = "Thanks, this looks relevant: can we talk on Thursday?"


def reset(sdrs: list[uuid.UUID]) -> Counter[str]:
    """Every row of the demo SDRs, gone; returns how many of each kind."""
    sequences = list(Sequence.objects.filter(created_by__in=sdrs).values_list("pk", flat=True))
    enrollments = Enrollment.objects.filter(sequence__in=sequences)
    campaigns = set(
        CampaignProvisioning.objects.filter(sequence__in=sequences)
        .exclude(campaign_id=None)
        .values_list("campaign_id", flat=True)
    )
    only_demo = not Profile.objects.exclude(pk__in=sdrs).exists()
    counts: Counter[str] = Counter()

    def gone(label: str, queryset: Any) -> None:
        counts[label] += queryset.delete()[1].get(queryset.model._meta.label, 0)

    with transaction.atomic():
        events_of_demo = WebhookEvent.objects.all()
        if not only_demo:
            events_of_demo = events_of_demo.filter(campaign_id__in=campaigns)
        gone("webhook events", events_of_demo)
        gone("pushes", Push.objects.filter(profile_id__in=sdrs))
        gone("outbox changes", SyncChange.objects.filter(profile_id__in=sdrs))
        gone("step records", StepRecord.objects.filter(enrollment_id__in=enrollments.values("pk")))
        gone("campaign records", CampaignProvisioning.objects.filter(sequence__in=sequences))
        gone("engagements", Engagement.objects.filter(contact__created_by__in=sdrs))
        gone("call tasks", CallTask.objects.filter(contact__created_by__in=sdrs))
        gone("enrollments", enrollments)
        gone("steps", SequenceStep.objects.filter(sequence__in=sequences))
        gone("sequences", Sequence.objects.filter(pk__in=sequences))
        gone("contacts", Contact.objects.filter(created_by__in=sdrs))
        gone("credential checks", CredentialCheck.objects.filter(profile_id__in=sdrs))
        gone("SDRs", Profile.objects.filter(pk__in=sdrs))
        verdicts = VerdictState.objects.filter(key__in=[f"sdr:{pk}" for pk in sdrs])
        if only_demo:
            gone("executor runs", ExecutorRun.objects.all())
            gone("reconcile passes", ReconcileRun.objects.all())
            verdicts = VerdictState.objects.all()
        gone("verdicts", verdicts)
    return +counts


def activity(sdrs: list[uuid.UUID]) -> list[str]:
    """Smartlead's side of the demo, made to happen in the sandbox; what happened, in words."""
    base = settings.SMARTLEAD_BASE_URL
    control.sandbox_root(base)  # refuses anything but a local sandbox
    if receiver_url() is None:
        return ["No webhooks: PUBLIC_BASE_URL and SMARTLEAD_WEBHOOK_SECRET are not set."]
    lines = []
    campaigns = pushed_by_campaign(sdrs)
    for (campaign, profile), emails in sorted(campaigns.items(), key=lambda item: item[0][0]):
        key = profile.smartlead_key()
        lines.append(happen(base, key, campaign, profile, emails))
        if len(emails) > LOST_REPLY:
            control.lead_event(
                base,
                key,
                campaign,
                emails[LOST_REPLY],
                events.EMAIL_REPLY,
                text=REPLY_TEXT,
                deliver=False,
            )
            lines.append(
                f"  {emails[LOST_REPLY]} replied too, but that webhook never came (a lost "
                "delivery): the reconcile pass finds it at Smartlead."
            )
    if len(campaigns) >= 2:
        lines.append(misdirected(*sorted(campaign for campaign, _ in campaigns)[:2]))
    lines += pause_in_app(campaigns)
    return lines


def pushed_by_campaign(sdrs: list[uuid.UUID]) -> dict[tuple[int, Profile], list[str]]:
    profiles = Profile.objects.in_bulk(sdrs)
    found: dict[tuple[int, Profile], list[str]] = defaultdict(list)
    pushes = Push.objects.filter(profile_id__in=sdrs, state=PushState.PUSHED).order_by("email")
    for push in pushes:
        found[(push.campaign_id, profiles[push.profile_id])].append(push.email.lower())
    return found


def happen(base: str, key: str, campaign: int, profile: Profile, emails: list[str]) -> str:
    """The first email to each lead, then HAPPENINGS; one line on what was delivered."""
    answers: Counter[str] = Counter()
    done: Counter[str] = Counter()
    for index, email in enumerate(emails):
        for event_type in [events.EMAIL_SENT, *HAPPENINGS.get(index, [])]:
            text = REPLY_TEXT if event_type == events.EMAIL_REPLY else "550 No such user"
            result = control.lead_event(base, key, campaign, email, event_type, text=text)
            done[event_type] += 1
            answers.update(str(d["status"]) for d in result["deliveries"])
    what = ", ".join(f"{n} {kind}" for kind, n in sorted(done.items()))
    said = ", ".join(f"{n} answered {status}" for status, n in sorted(answers.items()))
    return f"Campaign {campaign} ({profile.label}): {what}; webhooks: {said or 'none'}."


def misdirected(first: int, second: int) -> str:
    """One delivery to campaign `first`'s signed URL about campaign `second`: what a webhook
    copied between campaigns would send. The receiver keeps it as rejected, and says why."""
    url = f"{receiver_url()}?campaign={first}&token={tokens.current_token(first)}"
    body = {"event_type": events.EMAIL_OPEN, "campaign_id": second, "to_email": "x@demo.test"}
    request = urllib.request.Request(  # noqa: S310 - our own receiver, from settings
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    return (
        f"A delivery at campaign {first}'s URL about campaign {second} (a webhook copied "
        f"between campaigns) was answered {status} and kept as rejected."
    )


def pause_in_app(campaigns: dict[tuple[int, Profile], list[str]]) -> list[str]:
    """What an SDR does in the web app: pause one lead, which the outbox carries to Smartlead."""
    for (campaign, profile), emails in sorted(campaigns.items(), key=lambda item: item[0][0]):
        if len(emails) <= PAUSED_IN_APP:
            continue
        target = Enrollment.objects.filter(
            sequence__created_by=profile, contact__email__iexact=emails[PAUSED_IN_APP]
        ).values_list("pk", flat=True)
        if Enrollment.objects.pause(list(target), timezone.now()):
            return [
                f"In the app, {profile.label} paused {emails[PAUSED_IN_APP]}: the next run "
                f"pauses the lead in campaign {campaign} (the outbox)."
            ]
    return []


def summary(sdrs: list[uuid.UUID]) -> list[str]:
    """Per demo SDR: their campaign, leads pushed, webhook events, enrollments by status."""
    lines = []
    for sequence in Sequence.objects.filter(created_by__in=sdrs).select_related("created_by"):
        pushed = Push.objects.filter(sequence_id=sequence.pk, state=PushState.PUSHED).count()
        campaign = sequence.campaign
        received = WebhookEvent.objects.filter(campaign_id=campaign).count() if campaign else 0
        statuses = Counter(
            Enrollment.objects.filter(sequence=sequence).values_list("status", flat=True)
        )
        states = ", ".join(f"{n} {status}" for status, n in sorted(statuses.items()))
        lines.append(
            f"{sequence.created_by.label}: campaign {campaign or 'none (not connected)'}, "
            f"{pushed} leads pushed, {received} webhook events; enrollments: {states}"
        )
    return sorted(lines)
