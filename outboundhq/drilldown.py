"""One SDR on one page: their verdict, pushes, failures, replies, bounce rate, mailbox health and
the runs that touched them, for a date range (`?from=&to=`, the last 7 days by default). Every
figure links to the admin list behind it, filtered to this SDR and range.

A fixed number of queries (17) whatever the SDR's volume; nothing cached, since one SDR's page
is opened to look at something happening now.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from outboundhq.health import sees_ops
from outboundhq.links import change, changelist
from outboundhq.listing import DEFAULT_DAYS, DateRange
from outboundhq.verdicts import sdr_verdicts
from profiles.models import Profile
from sequences.models import (
    Enrollment,
    EnrollmentStatus,
    ExecutorRun,
    ProvisioningState,
    Push,
    PushState,
    Sequence,
    SequenceStatus,
    SyncChange,
    SyncState,
)
from smartlead.api import events
from smartlead.models import Outcome, WebhookEvent

MAX_RUNS = 20
SENT_TYPES = (events.EMAIL_SENT, events.FIRST_EMAIL_SENT)


@staff_member_required
def sdr_page(request: HttpRequest, profile_id: uuid.UUID) -> HttpResponse:
    if not sees_ops(request.user):
        raise PermissionDenied
    profile = (
        Profile.objects.with_smartlead_status()
        .select_related("credential_check")
        .filter(pk=profile_id)
        .first()
    )
    if profile is None:
        raise Http404("No SDR has this id.")
    try:
        span = DateRange.parse(request.GET, default_days=DEFAULT_DAYS)
    except ValueError as exc:
        messages.warning(request, f"Date range ignored: {exc}")
        span = DateRange.parse({}, default_days=DEFAULT_DAYS)
    now = timezone.now()
    sequences = list(
        Sequence.objects.filter(created_by=profile).select_related("provisioning").order_by("name")
    )
    context = admin.site.each_context(request) | {
        "title": f"SDR {profile.label}",
        "profile": profile,
        "span": span,
        "now": now,
        "verdict": sdr_verdicts(now, executor_ok=True, only=profile.pk)[0],
        "status": profile.smartlead_status(),
        "check": getattr(profile, "credential_check", None),
        "mailboxes": profile.mailbox_rows(),  # one query; the profile's own when none listed
        "sequences": campaign_rows(sequences),
        "pushes": push_figures(profile, span),
        "enrollments": enrollment_figures(profile, span, now),
        "events": event_figures(profile, span, sequences),
        "outbox": outbox_figures(profile, span),
        "runs": run_rows(profile, span),
        "profile_href": change("profiles_profile", profile.pk),
    }
    context["bounce_rate"] = bounce_rate(context["events"], context["pushes"])
    return render(request, "admin/outboundhq/sdr.html", context)


def listed(model: str, profile: Profile, span: DateRange, **filters: Any) -> str:
    """The admin list of `model`, filtered to this SDR and range."""
    return changelist(model, sdr=profile.pk, **span.query(), **filters)


def push_figures(profile: Profile, span: DateRange) -> dict[str, Any]:
    pushes = span.filter(Push.objects.filter(profile_id=profile.pk), "created_at")
    totals = pushes.aggregate(
        pushed=Count("id", filter=Q(state=PushState.PUSHED)),
        rejected=Count("id", filter=Q(state=PushState.REJECTED)),
        pending=Count("id", filter=Q(state=PushState.PENDING)),
    )
    rejected = (
        pushes.filter(state=PushState.REJECTED)
        .values("outcome")
        .annotate(n=Count("id"))
        .order_by("-n")
    )
    return totals | {
        "rejected_by": [(row["outcome"] or "no reason", row["n"]) for row in rejected],
        "href": listed("sequences_push", profile, span),
        "rejected_href": listed("sequences_push", profile, span, state=PushState.REJECTED.value),
    }


def enrollment_figures(profile: Profile, span: DateRange, now: Any) -> dict[str, Any]:
    mine = Enrollment.objects.filter(sequence__created_by=profile)
    # A failed enrollment is not written again: its last update is when it failed.
    failed = Q(status=EnrollmentStatus.FAILED) & span.q("updated_at")
    due = Q(
        status=EnrollmentStatus.ACTIVE,
        sequence__status=SequenceStatus.ACTIVE,
        next_send_at__lte=now,
    )
    totals = mine.aggregate(
        active=Count("id", filter=Q(status=EnrollmentStatus.ACTIVE)),
        due=Count("id", filter=due),
        failed=Count("id", filter=failed),
    )
    return totals | {
        "href": changelist("sequences_enrollment", sdr=profile.pk),
        "failed_href": changelist(
            "sequences_enrollment", sdr=profile.pk, status=EnrollmentStatus.FAILED.value
        ),
        "due_href": changelist(
            "sequences_enrollment", sdr=profile.pk, status=EnrollmentStatus.ACTIVE.value
        ),
    }


def campaigns_of(sequences: list[Sequence]) -> set[int]:
    found = set()
    for sequence in sequences:
        record = getattr(sequence, "provisioning", None)
        campaign = record.campaign_id if record and record.campaign_id else sequence.campaign
        if campaign is not None:
            found.add(campaign)
    return found


def event_figures(profile: Profile, span: DateRange, sequences: list[Sequence]) -> dict[str, Any]:
    """What Smartlead reported about their campaigns, by type (rejected deliveries left out)."""
    rows = (
        span.filter(
            WebhookEvent.objects.filter(campaign_id__in=campaigns_of(sequences)), "received_at"
        )
        .exclude(outcome=Outcome.REJECTED)
        .values("event_type")
        .annotate(n=Count("id"))
        .order_by("event_type")
    )
    by_type = {row["event_type"]: row["n"] for row in rows}
    return {
        "by_type": sorted(by_type.items()),
        "sent": sum(by_type.get(kind, 0) for kind in SENT_TYPES),
        "replies": by_type.get(events.EMAIL_REPLY, 0),
        "bounces": by_type.get(events.EMAIL_BOUNCE, 0),
        "href": listed("smartlead_webhookevent", profile, span),
        "replies_href": listed(
            "smartlead_webhookevent", profile, span, event_type=events.EMAIL_REPLY
        ),
        "bounces_href": listed(
            "smartlead_webhookevent", profile, span, event_type=events.EMAIL_BOUNCE
        ),
    }


def bounce_rate(events_: dict[str, Any], pushes: dict[str, Any]) -> str:
    """Bounces over emails Smartlead reports sent (over leads pushed when it reports none)."""
    base, what = (
        (events_["sent"], "emails sent") if events_["sent"] else (pushes["pushed"], "leads pushed")
    )
    if not base:
        return "no email sent in this range"
    return f"{100 * events_['bounces'] / base:.1f}% ({events_['bounces']} of {base} {what})"


def outbox_figures(profile: Profile, span: DateRange) -> dict[str, Any]:
    mine = SyncChange.objects.filter(profile_id=profile.pk)
    failed = Q(state=SyncState.FAILED) & span.q("done_at")
    totals = mine.aggregate(
        pending=Count("id", filter=Q(state=SyncState.PENDING)), failed=Count("id", filter=failed)
    )
    return totals | {
        "pending_href": changelist(
            "sequences_syncchange", profile_id=profile.pk, state=SyncState.PENDING.value
        ),
        "failed_href": changelist(
            "sequences_syncchange", profile_id=profile.pk, state=SyncState.FAILED.value
        ),
    }


def campaign_rows(sequences: list[Sequence]) -> list[dict[str, Any]]:
    """Each sequence's campaign as Smartlead last told us about it: mailbox health lives here."""
    rows = []
    for sequence in sequences:
        record = getattr(sequence, "provisioning", None)
        rows.append(
            {
                "sequence": sequence,
                "href": change("sequences_sequence", sequence.pk),
                "campaign": record.campaign_id
                if record and record.campaign_id
                else sequence.campaign,
                "state": record.get_state_display() if record else "not provisioned yet",
                "attention": bool(record and record.state == ProvisioningState.NEEDS_ATTENTION),
                "mailbox": record.mailbox_id if record else None,
                "smartlead": record.smartlead_status_detail if record else "",
                "reason": record.reason if record else "",
            }
        )
    return rows


def run_rows(profile: Profile, span: DateRange) -> dict[str, Any]:
    """The runs that pushed for this SDR in the range, newest first, with their share."""
    pushes = span.filter(Push.objects.filter(profile_id=profile.pk), "created_at")
    shares = {
        row["run_id"]: row
        for row in pushes.exclude(run_id=None)
        .values("run_id")
        .annotate(
            n=Count("id"),
            pushed=Count("id", filter=Q(state=PushState.PUSHED)),
            rejected=Count("id", filter=Q(state=PushState.REJECTED)),
        )
        .order_by()
    }
    runs = ExecutorRun.objects.filter(pk__in=list(shares)).order_by("-started_at")[:MAX_RUNS]
    marks = {str(profile.pk), profile.email or str(profile.pk)}
    return {
        "rows": [
            {
                "run": run,
                "href": change("sequences_executorrun", run.pk),
                "share": shares[run.pk],
                "errors": [e for e in run.errors or [] if any(m in str(e) for m in marks)],
            }
            for run in runs
        ],
        "count": len(shares),
        "href": listed("sequences_executorrun", profile, span),
    }
