"""The executor's three ways in (command, schedule, cron endpoint) and a run against the sandbox."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django_q.models import Schedule

from sequences.models import Enrollment, ExecutorRun, Push
from sequences.tasks import SCHEDULE_NAME, ensure_schedule, run_scheduled
from tests.factories import make_enrollment, make_profile, make_sequence

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[1]
SANDBOX_KEY = "sandbox-e2e-key-0123456789"


@pytest.fixture
def sandbox(make_sandbox):  # noqa: ANN001, ANN201
    accounts = [
        {
            "api_key": SANDBOX_KEY,
            "plan": "pro",
            "email_accounts": [{"id": 3101, "from_email": "sdr@demo.test", "from_name": "SDR"}],
        },
        {"api_key": "sandbox-basic-plan-key-0000", "plan": "basic", "email_accounts": []},
    ]
    return make_sandbox(accounts)


def test_the_command_prints_a_summary_and_the_run_record_as_json(sandbox):
    sdr = make_profile(smartlead_api_key=SANDBOX_KEY, smartlead_email_account_id="3101")
    sequence = make_sequence(creator=sdr)
    for _ in range(3):
        make_enrollment(sequence=sequence)
    out = StringIO()
    call_command("execute_sequences", "--json", stdout=out)
    record = json.loads(out.getvalue())
    assert record["pushed"] == 3 and record["campaigns_provisioned"] == 1
    assert ExecutorRun.objects.get(pk=record["id"]).trigger == "command"
    human = StringIO()
    call_command("execute_sequences", stdout=human)
    assert "0 due, 0 pushed" in human.getvalue()


def test_the_command_dry_run_says_what_would_happen(sandbox):
    sequence = make_sequence(creator=make_profile(smartlead_api_key=SANDBOX_KEY))
    make_enrollment(sequence=sequence)
    out = StringIO()
    call_command("execute_sequences", "--dry-run", stdout=out)
    assert "Dry run (nothing changed)" in out.getvalue()
    assert "push up to 1 leads" in out.getvalue()
    assert sandbox.request_count() == 0 and not ExecutorRun.objects.exists()


def test_the_command_refuses_a_nonsense_limit():
    with pytest.raises(Exception, match="--limit must be a positive number"):
        call_command("execute_sequences", "--limit", "0")


@pytest.mark.parametrize("command", ["execute_sequences", "reconcile_smartlead"])
@pytest.mark.parametrize("option", ["--user", "--sequence"])
def test_the_commands_refuse_a_valid_id_that_names_nothing(command, option):
    nobody = "8c1d6f3e-5b2a-4c7e-9d10-2f3a4b5c6d7e"  # a valid UUID of no SDR and no sequence
    with pytest.raises(CommandError, match=f"{option} {nobody}: no "):
        call_command(command, option, nobody)
    assert not ExecutorRun.objects.exists()
    sdr = make_profile(connected=False)
    make_enrollment(sequence=make_sequence(creator=sdr))
    out = StringIO()
    call_command("execute_sequences", "--user", str(sdr.pk), "--dry-run", stdout=out)
    assert f"SDR {sdr.label} has not connected" in out.getvalue()  # named, not by id


def test_the_command_exits_non_zero_with_a_message_when_the_database_is_unreachable():
    env = os.environ | {
        "DATABASE_URL": "postgres://nobody@127.0.0.1:1/none",
        "DJANGO_SECRET_KEY": "x" * 50,
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "execute_sequences"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "The executor could not run: the database is unreachable" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_schedule_is_created_once_and_kept_in_step_with_the_code():
    ensure_schedule()
    ensure_schedule()
    Schedule.objects.filter(name=SCHEDULE_NAME).update(minutes=60)
    ensure_schedule()
    schedule = Schedule.objects.get(name=SCHEDULE_NAME)
    assert schedule.minutes == 15 and schedule.func == "sequences.tasks.run_scheduled"
    assert Schedule.objects.filter(name=SCHEDULE_NAME).count() == 1


def test_the_cluster_runs_longer_than_a_run_and_retries_after_it_times_out(settings):
    assert settings.Q_CLUSTER["timeout"] > settings.EXECUTOR_TIME_BUDGET_SECONDS
    assert settings.Q_CLUSTER["retry"] > settings.Q_CLUSTER["timeout"]


def test_the_scheduled_function_runs_the_executor(sandbox):
    result = run_scheduled()
    assert ExecutorRun.objects.get(pk=result["id"]).trigger == "schedule"


class TestCronEndpoint:
    url = "/cron/execute-sequences"

    def test_it_is_disabled_without_a_configured_secret(self, client, settings):
        settings.CRON_SECRET = ""
        response = client.post(self.url, HTTP_AUTHORIZATION="Bearer anything")
        assert response.status_code == 503 and "CRON_SECRET" in response.json()["error"]

    @pytest.mark.parametrize("header", [None, "Bearer wrong-secret", "Basic c2VjcmV0", "Bearer"])
    def test_it_refuses_a_missing_or_wrong_token(self, client, settings, header):
        settings.CRON_SECRET = "the-cron-secret-0123"
        extra = {"HTTP_AUTHORIZATION": header} if header else {}
        response = client.post(self.url, **extra)
        assert response.status_code == 401
        assert response["WWW-Authenticate"].startswith("Bearer")
        assert not ExecutorRun.objects.exists()

    def test_it_runs_the_executor_and_returns_the_run_record(self, client, settings, sandbox):
        settings.CRON_SECRET = "the-cron-secret-0123"
        sequence = make_sequence(
            creator=make_profile(smartlead_api_key=SANDBOX_KEY, smartlead_email_account_id="3101")
        )
        make_enrollment(sequence=sequence)
        response = client.post(self.url, HTTP_AUTHORIZATION="Bearer the-cron-secret-0123")
        assert response.status_code == 200
        body = response.json()
        assert body["trigger"] == "cron" and body["pushed"] == 1, json.dumps(body)
        assert ExecutorRun.objects.filter(pk=body["id"]).exists()

    def test_get_is_not_allowed(self, client, settings):
        settings.CRON_SECRET = "the-cron-secret-0123"
        response = client.get(self.url, HTTP_AUTHORIZATION="Bearer the-cron-secret-0123")
        assert response.status_code == 405


def test_end_to_end_against_the_sandbox(sandbox, caplog, settings):
    """Provision, push 250 leads in 3 batches, skip an unconnected SDR, and mark a Basic plan."""
    settings.SMARTLEAD_LEADS_PER_REQUEST = 100
    sdr = make_profile(smartlead_api_key=SANDBOX_KEY, smartlead_email_account_id="3101")
    sequence = make_sequence(creator=sdr, name="E2E")
    for _ in range(250):
        make_enrollment(sequence=sequence)
    keyless = make_profile(connected=False)
    make_enrollment(sequence=make_sequence(creator=keyless))
    basic = make_profile(smartlead_api_key="sandbox-basic-plan-key-0000")
    make_enrollment(sequence=make_sequence(creator=basic, smartlead_campaign_id="1"))
    with caplog.at_level(logging.INFO):
        run = ExecutorRun.objects.get(pk=run_scheduled()["id"])
    sequence.refresh_from_db()
    (campaign,) = sandbox.campaigns(SANDBOX_KEY)
    assert str(campaign["id"]) == sequence.smartlead_campaign_id
    assert len(campaign["leads"]) == 250
    assert sandbox.request_count(route="POST /campaigns/{campaign_id}/leads", status=200) == 3
    assert sandbox.request_count(status=429) == 0
    assert f"SDR {keyless.label} has not connected their Smartlead account" in caplog.messages
    assert basic.smartlead_status() == "no_api_access"
    assert run.pushed == 250 and run.skipped_no_credentials == 1
    assert Push.objects.filter(state="pushed").count() == 250
    assert Enrollment.objects.filter(sequence=sequence, current_step=2).count() == 250
