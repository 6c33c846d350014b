"""Alerts: when a job's verdict turns late or failing, and when it recovers, once per change.

Every 5 minutes (the `send-alerts` schedule, or `manage.py send_alerts`), `check`:

1. judges every job (outboundhq/verdicts.py) and records each verdict (`VerdictState`);
2. claims the changes no alert has announced yet (a job whose status differs from the status
   last announced), each by one optimistic update, so two checks at once never both send it;
3. sends them as one message per check, never one per job: by email to ALERT_EMAIL_TO
   (Django's mail settings) and as a Slack incoming-webhook POST to ALERT_WEBHOOK_URL.

A job that stays late is announced once; when it is OK again, "recovered" is announced once. A
channel that fails is logged as an error (Sentry sees it) and the change counts as announced:
retrying every 5 minutes would resend it on the channels that worked, a flood of its own.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import requests
from django.conf import settings
from django.core.mail import send_mail
from django.db.models import F
from django.urls import reverse
from django.utils import timezone

from outboundhq import logs
from outboundhq.health import Verdict
from outboundhq.models import Status, VerdictState
from outboundhq.schedules import every
from outboundhq.verdicts import all_verdicts

log = logging.getLogger(__name__)

SCHEDULE_NAME = "send-alerts"
SCHEDULE_FUNC = "outboundhq.alerts.run_scheduled"
EVERY_MINUTES = 5
# The first check after the schedule is created waits for the other schedules' first runs, so a
# fresh deploy does not announce "never ran" for jobs about to run.
FIRST_CHECK_AFTER = timedelta(minutes=20)
MAX_LINES = 30
WEBHOOK_TIMEOUT = (5.0, 10.0)
GONE = "No longer checked: the SDR has no key and no active sequence."
WORDS = {Status.OK: "RECOVERED", Status.LATE: "LATE", Status.FAILING: "FAILING"}
EMOJI = {Status.OK: ":large_green_circle:", Status.LATE: ":large_orange_circle:"}


class AlertNotSent(Exception):
    """A channel refused or could not take the alert; the message never holds a secret."""


@dataclass(frozen=True)
class Change:
    """One job whose verdict differs from what the last alert said."""

    key: str
    name: str
    was: str
    status: Status
    detail: str
    href: str = ""

    def line(self) -> str:
        if self.status == Status.OK:
            return f"RECOVERED: {self.name} is OK again. {self.detail}"
        return f"{WORDS[self.status]}: {self.name}. {self.detail}"


@dataclass
class Report:
    verdicts: list[Verdict]
    changes: list[Change] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def as_dict(self, now: datetime) -> dict[str, Any]:
        return {
            "verdicts": [v.as_dict(now) for v in self.verdicts],
            "announced": [c.line() for c in self.changes],
            "sent": self.sent,
            "errors": self.errors,
        }


def check(now: datetime | None = None, *, announce: bool = True) -> Report:
    """Steps 1-3 above; with `announce` off, only judges (nothing is recorded or sent)."""
    now = now or timezone.now()
    report = Report(all_verdicts(now))
    if not announce:
        return report
    record(report.verdicts, now)
    report.changes = claim_changes(now)
    if report.changes:
        send(report)
    return report


def record(verdicts: list[Verdict], now: datetime) -> None:
    """Step 1: each job's current verdict on its row. A job no longer judged (an SDR without a
    key or an active sequence) turns OK, so its last failing verdict recovers once."""
    states = {state.key: state for state in VerdictState.objects.all()}
    new, changed = [], []
    for verdict in verdicts:
        state = states.pop(verdict.key, None)
        if state is None:
            # A job first seen OK has nothing to announce; first seen failing, it has.
            announced = Status.OK if verdict.ok else ""
            new.append(VerdictState(key=verdict.key, since=now, announced=announced))
            state = new[-1]
        else:
            changed.append(state)
        if state.status != verdict.status:
            state.since = now
        state.name, state.status, state.detail = verdict.name[:200], verdict.status, verdict.detail
        state.checked_at = now
    for state in states.values():
        if state.status != Status.OK:
            state.status, state.detail, state.since, state.checked_at = Status.OK, GONE, now, now
            changed.append(state)
    VerdictState.objects.bulk_create(new, ignore_conflicts=True)  # another check may add it too
    fields = ["name", "status", "detail", "since", "checked_at"]
    VerdictState.objects.bulk_update(changed, fields)
    # Gone and quiet: nothing left to say about them.
    quiet = VerdictState.objects.filter(status=Status.OK, announced=Status.OK)
    quiet.filter(key__in=list(states)).delete()


def claim_changes(now: datetime) -> list[Change]:
    """Step 2: the unannounced changes this check won (another check gets none of these)."""
    claimed = []
    for state in VerdictState.objects.exclude(announced=F("status")).order_by("key"):
        won = VerdictState.objects.announce(
            state.key, was=state.announced, now=state.status, at=now
        )
        # Failing when first seen, OK before any alert said so: no news.
        if won and not (state.announced == "" and state.status == Status.OK):
            claimed.append(
                Change(state.key, state.name, state.announced, Status(state.status), state.detail)
            )
    return claimed


def send(report: Report) -> None:
    """Step 3: one message per channel for all of this check's changes."""
    subject, text = compose(report.changes)
    if settings.ALERT_EMAIL_TO:
        try:
            send_mail(subject, text, settings.DEFAULT_FROM_EMAIL, settings.ALERT_EMAIL_TO)
            report.sent.append(f"email to {', '.join(settings.ALERT_EMAIL_TO)}")
        except Exception as exc:  # noqa: BLE001 - any mail failure is reported the same way
            report.errors.append(logs.redact(f"Email alert not sent: {type(exc).__name__}: {exc}"))
    if settings.ALERT_WEBHOOK_URL:
        try:
            post_webhook(settings.ALERT_WEBHOOK_URL, slack_text(report.changes))
            report.sent.append("webhook")
        except AlertNotSent as exc:
            report.errors.append(f"Webhook alert not sent: {exc}")
    for error in report.errors:
        log.error("%s (%d changes: %s)", error, len(report.changes), subject)
    if not settings.ALERT_EMAIL_TO and not settings.ALERT_WEBHOOK_URL:
        log.warning("No alert channel (ALERT_EMAIL_TO, ALERT_WEBHOOK_URL) for: %s", subject)


def compose(changes: list[Change]) -> tuple[str, str]:
    """The email's subject and plain-text body."""
    if len(changes) == 1:
        change = changes[0]
        state = "recovered" if change.status == Status.OK else f"is {change.status.label.lower()}"
        subject = f"OutboundHQ: {change.name} {state}"
    else:
        bad = sum(1 for c in changes if c.status != Status.OK)
        subject = f"OutboundHQ: {bad} jobs late or failing, {len(changes) - bad} recovered"
    lines = [c.line() for c in changes[:MAX_LINES]]
    if len(changes) > MAX_LINES:
        lines.append(f"... and {len(changes) - MAX_LINES} more: see the dashboard.")
    lines += ["", f"Dashboard: {absolute(reverse('ops-dashboard'))}"]
    return subject, "\n".join(lines)


def slack_text(changes: list[Change]) -> str:
    """Slack's incoming-webhook `text` (mrkdwn): & < > escaped, as Slack asks."""

    def escape(text: str) -> str:
        return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

    lines = [
        f"{EMOJI.get(c.status, ':red_circle:')} *{WORDS[c.status]}* {escape(c.name)}: "
        f"{escape(c.detail)}"
        for c in changes[:MAX_LINES]
    ]
    if len(changes) > MAX_LINES:
        lines.append(f"... and {len(changes) - MAX_LINES} more")
    lines.append(f"<{absolute(reverse('ops-dashboard'))}|Open the ops dashboard>")
    return "*OutboundHQ*\n" + "\n".join(lines)


def post_webhook(url: str, text: str) -> None:
    """One POST of `{"text": ...}`, explicit timeouts, no redirects (the URL is a secret: no
    error says it)."""
    with requests.Session() as session:
        try:
            response = session.post(
                url, json={"text": text}, timeout=WEBHOOK_TIMEOUT, allow_redirects=False
            )
        except requests.RequestException as exc:
            raise AlertNotSent(f"the webhook could not be reached ({type(exc).__name__})") from None
    if not 200 <= response.status_code < 300:
        said = logs.redact(response.text[:200])
        raise AlertNotSent(f"the webhook answered {response.status_code}: {said}")


def absolute(path: str) -> str:
    base = settings.PUBLIC_BASE_URL.rstrip("/")
    return f"{base}{path}" if base else path


def run_scheduled() -> dict[str, Any]:
    """What the schedule calls: one check; the summary is kept in django-q2's task log."""
    now = timezone.now()
    report = check(now)
    return {"announced": [c.line() for c in report.changes], "errors": report.errors}


def ensure_schedule(**kwargs: Any) -> None:
    """Creates or updates the one schedule (post_migrate), never a second copy."""
    every(SCHEDULE_NAME, SCHEDULE_FUNC, EVERY_MINUTES, first_run_in=FIRST_CHECK_AFTER)
