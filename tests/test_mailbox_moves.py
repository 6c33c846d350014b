"""Mailboxes as Smartlead handles them (issue 22), end to end through the sandbox over HTTP: an SDR
sends from several, a mailbox leaving a campaign takes no lead with it, and an SDR whose only
mailbox fails is held until a health read says it is fixed."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client
from django.urls import reverse

from profiles.credentials import SmartleadStatus
from profiles.models import Profile
from sequences.executor import execute
from sequences.explain import explain
from sequences.models import CampaignProvisioning, Enrollment, MailboxPause, Sequence
from smartlead.api import tokens
from smartlead.models import WebhookEvent
from smartlead.reconcile import reconcile
from smartlead.sandbox import SandboxServer
from tests import test_connect_api as connect_api
from tests.factories import make_contact, make_enrollment, make_profile, make_sequence

pytestmark = pytest.mark.django_db
KEY = "sandbox-mailboxes-key-0123456789"
MAILBOXES = [4101, 4102, 4103]
TWO_EMAILS = [{"step_type": "email", "subject": "Hi"}, {"step_type": "email", "delay_days": 2}]
LEADS = ["ann@acme.test", "bob@acme.test", "cid@acme.test", "dee@acme.test"]
REALLOCATE = "POST /campaigns/{campaign_id}/reallocate-mailboxes"
UPDATE_LEAD = "POST /campaigns/update-lead-email-account"


@pytest.fixture
def sandbox(make_sandbox: Any, settings: Any) -> SandboxServer:
    settings.SUPABASE_JWT_SECRET, settings.SUPABASE_URL = connect_api.SECRET, ""
    settings.SMARTLEAD_WEBHOOK_SECRET = "whsec-mailboxes-test-0123456789"
    accounts = [
        {
            "api_key": KEY,
            "email_accounts": [{"id": i, "from_email": f"sam{i}@acme.test"} for i in MAILBOXES],
        }
    ]
    return make_sandbox(accounts, requests_per_minute=600, burst=100)


def connected(client: Client, mailboxes: list[int]) -> tuple[Profile, connect_api.Api]:
    """An SDR who connected the key and chose these mailboxes through the connect API."""
    sdr = make_profile(connected=False)
    api = connect_api.Api(client, sdr)
    assert api.call("post", connect_api.CONNECTION, {"api_key": KEY}).status_code == 200
    choice = api.call("put", connect_api.EMAIL_ACCOUNT, {"email_account_ids": mailboxes})
    assert choice.status_code == 200, choice.content
    return sdr, api


def running(sdr: Profile, sandbox: SandboxServer) -> int:
    """A two-email sequence of the SDR's, pushed and sent its first email: its campaign id."""
    sequence = make_sequence(creator=sdr, steps=TWO_EMAILS)
    for address in LEADS:
        make_enrollment(sequence=sequence, contact=make_contact(email=address))
    assert execute(trigger="command").pushed == len(LEADS)
    campaign_id = Sequence.objects.get(pk=sequence.pk).campaign
    assert {step for _, step, _ in sandbox.send_next(KEY, campaign_id)} == {1}
    return campaign_id


def campaign(sandbox: SandboxServer, campaign_id: int) -> dict:
    return next(c for c in sandbox.campaigns(KEY) if c["id"] == campaign_id)


def on_detached(sandbox: SandboxServer, campaign_id: int) -> list[str]:
    """Leads Smartlead has in progress on a mailbox the campaign no longer has."""
    state = campaign(sandbox, campaign_id)
    return [
        lead["email"]
        for lead in state["leads"]
        if lead["status"] in ("INPROGRESS", "PAUSED")
        and lead["email_account_id"] not in state["email_account_ids"]
    ]


def status_of(profile: Profile) -> str:
    return Profile.objects.with_smartlead_status().get(pk=profile.pk).connection_status


# --- Done when ---------------------------------------------------------------------------
def test_it_attaches_all_three_connected_mailboxes_to_the_campaign(client, admin_client, sandbox):
    sdr, _ = connected(client, MAILBOXES)
    campaign_id = running(sdr, sandbox)

    assert campaign(sandbox, campaign_id)["email_account_ids"] == MAILBOXES
    record = CampaignProvisioning.objects.get(campaign_id=campaign_id)
    assert (record.mailbox_id, record.mailbox_ids) == (4101, MAILBOXES)
    # Smartlead rotates them: the four first emails went out from all three.
    senders = {lead["email_account_id"] for lead in campaign(sandbox, campaign_id)["leads"]}
    assert senders == set(MAILBOXES)
    listing = admin_client.get(reverse("admin:sequences_campaignprovisioning_changelist"))
    shown = "sam4101@acme.test ✓, sam4102@acme.test ✓, sam4103@acme.test ✓"
    assert shown in listing.content.decode()


def test_a_mailbox_change_mid_sequence_strands_no_lead_and_sends_each_next_step_once(
    client, sandbox
):
    sdr, api = connected(client, [4101])
    campaign_id = running(sdr, sandbox)

    choice = api.call("put", connect_api.EMAIL_ACCOUNT, {"email_account_ids": [4102]})
    assert choice.status_code == 200
    run = execute(trigger="command")

    assert run.propagated == 1, run.errors
    assert campaign(sandbox, campaign_id)["email_account_ids"] == [4102]
    assert on_detached(sandbox, campaign_id) == []
    assert sandbox.request_count(KEY, route=REALLOCATE, status=200) == 1
    second = sandbox.send_next(KEY, campaign_id)
    assert sorted(second) == [(address, 2, 4102) for address in LEADS]
    assert sandbox.send_next(KEY, campaign_id) == []  # sent once: nothing is left to send
    assert {tuple(lead["sent"]) for lead in campaign(sandbox, campaign_id)["leads"]} == {(1, 2)}
    assert execute(trigger="command").propagated == 0  # in line: nothing more to tell


def test_a_disconnect_notification_moves_the_leads_to_the_sdrs_other_healthy_mailbox(
    client, sandbox
):
    sdr, _ = connected(client, [4101, 4102])
    campaign_id = running(sdr, sandbox)
    on_4101 = {
        lead["email"]
        for lead in campaign(sandbox, campaign_id)["leads"]
        if lead["email_account_id"] == 4101
    }
    assert on_4101  # the rotation put some leads on it

    # Delivered to the campaign's own webhook URL, so it names the campaign (its token's).
    notice = {
        "eventType": "EMAIL_ACCOUNT_DISCONNECTED",
        "campaignId": campaign_id,
        "accountId": 4101,
        "email": "sam4101@acme.test",
        "error": "SMTP Failure - Host unavailable",
    }
    query = urlencode({"campaign": campaign_id, "token": tokens.current_token(campaign_id)})
    response = client.post(
        f"/webhooks/smartlead?{query}", notice, content_type="application/json", secure=True
    )
    assert response.status_code == 200
    assert WebhookEvent.objects.get(pk=response.json()["id"]).outcome == "applied"
    assert status_of(sdr) == SmartleadStatus.CONNECTED  # 4102 still sends
    execute(trigger="command")

    assert campaign(sandbox, campaign_id)["email_account_ids"] == [4102]
    leads = campaign(sandbox, campaign_id)["leads"]
    assert {lead["email_account_id"] for lead in leads} == {4102}
    second = sandbox.send_next(KEY, campaign_id)
    assert {address for address, _, _ in second} == set(LEADS)
    assert {mailbox for _, _, mailbox in second} == {4102}


def test_an_sdr_whose_only_mailbox_fails_smtp_is_held_until_a_health_read_says_fixed(
    client, sandbox
):
    sdr, api = connected(client, [4101])
    campaign_id = running(sdr, sandbox)
    sequence = Sequence.objects.get(smartlead_campaign_id=str(campaign_id))
    waiting = make_enrollment(sequence=sequence, contact=make_contact(email="eve@acme.test"))

    sandbox.break_mailbox(KEY, 4101)
    reconcile(trigger="command")  # the hourly pass's health read
    run = execute(trigger="command")

    assert status_of(sdr) == SmartleadStatus.NO_HEALTHY_MAILBOX
    assert run.pushed == 0  # eve waits
    assert "Held: none of the mailboxes" in explain(Enrollment.objects.get(pk=waiting.pk))
    assert "SMTP failing (535 Authentication failed)" in explain(waiting)
    paused = Enrollment.objects.filter(sequence=sequence, status="paused")
    assert paused.count() == len(LEADS)  # none left silently active on the broken mailbox
    assert MailboxPause.objects.filter(campaign_id=campaign_id).count() == len(LEADS)
    assert "none of" in explain(paused.first()) and "resumes by itself" in explain(paused.first())
    execute(trigger="command")  # the outbox pauses them at Smartlead too
    assert {lead["status"] for lead in campaign(sandbox, campaign_id)["leads"]} == {"PAUSED"}

    sandbox.fix_mailbox(KEY, 4101)
    body = api.call("get", connect_api.CONNECTION).json()  # a key check, not a health read
    assert body["status"] == "no_healthy_mailbox" and body["connected"] is False
    assert body["mailboxes"][0]["state"] == "unhealthy"
    assert execute(trigger="command").pushed == 0  # still held

    reconcile(trigger="command")  # the health read says fixed
    assert status_of(sdr) == SmartleadStatus.CONNECTED
    released = execute(trigger="command")
    assert released.pushed == 1  # eve goes out now
    assert not MailboxPause.objects.exists()
    assert not Enrollment.objects.filter(sequence=sequence, status="paused").exists()
    execute(trigger="command")  # the outbox resumes the leads where they stopped
    second = {(a, step) for a, step, _ in sandbox.send_next(KEY, campaign_id)}
    assert {(a, 2) for a in LEADS} <= second and ("eve@acme.test", 1) in second


def test_without_the_reallocate_route_each_lead_is_moved_on_its_own(client, sandbox):
    sdr, api = connected(client, [4101])
    campaign_id = running(sdr, sandbox)
    sandbox.reply_next(REALLOCATE, "Cannot POST /api/v1/campaigns/x/reallocate-mailboxes", 404)

    api.call("put", connect_api.EMAIL_ACCOUNT, {"email_account_ids": [4103]})
    execute(trigger="command")

    assert on_detached(sandbox, campaign_id) == []
    assert sandbox.request_count(KEY, route=UPDATE_LEAD, status=200) == len(LEADS)
    assert {m for _, _, m in sandbox.send_next(KEY, campaign_id)} == {4103}
