"""The sandbox's webhooks (smartlead/sandbox/hooks.py): something happens to a lead, and the
sandbox POSTs Smartlead's flat payload to the campaign's webhooks that asked for it, at the URL
as it was saved; its control route makes that happen from another process (scripts/demo)."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from sequences.executor import execute
from sequences.models import Enrollment
from smartlead.api import Lead, SmartleadClient, events
from smartlead.models import WebhookEvent
from smartlead.sandbox import SandboxServer, control
from tests.factories import make_contact, make_enrollment, make_profile, make_sequence
from tests.test_alerts import Receiver

KEY = "sandbox-hooks-key-0123456789"
LEAD = "ann@acme.test"


@pytest.fixture
def sandbox(make_sandbox: Any) -> SandboxServer:
    return make_sandbox({KEY: [4101]})


@pytest.fixture
def receiver() -> Any:
    found = Receiver()
    yield found
    found.server.shutdown()
    found.server.server_close()


def campaign_with_lead(sandbox: SandboxServer, *hooks: tuple[str, list[str]]) -> int:
    with SmartleadClient(KEY, base_url=sandbox.base_url) as client:
        campaign = client.create_campaign("Hooks").id
        client.add_leads(campaign, [Lead(email=LEAD, first_name="Ann", last_name="Lee")])
        for url, kinds in hooks:
            client.save_campaign_webhook(campaign, name="ours", url=url, event_types=kinds)
    return campaign


def test_it_delivers_smartleads_flat_payload_to_each_subscribed_webhook(sandbox, receiver):
    campaign = campaign_with_lead(
        sandbox,
        (receiver.url + "?campaign=1&token=t", [events.EMAIL_SENT, events.EMAIL_REPLY]),
        (receiver.url + "?other", [events.EMAIL_BOUNCE]),
    )
    sent = sandbox.lead_event(KEY, campaign, LEAD, events.EMAIL_SENT)
    reply = sandbox.lead_event(KEY, campaign, LEAD, events.EMAIL_REPLY, text="Thursday works")

    assert [d["status"] for d in sent["deliveries"] + reply["deliveries"]] == [200, 200]
    first, second = (post["body"] for post in receiver.posts)
    assert first["event_type"] == "EMAIL_SENT" and first["campaign_id"] == campaign
    assert first["sl_lead_email"] == LEAD == first["to_email"] and first["to_name"] == "Ann Lee"
    assert first["webhook_url"].endswith("?campaign=1&token=t")
    assert second["reply_message"]["text"] == "Thursday works"
    assert second["stats_id"] == sent["stats_id"] == first["stats_id"]  # the email replied to
    assert second["secret_key"] and second["sequence_number"] == 1


def test_an_event_nobody_subscribed_to_is_recorded_but_not_delivered(sandbox, receiver):
    campaign = campaign_with_lead(sandbox, (receiver.url, [events.EMAIL_SENT]))
    result = sandbox.lead_event(KEY, campaign, LEAD, events.EMAIL_BOUNCE, text="550")
    assert result["deliveries"] == [] and receiver.posts == []
    with SmartleadClient(KEY, base_url=sandbox.base_url) as client:
        assert [
            lead.email for lead in client.campaign_leads(campaign, email_status="is_bounced")
        ] == [LEAD]


def test_a_lost_delivery_is_recorded_at_smartlead_without_a_webhook(sandbox, receiver):
    campaign = campaign_with_lead(sandbox, (receiver.url, [events.EMAIL_REPLY]))
    result = sandbox.lead_event(KEY, campaign, LEAD, events.EMAIL_REPLY, deliver=False)
    assert result["deliveries"] == [] and receiver.posts == []
    with SmartleadClient(KEY, base_url=sandbox.base_url) as client:
        (found,) = client.campaign_leads(campaign, email_status="is_replied")
    assert found.email == LEAD


def test_the_control_route_makes_it_happen_from_another_process_outside_the_rate_limit(
    make_sandbox, receiver
):
    sandbox = make_sandbox({KEY: [4101]}, requests_per_minute=5, burst=2)
    campaign = campaign_with_lead(sandbox, (receiver.url, [events.EMAIL_OPEN]))
    for _ in range(6):
        answer = control.lead_event(sandbox.base_url, KEY, campaign, LEAD, events.EMAIL_OPEN)
        assert [d["status"] for d in answer["deliveries"]] == [200]
    with pytest.raises(control.SandboxUnavailable, match="401"):
        control.lead_event(sandbox.base_url, "sandbox-nobody", campaign, LEAD, events.EMAIL_OPEN)
    with pytest.raises(control.SandboxUnavailable, match="cannot make"):
        control.lead_event(sandbox.base_url, KEY, campaign, LEAD, "EMAIL_TELEPATHY")
    with pytest.raises(control.SandboxUnavailable, match="not a local sandbox"):
        control.lead_event("https://server.smartlead.ai/api/v1", KEY, 1, LEAD, events.EMAIL_OPEN)


@pytest.mark.django_db(transaction=True)
def test_a_reply_in_the_sandbox_reaches_our_receiver_and_ends_the_enrollment(
    sandbox, live_server, settings
):
    settings.PUBLIC_BASE_URL = live_server.url
    settings.SMARTLEAD_WEBHOOK_SECRET = "sandbox-hooks-webhook-secret"
    sdr = make_profile(smartlead_api_key=KEY, smartlead_email_account_id="4101")
    sequence = make_sequence(creator=sdr)
    enrollment = make_enrollment(sequence=sequence, contact=make_contact(email=LEAD))
    assert execute(trigger="command").pushed == 1
    sequence.refresh_from_db()

    result = sandbox.lead_event(KEY, sequence.campaign, LEAD, events.EMAIL_REPLY, text="Yes!")

    assert [d["status"] for d in result["deliveries"]] == [200]
    event = WebhookEvent.objects.get(event_type=events.EMAIL_REPLY)
    assert event.source == f"token:{sequence.campaign}" and event.outcome == "applied"
    assert Enrollment.objects.get(pk=enrollment.pk).status == "replied"
    assert event.received_at <= timezone.now()
