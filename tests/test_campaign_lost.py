"""A 404 never makes the backend forget a campaign blindly, and setup calls read their reply:
against the sandbox over real HTTP (issue 11, points 3 and 4)."""

from __future__ import annotations

import pytest
import requests
from django.contrib import admin
from django.contrib.auth.models import User
from django.test import RequestFactory

from profiles.models import Profile
from sequences.executor import execute
from sequences.models import (
    CampaignProvisioning,
    Enrollment,
    ProvisioningState,
    Push,
    Sequence,
    SyncChange,
)
from sequences.provisioning import provision
from sequences.records_admin import CampaignProvisioningAdmin
from smartlead.api import SmartleadClient, ValidationFailed
from smartlead.reconcile import reconcile
from smartlead.sandbox import SandboxServer
from tests import test_connect_api as connect_api
from tests.factories import make_contact, make_enrollment, make_profile, make_sequence

pytestmark = pytest.mark.django_db
KEY = "sandbox-lost-key-0123456789"
OTHER_KEY = "sandbox-other-account-key-987"
LEADS_ROUTE = "POST /campaigns/{campaign_id}/leads"
TWO_EMAILS = [{"step_type": "email", "subject": "Hi"}, {"step_type": "email", "delay_days": 2}]


@pytest.fixture
def sandbox(make_sandbox):  # noqa: ANN001, ANN201
    return make_sandbox({KEY: [3201], OTHER_KEY: [3301]})


@pytest.fixture
def sent_once(sandbox):  # noqa: ANN001, ANN201
    """A sequence whose campaign was provisioned and got one lead, then a second lead ready."""
    sdr = make_profile(smartlead_api_key=KEY, smartlead_email_account_id="3201")
    sequence = make_sequence(creator=sdr, steps=TWO_EMAILS)
    first = make_enrollment(sequence=sequence, contact=make_contact(email="ann@acme.test"))
    assert execute(trigger="command").pushed == 1
    sequence.refresh_from_db()
    second = make_enrollment(sequence=sequence, contact=make_contact(email="bob@acme.test"))
    return sequence, first, second


@pytest.fixture
def api(client, settings):  # noqa: ANN001, ANN201
    """The web app's calls, signed as an SDR (the connection API tests' helper)."""
    settings.SUPABASE_JWT_SECRET, settings.SUPABASE_URL = connect_api.SECRET, ""
    return lambda profile: connect_api.Api(client, profile)


def delete_in_smartlead(sandbox: SandboxServer, campaign_id: int) -> None:
    answer = requests.delete(
        f"{sandbox.base_url}/campaigns/{campaign_id}", params={"api_key": KEY}, timeout=5
    )
    assert answer.json() == {"ok": True}


def test_it_stops_a_sequence_whose_campaign_was_deleted_instead_of_starting_it_over(
    sandbox, sent_once
):
    sequence, first, second = sent_once
    lost = sequence.campaign
    delete_in_smartlead(sandbox, lost)

    run = execute(trigger="command")

    assert run.pushed == 0 and run.campaigns_provisioned == 0
    record = CampaignProvisioning.objects.get(sequence=sequence)
    assert record.state == ProvisioningState.NEEDS_ATTENTION
    assert f"no campaign {lost}" in record.reason and "deleted" in record.reason
    sequence.refresh_from_db()
    assert sequence.campaign == lost  # kept, not forgotten
    assert len(sandbox.campaigns(KEY)) == 0  # no new campaign set up behind anyone's back
    second.refresh_from_db()
    assert second.current_step == 1 and second.status == "active"  # waits, not failed
    assert not Push.objects.filter(enrollment_id=second.id, state="pushed").exists()
    assert any("needs attention" in error for error in run.errors)

    sandbox.reset_counts()
    Enrollment.objects.update(next_send_at="2000-01-01T00:00:00Z")
    again = execute(trigger="command")
    assert sandbox.request_count(route=LEADS_ROUTE) == 0
    assert again.campaigns_provisioned == 0
    assert any("needs attention" in error for error in again.errors)


def test_the_reconcile_pass_marks_a_campaign_smartlead_no_longer_has_not_ready(sandbox, sent_once):
    sequence, _, _ = sent_once
    delete_in_smartlead(sandbox, sequence.campaign)

    run = reconcile(trigger="command")

    record = CampaignProvisioning.objects.get(sequence=sequence)
    assert record.state == ProvisioningState.NEEDS_ATTENTION and "deleted" in record.reason
    assert any("needs attention" in error for error in run.errors)
    assert reconcile(trigger="command").campaigns == 0  # no longer read as if it were there


def test_it_says_when_the_key_now_belongs_to_another_smartlead_account(sandbox, sent_once):
    sequence, _, _ = sent_once
    sandbox.hand_key_to(KEY, OTHER_KEY)

    execute(trigger="command")

    record = CampaignProvisioning.objects.get(sequence=sequence)
    assert record.state == ProvisioningState.NEEDS_ATTENTION
    assert "another Smartlead account" in record.reason
    assert sandbox.campaigns(OTHER_KEY) == []  # nothing created in the other account


def test_it_keeps_the_campaign_when_smartlead_still_has_it_after_a_404(sandbox, sent_once):
    sequence, _, second = sent_once
    sandbox.reply_next(LEADS_ROUTE, {"error": "Resource not found"}, status=404)

    run = execute(trigger="command")

    assert CampaignProvisioning.objects.get(sequence=sequence).state == ProvisioningState.READY
    assert any("still has campaign" in error for error in run.errors)
    second.refresh_from_db()
    assert second.current_step == 1  # waits for the next run, in the same campaign
    Enrollment.objects.filter(pk=second.pk).update(next_send_at="2000-01-01T00:00:00Z")
    assert execute(trigger="command").pushed == 1
    (campaign,) = sandbox.campaigns(KEY)
    assert campaign["id"] == sequence.campaign
    assert sorted(lead["email"] for lead in campaign["leads"]) == ["ann@acme.test", "bob@acme.test"]


def reprovision(records):  # noqa: ANN001, ANN201
    request = RequestFactory().post("/")
    request.user = User.objects.create_superuser("ops", "ops@outboundhq.test", "pw-unused-123")
    request._messages = []  # noqa: SLF001 - message_user needs a store
    model_admin = CampaignProvisioningAdmin(CampaignProvisioning, admin.site)
    model_admin.message_user = lambda request, message, level: request._messages.append(message)
    model_admin.reprovision(request, records)
    return request._messages


def test_it_reprovisions_knowingly_from_the_admin_and_pauses_leads_sent_to_the_lost_campaign(
    sandbox, sent_once
):
    sequence, first, second = sent_once
    delete_in_smartlead(sandbox, sequence.campaign)
    execute(trigger="command")

    (message,) = reprovision(CampaignProvisioning.objects.filter(sequence=sequence))
    assert "1 sequences get a new campaign" in message and "1 enrollments" in message

    first.refresh_from_db()
    assert first.status == "paused"  # it had email 1 from the lost campaign: not sent again
    Enrollment.objects.filter(pk=second.pk).update(next_send_at="2000-01-01T00:00:00Z")
    run = execute(trigger="command")
    assert run.campaigns_provisioned == 1 and run.pushed == 1
    (campaign,) = sandbox.campaigns(KEY)
    assert [lead["email"] for lead in campaign["leads"]] == ["bob@acme.test"]
    assert Sequence.objects.get(pk=sequence.pk).campaign == campaign["id"]


def test_it_answers_409_on_activate_when_the_campaign_is_gone(sandbox, sent_once, api):
    sequence, _, _ = sent_once
    delete_in_smartlead(sandbox, sequence.campaign)
    sequence.status = "paused"
    sequence.save(update_fields=["status"])

    answer = api(sequence.created_by).call("post", f"/api/sequences/{sequence.id}/activate")

    assert answer.status_code == 409
    assert answer.json()["code"] == "campaign_lost"
    assert "no campaign" in answer.json()["error"]
    assert sandbox.campaigns(KEY) == []
    assert CampaignProvisioning.objects.get(sequence=sequence).state == "needs_attention"


SETUP_ROUTES = [
    "POST /campaigns/{campaign_id}/sequences",
    "POST /campaigns/{campaign_id}/email-accounts",
    "POST /campaigns/{campaign_id}/schedule",
    "POST /campaigns/{campaign_id}/settings",
    "POST /campaigns/{campaign_id}/status",
]


@pytest.mark.parametrize("route", SETUP_ROUTES)
@pytest.mark.parametrize(
    "reply",
    [
        {"ok": False, "message": "Campaign is in an invalid state"},
        {"error": "Invalid timezone - Mars/Olympus"},
        {"success": False, "error": {"code": "VALIDATION_ERROR", "message": "bad hours"}},
    ],
)
def test_it_treats_a_setup_refusal_answered_200_as_a_failure(sandbox, route, reply):
    sdr = make_profile(smartlead_api_key=KEY, smartlead_email_account_id="3201")
    sequence = make_sequence(creator=sdr, steps=TWO_EMAILS)
    sandbox.reply_next(route, reply)

    with pytest.raises(ValidationFailed, match="refused"):
        provision(sequence, sdr.smartlead_credentials())

    record = CampaignProvisioning.objects.get(sequence=sequence)
    assert record.state == ProvisioningState.FAILED and "refused" in record.reason
    stage = route.rsplit("/", 1)[1].replace("-", "_")
    assert stage.replace("status", "started") not in record.completed_stages
    # The next attempt resumes from the refused stage and finishes the same campaign.
    provision(sequence, sdr.smartlead_credentials())
    assert len(sandbox.campaigns(KEY)) == 1
    assert CampaignProvisioning.objects.get(sequence=sequence).state == ProvisioningState.READY


def test_it_treats_a_webhook_save_refused_in_its_reply_as_a_failure(sandbox):
    with SmartleadClient(KEY) as client:
        campaign = client.create_campaign("hooks").id
        sandbox.reply_next("POST /campaigns/{campaign_id}/webhooks", {"ok": False})
        with pytest.raises(ValidationFailed, match="no reason given"):
            client.save_campaign_webhook(
                campaign, name="x", url="https://hooks.test/a", event_types=["EMAIL_REPLY"]
            )


def test_it_understands_a_webhook_list_answered_as_one_object(sandbox):
    with SmartleadClient(KEY) as client:
        campaign = client.create_campaign("hooks").id
        one = {"id": 7, "name": "only", "webhook_url": "https://hooks.test/a", "event_types": []}
        sandbox.reply_next("GET /campaigns/{campaign_id}/webhooks", one)
        (webhook,) = client.list_campaign_webhooks(campaign)
    assert (webhook.id, webhook.webhook_url) == (7, "https://hooks.test/a")


# --- A key of another Smartlead account (issue 24, point 4) --------------------------------
def status_at_smartlead(sandbox: SandboxServer, key: str, campaign_id: int) -> str:
    return next(c["status"] for c in sandbox.campaigns(key) if c["id"] == campaign_id)


def test_it_pauses_the_old_campaigns_with_the_old_key_before_another_accounts_key_is_saved(
    sandbox, sent_once, api
):
    sequence, _, second = sent_once
    old = sequence.campaign
    assert status_at_smartlead(sandbox, KEY, old) == "ACTIVE"

    response = api(sequence.created_by).call(
        "post", "/api/smartlead/connection", {"api_key": OTHER_KEY}
    )

    assert response.status_code == 200
    assert status_at_smartlead(sandbox, KEY, old) == "PAUSED"  # with the old key, first
    record = CampaignProvisioning.objects.get(sequence=sequence)
    assert record.state == ProvisioningState.NEEDS_ATTENTION
    assert "another Smartlead account" in record.reason and str(old) in record.reason
    pause = SyncChange.objects.get(action="pause_campaign", campaign_id=old)
    assert pause.state == "done" and "another Smartlead account" in pause.last_error
    Profile.objects.filter(pk=sequence.created_by_id).update(smartlead_email_account_id="3301")
    run = execute(trigger="command")
    assert run.pushed == 0 and sandbox.campaigns(OTHER_KEY) == []  # nothing sent, nothing made
    second.refresh_from_db()
    assert second.status == "active" and second.current_step == 1  # it waits for ops


def test_it_leaves_the_campaigns_running_when_the_new_key_opens_the_same_account(
    sandbox, sent_once, api
):
    sequence, _, _ = sent_once
    regenerated = "sandbox-lost-key-regenerated-42"
    sandbox.hand_key_to(regenerated, KEY)

    response = api(sequence.created_by).call(
        "post", "/api/smartlead/connection", {"api_key": regenerated}
    )

    assert response.status_code == 200
    assert status_at_smartlead(sandbox, KEY, sequence.campaign) == "ACTIVE"
    assert CampaignProvisioning.objects.get(sequence=sequence).state == ProvisioningState.READY
    assert not SyncChange.objects.exists()


def test_it_never_counts_an_outbox_change_a_campaign_404_answered_as_done(sandbox, sent_once):
    sequence, first, _ = sent_once
    Sequence.objects.filter(pk=sequence.pk).update(status="paused")
    Enrollment.objects.filter(pk=first.pk).update(status="paused")
    sandbox.hand_key_to(KEY, OTHER_KEY)  # the saved key now opens another account

    run = execute(trigger="command")

    changes = {c.action: c for c in SyncChange.objects.all()}
    assert set(changes) == {"pause_campaign", "pause_lead"}
    assert all(c.state == "failed" for c in changes.values()), changes
    assert all("needs attention" in c.last_error for c in changes.values())
    assert run.propagated == 0
    record = CampaignProvisioning.objects.get(sequence=sequence)
    assert record.state == ProvisioningState.NEEDS_ATTENTION
    assert "another Smartlead account" in record.reason


def test_it_counts_a_lead_gone_from_a_campaign_smartlead_still_has_as_done(sandbox, sent_once):
    sequence, first, _ = sent_once
    requests.delete(  # the lead removed from the campaign in Smartlead's app
        f"{sandbox.base_url}/campaigns/{sequence.campaign}/leads/"
        f"{SmartleadClient(KEY).find_lead('ann@acme.test').id}",
        params={"api_key": KEY},
        timeout=5,
    )
    Enrollment.objects.filter(pk=first.pk).update(status="paused")

    execute(trigger="command")

    (change,) = SyncChange.objects.all()
    assert change.state == "done" and "Nothing to do" in change.last_error
    assert CampaignProvisioning.objects.get(sequence=sequence).state == ProvisioningState.READY
