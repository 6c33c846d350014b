"""Per-campaign webhook URLs: a token for one campaign only, the switch-over from the global
secret, rotating the server secret, `manage.py resave_webhooks`, and no secret stored or shown."""

from __future__ import annotations

import json
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from profiles.models import Profile
from sequences import webhook_switch
from sequences.checks import legacy_webhooks_check
from sequences.executor import execute
from sequences.models import CampaignProvisioning, ProvisioningState, Sequence
from smartlead.api import SmartleadClient, tokens
from smartlead.models import Outcome, WebhookEvent
from tests.factories import make_profile, make_sequence
from tests.test_admin_hardening import settings_with
from tests.test_webhooks import LEAD_EMAIL, SMARTLEAD_SECRET_KEY, URL, fixture, make_lead

pytestmark = pytest.mark.django_db

SECRET = "whsec-current-5e1f0a9b8c7d"
OLD_SECRET = "whsec-previous-3a2b1c0d9e8f"
PUBLIC = "https://api.outboundhq.test"
ALICE = "sandbox-key-alice-7f3a9c2e5b1d"  # smartlead/sandbox/demo.json
BRUNO = "sandbox-key-bruno-4d8e6f1a2c3b"


@pytest.fixture(autouse=True)
def _secrets(settings: Any) -> None:
    settings.SMARTLEAD_WEBHOOK_SECRET = SECRET
    settings.SMARTLEAD_WEBHOOK_SECRET_PREVIOUS = ""
    settings.SMARTLEAD_WEBHOOK_SIGNING_SECRET = ""
    settings.SMARTLEAD_WEBHOOK_ACCEPT_LEGACY_SECRET = True
    settings.PUBLIC_BASE_URL = PUBLIC


def deliver(client: Client, body: dict[str, Any], query: str) -> Any:
    return client.post(
        f"{URL}?{query}", data=json.dumps(body), content_type="application/json", secure=True
    )


def url_of(campaign_id: int, secret: str = SECRET) -> str:
    return f"campaign={campaign_id}&token={tokens.token_for(campaign_id, secret)}"


# --- Tokens ------------------------------------------------------------------------------


def test_a_token_is_short_urlsafe_and_differs_per_campaign_and_secret():
    token = tokens.token_for(9181, SECRET)
    assert len(token) == 22 and token.replace("-", "").replace("_", "").isalnum()
    assert SECRET not in token
    assert len({token, tokens.token_for(9182, SECRET), tokens.token_for(9181, OLD_SECRET)}) == 3


def test_it_accepts_a_campaigns_own_token(client):
    make_lead()
    response = deliver(client, fixture("email_reply"), url_of(9181))
    assert response.status_code == 200
    event = WebhookEvent.objects.get()
    assert (event.outcome, event.source) == (Outcome.APPLIED, "token:9181")


def test_a_token_for_campaign_a_is_refused_for_campaign_b_and_kept_as_rejected(client):
    make_lead(campaign_id="9181")
    # An SDR who can read campaign 777's URL posts a reply for someone else's campaign 9181.
    response = deliver(client, fixture("email_reply"), url_of(777))
    assert response.status_code == 401
    assert "campaign 777, not campaign 9181" in response.json()["error"]
    event = WebhookEvent.objects.get()
    assert event.outcome == Outcome.REJECTED and event.source == "token:777"
    assert "campaign 777, not campaign 9181" in event.detail
    assert event.dedupe_key.startswith("rejected:")  # the real event's key is not taken


def test_a_stats_id_quoted_from_another_campaign_does_not_pre_empt_its_real_event(client):
    lead = make_lead(campaign_id="9181")
    # Campaign 777's own SDR posts, with their valid token, a fake event carrying the stats_id
    # of a reply in campaign 9181: stored for 777, it must not make the real one a duplicate.
    fake = fixture("email_reply", campaign_id=777)
    assert deliver(client, fake, url_of(777)).status_code == 200
    real = deliver(client, fixture("email_reply"), url_of(9181))
    assert real.status_code == 200 and real.json().get("duplicate") is not True
    applied = WebhookEvent.objects.get(campaign_id=9181)
    assert applied.outcome == Outcome.APPLIED
    lead.enrollment.refresh_from_db()
    assert lead.enrollment.status == "replied"


def test_a_token_is_refused_for_a_payload_without_a_campaign(client):
    body = {k: v for k, v in fixture("email_open").items() if k != "campaign_id"}
    assert deliver(client, body, url_of(9181)).status_code == 401
    assert WebhookEvent.objects.get().outcome == Outcome.REJECTED


@pytest.mark.parametrize(
    "query",
    [
        f"campaign=9181&token={tokens.token_for(9181, 'someone-elses-secret')}",
        f"campaign=9182&token={tokens.token_for(9181, SECRET)}",
        f"token={tokens.token_for(9181, SECRET)}",
        f"campaign=--7&token={tokens.token_for(9181, SECRET)}",
        "campaign=9181&token=%FF%FE",
        f"campaign=9181&token={tokens.token_for(9181, SECRET)[:-1]}",
    ],
)
def test_a_wrong_token_is_refused_and_nothing_is_stored(client, query):
    response = deliver(client, fixture("email_reply"), query)
    assert response.status_code == 401
    assert response.json() == {"error": "Wrong webhook token for this campaign."}
    assert not WebhookEvent.objects.exists()


# --- Switch-over and rotation -----------------------------------------------------------


def test_the_global_secret_still_works_during_the_switch_over(client):
    response = deliver(client, fixture("email_open"), f"secret={SECRET}")
    assert response.status_code == 200
    assert WebhookEvent.objects.get().source == "secret"


def test_once_ops_turn_it_off_the_global_secret_is_refused(client, settings):
    settings.SMARTLEAD_WEBHOOK_ACCEPT_LEGACY_SECRET = False
    response = deliver(client, fixture("email_open"), f"secret={SECRET}")
    assert response.status_code == 401
    assert "no longer accepted" in response.json()["error"]
    assert not WebhookEvent.objects.exists()
    assert deliver(client, fixture("email_open"), url_of(9181)).status_code == 200


def test_after_rotation_old_tokens_and_the_old_secret_work_for_the_grace_period(client, settings):
    settings.SMARTLEAD_WEBHOOK_SECRET_PREVIOUS = OLD_SECRET
    old_url = url_of(9181, OLD_SECRET)
    assert deliver(client, fixture("email_open"), old_url).status_code == 200
    assert deliver(client, fixture("email_reply"), url_of(9181)).status_code == 200
    assert deliver(client, fixture("email_sent"), f"secret={OLD_SECRET}").status_code == 200
    # Grace period over: the previous secret is unset, and what it made stops working.
    settings.SMARTLEAD_WEBHOOK_SECRET_PREVIOUS = ""
    assert deliver(client, fixture("email_bounce"), old_url).status_code == 401
    assert deliver(client, fixture("email_bounce"), f"secret={OLD_SECRET}").status_code == 401
    assert WebhookEvent.objects.count() == 3


# --- resave_webhooks --------------------------------------------------------------------


def sdr(key: str, mailbox: int) -> Profile:
    return make_profile(smartlead_api_key=key, smartlead_email_account_id=str(mailbox))


def provisioned(creator: Profile, *, legacy_url: str | None = None) -> Sequence:
    """A sequence whose campaign exists in the sandbox, with our webhook at an old URL."""
    key = creator.smartlead_api_key
    sequence = make_sequence(creator=creator)
    with SmartleadClient(key) as client:
        campaign_id = client.create_campaign(sequence.name).id
        if legacy_url:
            client.save_campaign_webhook(
                campaign_id, name="OutboundHQ [ohq-old]", url=legacy_url, event_types=["EMAIL_SENT"]
            )
    Sequence.objects.filter(pk=sequence.pk).update(smartlead_campaign_id=str(campaign_id))
    CampaignProvisioning.objects.create(
        sequence_id=sequence.id,
        state=ProvisioningState.READY,
        campaign_id=campaign_id,
        completed_stages=["created", "webhook", "started"],
    )
    return sequence


def hooks_of(key: str, sequence: Sequence) -> list[tuple[int, str]]:
    campaign_id = CampaignProvisioning.objects.get(sequence_id=sequence.id).campaign_id
    with SmartleadClient(key) as client:
        return [(w.id, w.webhook_url) for w in client.list_campaign_webhooks(campaign_id)]


def resave() -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    try:
        call_command("resave_webhooks", stdout=out, stderr=err)
    except CommandError as exc:
        err.write(str(exc))
    return out.getvalue(), err.getvalue()


def test_resave_webhooks_moves_every_campaign_to_its_own_url_in_place_and_is_idempotent(
    smartlead_sandbox, caplog
):
    legacy = f"{PUBLIC}/webhooks/smartlead?secret={SECRET}"
    alice = sdr(ALICE, 1101)
    first = provisioned(alice, legacy_url=legacy)
    second = provisioned(alice)
    [(hook_id, _)] = hooks_of(ALICE, first)

    out, err = resave()

    campaign = CampaignProvisioning.objects.get(sequence_id=first.id).campaign_id
    assert hooks_of(ALICE, first) == [(hook_id, f"{PUBLIC}/webhooks/smartlead?{url_of(campaign)}")]
    [(_, url)] = hooks_of(ALICE, second)
    assert "token=" in url and SECRET not in url
    assert f"SDR {alice.label}: 1 created, 1 updated" in out and not err
    again, _ = resave()
    assert f"SDR {alice.label}: 2 current" in again
    assert ALICE not in out + again + caplog.text


def test_resave_webhooks_reports_per_sdr_what_failed_without_printing_keys(
    smartlead_sandbox, caplog
):
    good = provisioned(sdr(ALICE, 1101))
    bad = provisioned(sdr(BRUNO, 2201))
    # Bruno's key is revoked after provisioning: Smartlead now refuses it.
    revoked = "sandbox-key-revoked-00000000"
    bad.created_by.set_smartlead_credentials(api_key=revoked, email_account_id=2201)

    out, err = resave()

    assert f"SDR {good.created_by.label}: 1 created" in out
    campaign = CampaignProvisioning.objects.get(sequence_id=bad.id).campaign_id
    assert f"SDR {bad.created_by.label}: nothing done; failed: campaign {campaign}:" in out
    assert "1 campaign(s) not re-saved" in err
    for key in (ALICE, BRUNO, revoked):
        assert key not in out + err + caplog.text


def test_resave_webhooks_needs_the_public_url(settings):
    settings.PUBLIC_BASE_URL = ""
    with pytest.raises(CommandError, match="PUBLIC_BASE_URL"):
        call_command("resave_webhooks", stdout=StringIO())


# --- The switch-over, done by the service (issue 24, point 2) ------------------------------
HOOKS_ROUTE = "GET /campaigns/{campaign_id}/webhooks"


def test_it_refuses_the_global_secret_unless_ops_turn_it_on():
    assert settings_with("s.SMARTLEAD_WEBHOOK_ACCEPT_LEGACY_SECRET") == "False"


def test_it_moves_every_legacy_campaign_to_its_own_url_by_itself_once(smartlead_sandbox, settings):
    settings.SMARTLEAD_WEBHOOK_ACCEPT_LEGACY_SECRET = False  # the default
    legacy = f"{PUBLIC}/webhooks/smartlead?secret={SECRET}"
    first = provisioned(sdr(ALICE, 1101), legacy_url=legacy)
    second = provisioned(sdr(BRUNO, 2201), legacy_url=legacy)
    (warning,) = legacy_webhooks_check(databases=["default"])
    assert warning.id == "sequences.W001" and warning.msg.startswith("2 campaign(s)")
    assert "refused (401)" in warning.msg

    execute(trigger="command")

    for key, sequence in ((ALICE, first), (BRUNO, second)):
        campaign = CampaignProvisioning.objects.get(sequence_id=sequence.id).campaign_id
        [(_, url)] = hooks_of(key, sequence)
        assert url == f"{PUBLIC}/webhooks/smartlead?{url_of(campaign)}"
    assert legacy_webhooks_check(databases=["default"]) == []
    asked = smartlead_sandbox.request_count(route=HOOKS_ROUTE)
    execute(trigger="command")
    assert smartlead_sandbox.request_count(route=HOOKS_ROUTE) == asked  # nothing left to do


def test_it_reports_a_campaign_smartlead_refused_to_move_and_tries_it_again(smartlead_sandbox):
    legacy = f"{PUBLIC}/webhooks/smartlead?secret={SECRET}"
    sequence = provisioned(sdr(ALICE, 1101), legacy_url=legacy)
    campaign = CampaignProvisioning.objects.get(sequence_id=sequence.id).campaign_id
    route = "POST /campaigns/{campaign_id}/webhooks"
    smartlead_sandbox.reply_next(route, {"error": "Invalid webhook_url"}, 400)

    run = execute(trigger="command")

    assert any(f"Campaign {campaign}'s webhook not moved" in e for e in run.errors), run.errors
    assert [s.pk for s in webhook_switch.left()] == [sequence.pk]
    execute(trigger="command")
    assert webhook_switch.left() == []
    assert hooks_of(ALICE, sequence)[0][1].endswith(url_of(campaign))


# --- No secret stored or shown ------------------------------------------------------------


def body_with_secrets(token_query: str) -> dict[str, Any]:
    return fixture(
        "email_reply", webhook_url=f"{PUBLIC}/webhooks/smartlead?{token_query}", to_email=LEAD_EMAIL
    )


@pytest.mark.parametrize("accepted", [True, False])
def test_stored_bodies_hold_neither_the_url_token_nor_smartleads_secret_key(client, accepted):
    campaign = 9181 if accepted else 777
    query = url_of(campaign)
    deliver(client, body_with_secrets(query), query)
    event = WebhookEvent.objects.get()
    assert (event.outcome == Outcome.REJECTED) is not accepted
    token = tokens.token_for(campaign, SECRET)
    for secret in (token, SMARTLEAD_SECRET_KEY, SECRET):
        assert secret not in event.raw_body + json.dumps(event.headers) + event.detail
    assert '"secret_key": "[redacted]"' in event.raw_body
    assert "token=[redacted]" in event.raw_body


def test_a_body_quoting_the_global_secret_is_stored_without_it(client):
    deliver(client, body_with_secrets(f"secret={SECRET}"), f"secret={SECRET}")
    assert SECRET not in WebhookEvent.objects.get().raw_body


def test_view_only_staff_see_no_secret_in_the_admin_not_even_in_old_rows(client):
    # A row stored before bodies were redacted on arrival, with every kind of secret in it.
    raw = json.dumps(body_with_secrets(url_of(9181)) | {"note": f"secret={SECRET}"})
    event = WebhookEvent.objects.create(dedupe_key="old", event_type="EMAIL_REPLY", raw_body=raw)
    staff = User.objects.create_user("viewer", password="pw-for-tests-only", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_webhookevent"))
    client.force_login(staff)
    for url in (
        reverse("admin:smartlead_webhookevent_changelist"),
        reverse("admin:smartlead_webhookevent_change", args=[event.pk]),
    ):
        page = client.get(url)
        assert page.status_code == 200
        shown = page.content.decode()
        for secret in (tokens.token_for(9181, SECRET), SMARTLEAD_SECRET_KEY, SECRET):
            assert secret not in shown
    assert "[redacted]" in shown


def test_scrubbing_removes_secrets_from_bodies_stored_before_redaction_once(client):
    raw = json.dumps(body_with_secrets(url_of(9181)) | {"note": f"secret={SECRET}"})
    old = WebhookEvent.objects.create(dedupe_key="old", event_type="EMAIL_REPLY", raw_body=raw)
    clean = WebhookEvent.objects.create(dedupe_key="new", event_type="EMAIL_OPEN", raw_body="{}")
    out = StringIO()

    call_command("scrub_webhook_bodies", "--batch", "1", stdout=out)

    old.refresh_from_db()
    assert SECRET not in old.raw_body and SMARTLEAD_SECRET_KEY not in old.raw_body
    assert tokens.current_token(9181) not in old.raw_body
    assert json.loads(old.raw_body)["note"] == "secret=[redacted]"  # still valid JSON
    assert "1 scrubbed" in out.getvalue() and SECRET not in out.getvalue()
    assert WebhookEvent.objects.get(pk=clean.pk).raw_body == "{}"
    again = StringIO()
    call_command("scrub_webhook_bodies", stdout=again)
    assert "0 scrubbed" in again.getvalue()
