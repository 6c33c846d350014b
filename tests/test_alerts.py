"""Alerts (outboundhq/alerts.py): a verdict that turns late or failing is announced once, and
once more when it recovers, by email (Django's locmem backend) and to a webhook in Slack's
incoming-webhook format (a real HTTP receiver on 127.0.0.1)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import StringIO
from typing import Any

import pytest
from django.core import mail
from django.core.management import CommandError, call_command
from django.utils import timezone
from django_q.models import Schedule

from outboundhq import alerts
from outboundhq.alerts import check
from outboundhq.checks import alert_problems
from outboundhq.models import Status, VerdictState
from profiles.credentials import SmartleadStatus
from profiles.models import CredentialCheck
from sequences import tasks as executor_tasks
from sequences.models import ExecutorRun, RunTrigger
from smartlead.models import ReconcileRun
from tests.factories import make_enrollment, make_profile, make_sequence

pytestmark = pytest.mark.django_db


class Receiver:
    """A local HTTP server that keeps every POST it gets, answering `status`."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.status = 200
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.posts.append({"body": json.loads(body), "type": self.headers["Content-Type"]})
                self.send_response(outer.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/T0/B0/secret-part"

    def texts(self) -> list[str]:
        return [p["body"]["text"] for p in self.posts]


@pytest.fixture
def receiver(settings: Any) -> Iterator[Receiver]:
    found = Receiver()
    settings.ALERT_WEBHOOK_URL = found.url
    settings.ALERT_EMAIL_TO = ["ops@example.test"]
    settings.PUBLIC_BASE_URL = "https://ohq.example.test"
    settings.SMARTLEAD_WEBHOOK_SECRET = "alert-test-webhook-secret-0123"
    yield found
    found.server.shutdown()
    found.server.server_close()


def healthy_except_executor(now: Any) -> None:
    """The other jobs OK, so the executor's verdict is the only one that can change."""
    ReconcileRun.objects.create(trigger="schedule", started_at=now, finished_at=now)


def executor_verdict() -> VerdictState:
    return VerdictState.objects.get(key="executor")


def test_a_stopped_schedule_is_announced_late_once_then_recovered_once(receiver):
    now = timezone.now()
    healthy_except_executor(now)
    executor_tasks.run_scheduled()  # the schedule's own function, as django-q2 calls it
    first = check()
    assert executor_verdict().status == Status.OK and first.changes == []
    assert receiver.posts == [] and mail.outbox == []

    # The worker stops: no run for 40 minutes, while the checks go on every 5.
    ExecutorRun.objects.update(started_at=now - timedelta(minutes=40))
    for minutes in (0, 5, 10):
        check(now + timedelta(minutes=minutes))

    assert executor_verdict().status == Status.LATE
    assert len(receiver.posts) == 1 and len(mail.outbox) == 1
    (text,) = receiver.texts()
    assert "*LATE* Executor schedule" in text and "qcluster" in text
    assert "<https://ohq.example.test/admin/dashboard/|Open the ops dashboard>" in text
    assert receiver.posts[0]["type"] == "application/json"
    assert mail.outbox[0].subject == "OutboundHQ: Executor schedule is late"
    assert mail.outbox[0].to == ["ops@example.test"]

    # The worker is back: the schedule runs again, and the recovery is announced once.
    executor_tasks.run_scheduled()
    check()
    check()
    assert executor_verdict().status == Status.OK
    assert len(receiver.posts) == 2 and len(mail.outbox) == 2
    assert "*RECOVERED* Executor schedule" in receiver.texts()[1]
    assert mail.outbox[1].subject == "OutboundHQ: Executor schedule recovered"


def test_the_schedule_function_is_what_sends(receiver):
    assert alerts.run_scheduled()["announced"]  # a fresh database: nothing has ever run
    assert len(receiver.posts) == 1
    assert alerts.run_scheduled() == {"announced": [], "errors": []}
    assert len(receiver.posts) == 1


def test_many_changes_at_once_are_one_message_per_channel(receiver):
    for _ in range(3):
        sdr = make_profile()
        CredentialCheck.objects.record(profile=sdr, status=SmartleadStatus.INVALID_KEY)
        make_enrollment(sequence=make_sequence(creator=sdr))
    report = check()
    assert len(report.changes) >= 5  # executor, reconcile, three SDRs
    assert len(receiver.posts) == 1 and len(mail.outbox) == 1
    assert receiver.texts()[0].count("*FAILING* SDR") == 3
    assert "jobs late or failing" in mail.outbox[0].subject


def test_a_job_first_seen_ok_is_not_announced(receiver):
    now = timezone.now()
    healthy_except_executor(now)
    ExecutorRun.objects.create(trigger=RunTrigger.SCHEDULE, started_at=now, finished_at=now)
    assert check(now).changes == [] and receiver.posts == []
    assert VerdictState.objects.get(key="reconcile").announced == Status.OK


def test_a_job_no_longer_judged_recovers_once(receiver):
    sdr = make_profile()
    CredentialCheck.objects.record(profile=sdr, status=SmartleadStatus.INVALID_KEY)
    check()
    sdr.set_smartlead_credentials(api_key=None, email_account_id=None)  # no key, no sequence
    report = check()
    assert [c.status for c in report.changes if c.key == f"sdr:{sdr.pk}"] == [Status.OK]
    check()  # gone and quiet: its row goes, with nothing more said
    assert not VerdictState.objects.filter(key=f"sdr:{sdr.pk}").exists()


def test_a_failing_channel_is_logged_without_its_url_and_not_retried_into_a_flood(receiver, caplog):
    receiver.status = 500
    with caplog.at_level(logging.ERROR):
        report = check()
    assert report.errors == ["Webhook alert not sent: the webhook answered 500: ok"]
    assert len(mail.outbox) == 1  # the other channel still got it
    assert receiver.url not in caplog.text and "secret-part" not in caplog.text
    check()
    assert len(receiver.posts) == 1 and len(mail.outbox) == 1  # announced once, not again


def test_an_unreachable_webhook_says_so_without_its_url(settings):
    settings.ALERT_EMAIL_TO = []
    settings.ALERT_WEBHOOK_URL = "http://127.0.0.1:9/hooks/secret-part"  # nothing listens
    report = check()
    assert report.errors and "could not be reached" in report.errors[0]
    assert "secret-part" not in report.errors[0]


def test_the_command_prints_verdicts_and_fails_when_a_channel_fails(receiver):
    out = StringIO()
    call_command("send_alerts", "--dry-run", stdout=out)
    assert "LATE     Executor schedule" in out.getvalue()
    assert receiver.posts == [] and not VerdictState.objects.exists()  # a dry run says only
    receiver.status = 404
    with pytest.raises(CommandError, match="1 alert channel"):
        call_command("send_alerts", stdout=StringIO(), stderr=StringIO())


def test_the_command_prints_json():
    out = StringIO()
    call_command("send_alerts", "--json", stdout=out)
    data = json.loads(out.getvalue())
    assert {v["key"] for v in data["verdicts"]} >= {"executor", "reconcile", "outbox", "webhooks"}
    assert data["sent"] == [] and data["announced"]


def test_the_schedule_is_created_on_migrate_once_and_first_runs_later():
    schedule = Schedule.objects.get(name=alerts.SCHEDULE_NAME)
    assert schedule.func == "outboundhq.alerts.run_scheduled" and schedule.minutes == 5
    assert schedule.next_run > timezone.now() + timedelta(minutes=10)
    alerts.ensure_schedule()
    assert Schedule.objects.filter(name=alerts.SCHEDULE_NAME).count() == 1


def test_alert_settings_that_could_never_deliver_stop_the_start(settings):
    settings.DEBUG = False
    settings.ALERT_EMAIL_TO = ["ops@example.test"]
    settings.EMAIL_URL = ""
    settings.ALERT_WEBHOOK_URL = "hooks.slack.com/services/x"
    assert {e.id for e in alert_problems()} == {"outboundhq.E008", "outboundhq.E009"}
    settings.EMAIL_URL = "smtp+tls://u:p@smtp.example.test:587"
    settings.ALERT_WEBHOOK_URL = "https://hooks.slack.com/services/x"
    assert alert_problems() == []
