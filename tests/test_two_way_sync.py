"""App → Smartlead (issue 12): what changes in the app reaches the SDR's campaign within one
executor run, through the outbox, against the sandbox over real HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from profiles.models import Profile
from sequences.executor import execute
from sequences.models import (
    CampaignProvisioning,
    Contact,
    Enrollment,
    Sequence,
    SyncChange,
)
from sequences.provisioning import provision
from smartlead.api import SmartleadClient
from smartlead.sandbox import SandboxServer
from tests import test_connect_api as connect_api
from tests.factories import make_contact, make_enrollment, make_profile, make_sequence

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[1]
KEY = "sandbox-sync-key-0123456789"
TWO_EMAILS = [{"step_type": "email", "subject": "Hi"}, {"step_type": "email", "delay_days": 2}]
LEADS_ROUTE = "POST /campaigns/{campaign_id}/leads"
STATUS_ROUTE = "POST /campaigns/{campaign_id}/status"


@pytest.fixture
def sandbox(make_sandbox):  # noqa: ANN001, ANN201
    return make_sandbox({KEY: [3401, 3402]}, requests_per_minute=600, burst=100)


def sent(addresses: list[str]) -> tuple[Sequence, dict[str, Enrollment]]:
    """A running campaign with these leads in it (the first run pushed them)."""
    sdr = make_profile(smartlead_api_key=KEY, smartlead_email_account_id="3401")
    sequence = make_sequence(creator=sdr, steps=TWO_EMAILS)
    enrollments = {
        a: make_enrollment(sequence=sequence, contact=make_contact(email=a)) for a in addresses
    }
    assert execute(trigger="command").pushed == len(addresses)
    sequence.refresh_from_db()
    return sequence, enrollments


def campaign(sandbox: SandboxServer) -> dict:
    (only,) = sandbox.campaigns(KEY)
    return only


def lead_status(sandbox: SandboxServer) -> dict[str, str | None]:
    return {lead["email"]: lead["status"] for lead in campaign(sandbox)["leads"]}


def test_it_unsubscribes_pauses_and_removes_leads_within_one_run(sandbox):
    _, enrollments = sent(["ann@acme.test", "bob@acme.test", "cid@acme.test", "dee@acme.test"])
    Contact.objects.filter(email="ann@acme.test").update(unsubscribed_at=timezone.now())
    Enrollment.objects.filter(pk=enrollments["bob@acme.test"].pk).update(status="paused")
    Enrollment.objects.filter(pk=enrollments["cid@acme.test"].pk).delete()

    run = execute(trigger="command")

    assert run.propagated == 3, run.errors
    assert lead_status(sandbox) == {
        "ann@acme.test": "STOPPED",
        "bob@acme.test": "PAUSED",
        "dee@acme.test": "STARTED",  # untouched
    }
    assert set(SyncChange.objects.values_list("action", "state")) == {
        ("unsubscribe_lead", "done"),
        ("pause_lead", "done"),
        ("remove_lead", "done"),
    }
    sandbox.reset_counts()
    assert execute(trigger="command").propagated == 0  # nothing is told twice
    assert sandbox.request_count(route="GET /leads") == 0


def test_resuming_an_enrollment_resumes_its_lead_where_it_stopped(sandbox):
    _, enrollments = sent(["bob@acme.test"])
    bob = enrollments["bob@acme.test"]
    Enrollment.objects.filter(pk=bob.pk).update(status="paused")
    execute(trigger="command")
    assert lead_status(sandbox) == {"bob@acme.test": "PAUSED"}

    Enrollment.objects.filter(pk=bob.pk).update(status="active")
    sandbox.reset_counts()
    run = execute(trigger="command")

    assert run.propagated == 1
    assert lead_status(sandbox) == {"bob@acme.test": "INPROGRESS"}  # not started over
    assert sandbox.request_count(route=LEADS_ROUTE) == 0  # never added again
    assert Enrollment.objects.get(pk=bob.pk).current_step == 2


def test_a_sequence_paused_in_the_app_pauses_its_campaign_and_resumes_it(sandbox):
    sequence, _ = sent(["ann@acme.test"])
    assert campaign(sandbox)["status"] == "ACTIVE"
    Sequence.objects.filter(pk=sequence.pk).update(status="paused")  # as the web app writes it

    assert execute(trigger="command").propagated == 1
    assert campaign(sandbox)["status"] == "PAUSED"

    Sequence.objects.filter(pk=sequence.pk).update(status="active")
    assert execute(trigger="command").propagated == 1
    assert campaign(sandbox)["status"] == "ACTIVE"


def test_a_pause_during_provisioning_is_not_undone_by_its_final_start(sandbox, monkeypatch):
    sdr = make_profile(smartlead_api_key=KEY, smartlead_email_account_id="3401")
    sequence = make_sequence(creator=sdr, steps=TWO_EMAILS)
    settings_call = SmartleadClient.update_settings

    def paused_meanwhile(self, campaign_id, **options):  # noqa: ANN001, ANN003, ANN202
        settings_call(self, campaign_id, **options)
        Sequence.objects.filter(pk=sequence.pk).update(status="paused")  # the pause API

    monkeypatch.setattr(SmartleadClient, "update_settings", paused_meanwhile)
    provision(sequence, sdr.smartlead_credentials())
    monkeypatch.undo()

    assert campaign(sandbox)["status"] == "DRAFTED"
    record = CampaignProvisioning.objects.get(sequence=sequence)
    assert record.state == "ready" and "started" not in record.completed_stages
    assert execute(trigger="command").propagated == 0  # paused: nothing to start
    Sequence.objects.filter(pk=sequence.pk).update(status="active")
    execute(trigger="command")
    assert campaign(sandbox)["status"] == "ACTIVE"


def test_a_pause_smartlead_does_not_take_stays_pending_and_is_retried(sandbox):
    sequence, _ = sent(["ann@acme.test"])
    Sequence.objects.filter(pk=sequence.pk).update(status="paused")
    sandbox.reply_next(STATUS_ROUTE, {"error": "Campaign is being updated"}, status=409)

    first = execute(trigger="command")

    (change,) = SyncChange.objects.all()
    assert (change.state, change.attempts) == ("pending", 1)
    assert "being updated" in change.last_error
    assert any("retried next run" in error for error in first.errors)
    assert campaign(sandbox)["status"] == "ACTIVE"

    assert execute(trigger="command").propagated == 1
    change.refresh_from_db()
    assert (change.state, change.attempts) == ("done", 2)
    assert campaign(sandbox)["status"] == "PAUSED"


def test_a_new_mailbox_moves_the_sdrs_campaigns_to_it(sandbox):
    sequence, _ = sent(["ann@acme.test"])
    assert campaign(sandbox)["email_account_ids"] == [3401]
    Profile.objects.filter(pk=sequence.created_by_id).update(smartlead_email_account_id="3402")

    assert execute(trigger="command").propagated == 1

    assert campaign(sandbox)["email_account_ids"] == [3402]
    assert CampaignProvisioning.objects.get(sequence=sequence).mailbox_id == 3402
    assert execute(trigger="command").propagated == 0


def test_disconnecting_pauses_the_campaigns_with_the_old_key_and_lists_the_ones_it_could_not(
    sandbox, client, settings
):
    settings.SUPABASE_JWT_SECRET, settings.SUPABASE_URL = connect_api.SECRET, ""
    sequence, _ = sent(["ann@acme.test"])
    other = make_sequence(creator=sequence.created_by, steps=TWO_EMAILS)
    make_enrollment(sequence=other, contact=make_contact(email="zed@acme.test"))
    execute(trigger="command")
    running = {c["id"] for c in sandbox.campaigns(KEY)}
    assert len(running) == 2
    stuck = Sequence.objects.get(pk=other.pk).campaign
    # Smartlead refuses the second pause only.
    sandbox.reply_next(STATUS_ROUTE, {"ok": True})
    sandbox.reply_next(STATUS_ROUTE, {"error": "Campaign is locked"}, status=409)

    response = connect_api.Api(client, sequence.created_by).call(
        "delete", "/api/smartlead/connection"
    )

    assert response.status_code == 204
    changes = {c.campaign_id: c for c in SyncChange.objects.filter(action="pause_campaign")}
    assert set(changes) == running
    failed = [c for c in changes.values() if c.state == "failed"]
    assert len(failed) == 1 and "locked" in failed[0].last_error
    assert "disconnected" in failed[0].last_error
    assert Profile.objects.get(pk=sequence.created_by_id).smartlead_key() is None
    assert stuck in running


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_outbox_survives_a_kill_9_and_the_next_run_finishes_it_once(sandbox):
    _, enrollments = sent([f"lead{n}@acme.test" for n in range(6)])
    Enrollment.objects.filter(pk__in=[e.pk for e in enrollments.values()]).update(status="paused")
    sandbox.latency = 0.4  # slow enough to kill the process between two pauses
    db = connection.settings_dict
    env = os.environ | {
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "SMARTLEAD_BASE_URL": sandbox.base_url,
        "LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen(
        [sys.executable, "manage.py", "execute_sequences"], cwd=ROOT, env=env
    )
    pause_route = "POST /campaigns/{campaign_id}/leads/{lead_id}/pause"
    deadline = time.monotonic() + 60
    while sandbox.request_count(route=pause_route) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    assert process.returncode == -signal.SIGKILL
    assert SyncChange.objects.filter(state="pending").exists()  # written before Smartlead

    sandbox.latency = 0.0
    try:
        execute(trigger="command")

        assert set(lead_status(sandbox).values()) == {"PAUSED"}
        assert SyncChange.objects.count() == 6  # one change per lead, never a second
        assert set(SyncChange.objects.values_list("state", flat=True)) == {"done"}
    finally:
        # The hosted tables are not Django's to flush after a transactional test: ours to clear.
        sequence = Sequence.objects.get(pk=next(iter(enrollments.values())).sequence_id)
        Enrollment.objects.filter(sequence=sequence).delete()
        Contact.objects.filter(email__endswith="@acme.test").delete()
        sequence.steps.all().delete()
        sequence.delete()
        Profile.objects.filter(smartlead_api_key__isnull=False, pk=sequence.created_by_id).delete()
