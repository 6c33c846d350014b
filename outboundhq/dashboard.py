"""The ops dashboard: "is sending healthy, and if not, whose and why?" on one admin page.

First every job's verdict (outboundhq/verdicts.py), then the figures behind them. Every figure
is one aggregate query, so the page costs the same number of queries whatever the row count.
The figures are cached for a minute (`FIGURES_SECONDS`): at 200,000 enrollments and a week of
webhooks the aggregates scan most of two tables (100-250 ms on a busy 2-core machine,
docs/PERFORMANCE.md), the tables are Supabase's or append-only logs where an index would not
narrow a week-long count, and a glance page a minute old answers the same question.
`?refresh=1` recomputes them now. The aggregates live here rather than on the models' QuerySets
because those modules are being restructured; each is a plain function of a queryset, easy to
move onto a manager.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.db.models import Case, Count, F, Min, Q, Value, When
from django.db.models.functions import TruncDate
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone

from outboundhq.health import sees_ops, worst
from outboundhq.links import changelist
from outboundhq.verdicts import all_verdicts
from profiles.credentials import SENDING, SQL_STATUSES
from profiles.models import Profile
from sequences.models import CampaignProvisioning, Enrollment, ExecutorRun, SyncChange
from smartlead.models import Outcome, ReconcileRun, WebhookEvent

WINDOW = timedelta(days=7)
MAX_RUNS = 60  # a 15-minute schedule makes ~670 runs a week: the chart shows the latest ones
MAX_RECONCILE_RUNS = 12
# Rejected deliveries have no event type (the body was unusable): they get a row of their own.
REJECTED_ROW = "Rejected deliveries"
FIGURES_SECONDS = 60
FIGURES_KEY = "outboundhq:dashboard:figures"

# The annotation of the one "connected" rule (profiles/models.py: with_smartlead_status).
STATUS_ANNOTATION = "connection_status"


def with_status(profiles: Any) -> Any:
    return profiles.with_smartlead_status()


@dataclass
class Bar:
    label: str
    value: int
    href: str
    width: float = 0.0  # percent of the largest bar in its chart


def scaled(bars: list[Bar]) -> list[Bar]:
    top = max((b.value for b in bars), default=0) or 1
    for bar in bars:
        bar.width = round(100 * bar.value / top, 1)
    return bars


def run_figures(since: Any) -> list[dict[str, Any]]:
    """Pushed / skipped (per reason, when the run records them) / failed per run, oldest first."""
    runs = list(
        ExecutorRun.objects.filter(started_at__gte=since, dry_run=False).order_by("-started_at")[
            :MAX_RUNS
        ]
    )
    top = max((r.pushed + r.failed + _skipped_total(r) for r in runs), default=0) or 1
    rows = []
    for run in reversed(runs):
        skipped = skipped_by_reason(run)
        rows.append(
            {
                "run": run,
                "href": reverse("admin:sequences_executorrun_change", args=[run.pk]),
                "skipped": skipped,
                "parts": stacked(
                    [
                        ("pushed", run.pushed),
                        ("skipped", sum(skipped.values())),
                        ("failed", run.failed),
                    ],
                    top,
                ),
            }
        )
    return rows


def stacked(parts: list[tuple[str, int]], top: int) -> list[tuple[str, int, float, float]]:
    """(name, count, width %, x %) of each part of one stacked bar, side by side."""
    out, x = [], 0.0
    for name, n in parts:
        width = 100 * n / top
        out.append((name, n, round(width, 1), round(x, 1)))
        x += width
    return out


def skipped_by_reason(run: ExecutorRun) -> dict[str, int]:
    """Leads skipped by reason: not connected, and each reason Smartlead turned leads away."""
    reasons = {str(k): int(v) for k, v in (run.skipped or {}).items() if v}
    if run.skipped_no_credentials:
        reasons["no credentials"] = run.skipped_no_credentials
    return reasons


def _skipped_total(run: ExecutorRun) -> int:
    return sum(skipped_by_reason(run).values())


def webhook_figures(since: Any) -> list[dict[str, Any]]:
    """Events per type per day, with how many were unmatched or failed: one grouped query.
    Rejected deliveries are one typed row per day, not an untyped count."""
    kind = Case(
        When(outcome=Outcome.REJECTED, then=Value(REJECTED_ROW)),
        default=F("event_type"),
    )
    rows = (
        WebhookEvent.objects.filter(received_at__gte=since)
        .annotate(day=TruncDate("received_at"), kind=kind)
        .values("day", "kind")
        .annotate(
            n=Count("id"),
            unmatched=Count("id", filter=Q(outcome=Outcome.UNMATCHED)),
            failed=Count("id", filter=Q(outcome=Outcome.FAILED)),
        )
        .order_by("day", "kind")
    )
    top = max((r["n"] for r in rows), default=0) or 1
    model = "smartlead_webhookevent"
    figures = []
    for r in rows:
        rejected = r["kind"] == REJECTED_ROW
        filters = {"outcome": Outcome.REJECTED.value} if rejected else {"event_type": r["kind"]}
        figures.append(
            {
                **r,
                "event_type": r["kind"],
                "rejected": rejected,
                "width": round(100 * r["n"] / top, 1),
                "href": changelist(model, **filters),
                "unmatched_href": changelist(model, event_type=r["kind"], outcome="unmatched"),
                "failed_href": changelist(model, event_type=r["kind"], outcome="failed"),
            }
        )
    return figures


def rejected_reasons(since: Any) -> list[dict[str, Any]]:
    """Why deliveries were rejected this week, the most common first (a wrong token for the
    campaign, a body that is not JSON, one too large)."""
    return list(
        WebhookEvent.objects.filter(outcome=Outcome.REJECTED, received_at__gte=since)
        .values("detail")
        .annotate(n=Count("id"))
        .order_by("-n", "detail")[:5]
    )


def reconcile_figures(since: Any) -> list[dict[str, Any]]:
    """The latest reconcile passes: what each read and repaired."""
    runs = ReconcileRun.objects.filter(started_at__gte=since).order_by("-started_at")
    return [
        {
            "run": run,
            "href": reverse("admin:smartlead_reconcilerun_change", args=[run.pk]),
            "repaired": sorted((run.repaired or {}).items()),
            "errors": [str(e) for e in run.errors or []],
        }
        for run in runs[:MAX_RECONCILE_RUNS]
    ]


def verdict_figures(now: Any) -> dict[str, Any]:
    """The jobs' verdicts, and the SDRs': those that are not OK by name, the rest counted."""
    verdicts = all_verdicts(now)
    jobs = [v for v in verdicts if not v.key.startswith("sdr:")]
    sdrs = [v for v in verdicts if v.key.startswith("sdr:")]
    return {
        "overall": worst(verdicts),
        "jobs": jobs,
        "sdr_troubles": [v for v in sdrs if not v.ok],
        "sdrs_ok": sum(1 for v in sdrs if v.ok),
        "sdrs_href": changelist("profiles_profile"),
    }


def credential_figures() -> list[Bar]:
    counts = dict(
        with_status(Profile.objects.all())
        .values_list(STATUS_ANNOTATION)
        .annotate(n=Count("id"))
        .order_by()
    )
    return scaled(
        [
            Bar(
                status.label,
                counts.get(status.value, 0),
                changelist("profiles_profile", smartlead=status.value),
            )
            for status in SQL_STATUSES
        ]
    )


def waiting_figures(now: Any) -> dict[str, Any]:
    """Enrollments due now and the oldest wait, in one aggregate."""
    totals = Enrollment.objects.ready().aggregate(n=Count("id"), oldest=Min("next_send_at"))
    oldest = totals["oldest"]
    return {
        "n": totals["n"],
        "oldest": oldest,
        "wait": (now - oldest) if oldest else None,
        "href": changelist("sequences_enrollment", status="active"),
    }


def outbox_figures() -> dict[str, Any]:
    """Changes made in the app that Smartlead has not taken yet, and campaigns needing ops."""
    totals = SyncChange.objects.aggregate(
        pending=Count("id", filter=Q(state="pending")),
        failed=Count("id", filter=Q(state="failed")),
        oldest=Min("created_at", filter=Q(state="pending")),
    )
    lost = CampaignProvisioning.objects.filter(state="needs_attention").count()
    return totals | {
        "lost": lost,
        "pending_href": changelist("sequences_syncchange", state="pending"),
        "failed_href": changelist("sequences_syncchange", state="failed"),
        "lost_href": changelist("sequences_campaignprovisioning", state="needs_attention"),
    }


def figures() -> dict[str, Any]:
    """Every figure, as of now: one query each."""
    now = timezone.now()
    since = now - WINDOW
    credentials = credential_figures()
    # Connected or not yet judged: both send (the executor's rule), so "nobody can send" is
    # said only when neither is anyone's.
    sending = {status.label for status in SENDING}
    return {
        "now": now,
        "since": since,
        "health": verdict_figures(now),
        "runs": run_figures(since),
        "webhooks": webhook_figures(since),
        "rejected": rejected_reasons(since),
        "reconcile": reconcile_figures(since),
        "credentials": credentials,
        "any_sdr": any(b.value for b in credentials),
        "any_connected": any(b.value for b in credentials if b.label in sending),
        "waiting": waiting_figures(now),
        "outbox": outbox_figures(),
    }


def cached_figures(*, refresh: bool) -> dict[str, Any]:
    if not refresh and (found := cache.get(FIGURES_KEY)) is not None:
        return found
    fresh = figures()
    cache.set(FIGURES_KEY, fresh, FIGURES_SECONDS)
    return fresh


@staff_member_required
def dashboard(request: HttpRequest) -> HttpResponse:
    if not sees_ops(request.user):
        raise PermissionDenied
    context = (
        admin.site.each_context(request)
        | cached_figures(refresh="refresh" in request.GET)
        | {
            "title": "Ops dashboard",
            "cache_seconds": FIGURES_SECONDS,
            "runs_href": changelist("sequences_executorrun"),
            "webhooks_href": changelist("smartlead_webhookevent"),
            "reconcile_href": changelist("smartlead_reconcilerun"),
            "status_href": reverse("ops-status"),
        }
    )
    return render(request, "admin/outboundhq/dashboard.html", context)
