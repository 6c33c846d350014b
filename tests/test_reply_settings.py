"""The reply settings every campaign of ours gets (issue 23): out-of-office handling and the
same-company pause, set at provisioning and, for campaigns set up before, through the outbox;
the webhook's categories with them. Against the sandbox over real HTTP."""

from __future__ import annotations

from typing import Any

import pytest

from sequences import campaign_settings
from sequences.executor import execute
from sequences.models import CampaignProvisioning, SyncChange
from smartlead.sandbox import SandboxServer
from tests.factories import make_contact, make_enrollment, make_profile, make_sequence
from tests.test_webhooks import configure

pytestmark = pytest.mark.django_db
KEY = "sandbox-reply-settings-key-0123456789"
SETTINGS = "POST /campaigns/{campaign_id}/settings"
WEBHOOKS = "POST /campaigns/{campaign_id}/webhooks"


@pytest.fixture
def sandbox(settings: Any, make_sandbox: Any) -> SandboxServer:
    configure(settings)
    settings.PUBLIC_BASE_URL = "https://api.outboundhq.test"
    return make_sandbox({KEY: [3701]}, requests_per_minute=600, burst=100)


def provisioned() -> CampaignProvisioning:
    sdr = make_profile(smartlead_api_key=KEY, smartlead_email_account_id="3701")
    sequence = make_sequence(creator=sdr)
    make_enrollment(sequence=sequence, contact=make_contact())
    execute(trigger="command")
    return CampaignProvisioning.objects.get(sequence=sequence)


def the_campaign(sandbox: SandboxServer) -> dict:
    (campaign,) = sandbox.campaigns(KEY)
    return campaign


@pytest.mark.postgres
def test_the_provisioning_request_carries_the_out_of_office_settings(sandbox, settings):
    settings.SMARTLEAD_PAUSE_SAME_COMPANY_ON_REPLY = True

    record = provisioned()

    assert the_campaign(sandbox)["settings"] == {
        "stop_lead_settings": "REPLY_TO_AN_EMAIL",
        "track_settings": [],
        "out_of_office_detection_settings": {
            "ignoreOOOasReply": True,
            "autoCategorizeOOO": True,
            "autoReactivateOOO": False,  # we resume on the return date ourselves
            "reactivateOOOwithDelay": None,
        },
        "auto_pause_domain_leads_on_reply": True,
    }
    assert record.settings_applied == campaign_settings.fingerprint()
    (hook,) = the_campaign(sandbox)["webhooks"]
    assert set(campaign_settings.WEBHOOK_CATEGORIES) <= set(hook["categories"])
    assert sandbox.request_count(KEY, route=SETTINGS) == 1


def test_a_campaign_set_up_before_gets_the_settings_through_the_outbox_once(sandbox, settings):
    record = provisioned()
    # As an older version left it: no reply settings, and a webhook that lets only
    # "Interested" through.
    CampaignProvisioning.objects.filter(pk=record.pk).update(settings_applied="")
    campaign = sandbox.state.accounts[KEY].campaigns[record.campaign_id]
    campaign.settings = {"stop_lead_settings": "REPLY_TO_AN_EMAIL", "track_settings": []}
    (hook,) = campaign.webhooks.values()
    hook["categories"] = ["Interested"]
    sandbox.reset_counts()

    run = execute(trigger="command")

    assert run.propagated == 1, run.errors
    change = SyncChange.objects.get(action="apply_settings")
    assert change.state == "done" and "webhook updated" in change.last_error
    assert the_campaign(sandbox)["settings"]["out_of_office_detection_settings"]["ignoreOOOasReply"]
    (hook,) = the_campaign(sandbox)["webhooks"]
    assert "Out Of Office" in hook["categories"]  # updated in place, not a second webhook
    assert sandbox.request_count(KEY, route=WEBHOOKS) == 1
    assert execute(trigger="command").propagated == 0  # applied once

    settings.SMARTLEAD_PAUSE_SAME_COMPANY_ON_REPLY = True  # ops change a setting
    assert execute(trigger="command").propagated == 1
    assert the_campaign(sandbox)["settings"]["auto_pause_domain_leads_on_reply"] is True


def test_settings_smartlead_refuses_leave_the_campaign_working_and_are_not_resent(sandbox):
    refusal = {
        "statusCode": 400,
        "error": "Bad Request",
        "message": '"out_of_office_detection_settings" is not allowed',
    }
    sandbox.reply_next(SETTINGS, refusal, status=400)

    record = provisioned()

    assert record.state == "ready" and the_campaign(sandbox)["status"] == "ACTIVE"
    assert the_campaign(sandbox)["settings"] == {
        "stop_lead_settings": "REPLY_TO_AN_EMAIL",
        "track_settings": [],
    }
    assert record.settings_applied == campaign_settings.refused(campaign_settings.fingerprint())
    sandbox.reset_counts()
    assert execute(trigger="command").propagated == 0
    assert sandbox.request_count(KEY, route=SETTINGS) == 0


def test_an_adopted_campaign_keeps_its_owners_settings(sandbox):
    record = provisioned()
    # A campaign someone set up before this backend, adopted as it is: its settings are theirs.
    CampaignProvisioning.objects.filter(pk=record.pk).update(
        completed_stages=["adopted"], settings_applied=""
    )
    sandbox.reset_counts()

    execute(trigger="command")

    assert not SyncChange.objects.filter(action="apply_settings").exists()
    assert sandbox.request_count(KEY, route=SETTINGS) == 0
