"""The connect API and sequence activation, with Smartlead faked by `responses` and, end to end,
by the sandbox over real HTTP. No response and no log line may ever hold a key."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
import requests
import responses
from django.test import Client
from responses import matchers

from profiles.credentials import SmartleadStatus
from profiles.models import CredentialCheck, Profile
from sequences.models import CampaignProvisioning, Sequence, SyncChange
from smartlead.sandbox import SandboxServer
from tests.factories import make_profile, make_sequence
from tests.fake_smartlead import BASE, FakeSmartlead

pytestmark = pytest.mark.django_db

SECRET = "legacy-supabase-jwt-secret-with-at-least-32-characters"
KEY = "sl-test-key-AAAA-1111-bbbb-2222-cccc"
OTHER_KEY = "sl-test-key-ZZZZ-9999-yyyy-8888-xxxx"
SAVED_KEY = "sl-test-key-SAVED-0000-saved-7777"
ALICE = "sandbox-key-alice-7f3a9c2e5b1d"  # smartlead/sandbox/demo.json
BASIC_PLAN = "sandbox-key-basic-plan-9e8d7c6b"
UNKNOWN = "sandbox-key-nobody-has-0000"
KEYS = (KEY, OTHER_KEY, SAVED_KEY, ALICE, BASIC_PLAN, UNKNOWN)
CONNECTION = "/api/smartlead/connection"
EMAIL_ACCOUNT = "/api/smartlead/connection/email-account"
ACCOUNT_ROWS = [
    {
        "id": 11,
        "from_email": "sdr@acme.test",
        "from_name": "Sam Sdr",
        "type": "gmail",
        "is_smtp_success": True,
        "is_imap_success": True,
        "message_per_day": 40,
        "warmup_details": {"status": "ACTIVE"},
        "password": "mailbox-password-never-forwarded",
    },
    {
        "id": 12,
        "from_email": "sdr2@acme.test",
        "from_name": "Sam Two",
        "type": "SMTP",
        "is_smtp_success": False,
        "is_imap_success": True,
        "message_per_day": None,
        "warmup_details": None,
    },
]


# --- Fixtures and helpers ----------------------------------------------------------------
@pytest.fixture(autouse=True)
def _setup(settings: Any, smartlead_clock: Any, caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Legacy-secret tokens (no JWKS to fake), Smartlead at the fake's URL, waits that cost no
    time, and, after every test, no key in any log line at any level."""
    settings.SUPABASE_JWT_SECRET = SECRET
    settings.SUPABASE_URL = ""
    settings.SMARTLEAD_BASE_URL = BASE
    caplog.set_level(logging.DEBUG)
    yield
    for key in KEYS:
        assert key not in caplog.text


def accounts_of(
    rsps: responses.RequestsMock, key: str, rows: list[dict] | None = None, status: int = 200
) -> None:
    """GET /email-accounts/ for one key, exactly as the client pages it."""
    query = {"api_key": key, "offset": "0", "limit": "100"}
    rsps.get(
        f"{BASE}/email-accounts/",
        json=ACCOUNT_ROWS if rows is None else rows,
        status=status,
        match=[matchers.query_param_matcher(query)],
    )


class Api:
    """The web app: a signed-in SDR's requests, each checked for leaked keys."""

    def __init__(self, client: Client, profile: Profile) -> None:
        self.client, self.profile = client, profile
        now = int(time.time())
        claims = {"sub": str(profile.id), "aud": "authenticated", "exp": now + 600}
        self.auth = f"Bearer {jwt.encode(claims | {'role': 'authenticated'}, SECRET, 'HS256')}"

    def call(self, method: str, url: str, body: Any = None, **extra: Any) -> Any:
        data = body if isinstance(body, str | bytes) or body is None else json.dumps(body)
        response = getattr(self.client, method)(
            url,
            data=data,
            content_type=extra.pop("content_type", "application/json"),
            HTTP_AUTHORIZATION=self.auth,
            **extra,
        )
        for key in KEYS:
            assert key not in response.content.decode(errors="replace")
        return response


@pytest.fixture
def sdr() -> Profile:
    return make_profile(connected=False)


@pytest.fixture
def api(client: Client, sdr: Profile) -> Api:
    return Api(client, sdr)


def reload(profile: Profile) -> Profile:
    return Profile.objects.get(pk=profile.pk)


def status_of(profile: Profile) -> str:
    return Profile.objects.with_smartlead_status().get(pk=profile.pk).connection_status


# --- GET ---------------------------------------------------------------------------------
def test_a_profile_without_a_key_is_not_connected(api, rsps):
    body = api.call("get", CONNECTION).json()
    assert body == {
        "connected": False,
        "status": "no_api_key",
        "status_label": "No API key",
        "api_key_last4": None,
        "email_account": None,
        "mailboxes": [],
        "checked_at": None,
        "check_detail": "",
        "smartlead_error": None,
    }
    assert len(rsps.calls) == 0


def test_reading_the_connection_checks_the_saved_key_and_names_the_mailbox(api, sdr, rsps):
    sdr.set_smartlead_credentials(api_key=SAVED_KEY, email_account_id=11)
    accounts_of(rsps, SAVED_KEY)
    body = api.call("get", CONNECTION).json()
    assert body["connected"] is True and body["status"] == "connected"
    assert body["api_key_last4"] == SAVED_KEY[-4:]
    assert body["email_account"] == {
        "id": 11,
        "from_email": "sdr@acme.test",
        "from_name": "Sam Sdr",
    }
    assert body["checked_at"] is not None


def test_reading_the_connection_reports_a_key_smartlead_now_rejects(api, sdr, rsps):
    sdr.set_smartlead_credentials(api_key=SAVED_KEY, email_account_id=11)
    accounts_of(rsps, SAVED_KEY, rows=[], status=401)
    body = api.call("get", CONNECTION).json()
    assert body["status"] == "invalid_key" and body["connected"] is False
    assert "rejected" in body["smartlead_error"]
    assert status_of(sdr) == SmartleadStatus.INVALID_KEY


def test_reading_the_connection_while_smartlead_is_down_shows_the_last_verdict(api, sdr, rsps):
    sdr.set_smartlead_credentials(api_key=SAVED_KEY, email_account_id=11)
    CredentialCheck.objects.record(profile=sdr, status=SmartleadStatus.CONNECTED, detail="ok")
    accounts_of(rsps, SAVED_KEY, rows=[], status=503)
    response = api.call("get", CONNECTION)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "connected" and body["smartlead_error"]
    assert body["email_account"] == {"id": 11, "from_email": None, "from_name": None}


# --- POST: connect a key -----------------------------------------------------------------
def test_a_valid_key_is_saved_and_its_email_accounts_listed(api, sdr, rsps):
    accounts_of(rsps, KEY)
    response = api.call("post", CONNECTION, {"api_key": f"  {KEY}\n"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["email_accounts"] == [
        {
            "id": 11,
            "from_email": "sdr@acme.test",
            "from_name": "Sam Sdr",
            "type": "GMAIL",
            "smtp_ok": True,
            "imap_ok": True,
            "daily_limit": 40,
            "warmup_status": "ACTIVE",
            "suspended": False,
            "warmup_reputation": None,
            "healthy": True,
            "problem": "",
        },
        {
            "id": 12,
            "from_email": "sdr2@acme.test",
            "from_name": "Sam Two",
            "type": "SMTP",
            "smtp_ok": False,
            "imap_ok": True,
            "daily_limit": None,
            "warmup_status": None,
            "suspended": False,
            "warmup_reputation": None,
            "healthy": False,
            "problem": "SMTP failing",
        },
    ]
    assert "mailbox-password" not in response.content.decode()
    assert body["status"] == "no_email_account" and body["api_key_last4"] == KEY[-4:]
    assert reload(sdr).smartlead_key() == KEY
    check = CredentialCheck.objects.get(profile_id=sdr.id)
    assert check.status == SmartleadStatus.CONNECTED and check.ok


@pytest.mark.parametrize(
    "status,code,words",
    [
        (401, "invalid_api_key", "Smartlead rejected this API key"),
        (403, "no_api_access", "the Smartlead plan must include API access"),
    ],
)
def test_a_key_smartlead_refuses_is_400_and_nothing_is_saved(api, sdr, rsps, status, code, words):
    sdr.set_smartlead_credentials(api_key=SAVED_KEY, email_account_id=11)
    accounts_of(rsps, KEY, rows=[], status=status)
    response = api.call("post", CONNECTION, {"api_key": KEY})
    assert response.status_code == 400
    assert response.json()["code"] == code and words in response.json()["error"]
    assert reload(sdr).smartlead_key() == SAVED_KEY
    assert reload(sdr).smartlead_email_account_id == "11"
    assert not CredentialCheck.objects.filter(profile_id=sdr.id).exists()


@pytest.mark.parametrize(
    "failure",
    [
        {"status": 500, "json": {"error": "boom"}},
        {"status": 502, "body": "<html>Bad gateway</html>"},
        {"body": requests.ConnectionError("connection refused")},
        {"body": requests.ReadTimeout("read timed out")},
    ],
)
def test_smartlead_unreachable_is_502_and_nothing_is_saved(api, sdr, rsps, failure):
    rsps.get(f"{BASE}/email-accounts/", **failure)
    response = api.call("post", CONNECTION, {"api_key": KEY})
    assert response.status_code == 502
    assert response.json()["code"] == "smartlead_unavailable"
    assert reload(sdr).smartlead_api_key is None


@pytest.mark.parametrize("new_rows,kept", [(ACCOUNT_ROWS, "11"), (ACCOUNT_ROWS[1:], None)])
def test_replacing_the_key_keeps_the_mailbox_only_if_the_new_key_owns_it(
    api, sdr, rsps, new_rows, kept
):
    sdr.set_smartlead_credentials(api_key=SAVED_KEY, email_account_id=11)
    accounts_of(rsps, OTHER_KEY, rows=new_rows)
    assert api.call("post", CONNECTION, {"api_key": OTHER_KEY}).status_code == 200
    profile = reload(sdr)
    assert profile.smartlead_key() == OTHER_KEY
    assert profile.smartlead_email_account_id == kept


@pytest.mark.parametrize(
    "body,field",
    [
        ({}, "api_key"),
        ({"api_key": ""}, "api_key"),
        ({"api_key": "   "}, "api_key"),
        ({"api_key": None}, "api_key"),
        ({"api_key": 12345678901}, "api_key"),
        ({"api_key": ["a-key"]}, "api_key"),
        ({"api_key": {"k": "v"}}, "api_key"),
        ({"api_key": "two words-key"}, "api_key"),
        ({"api_key": "tab\tinside-the-key"}, "api_key"),
        ({"api_key": "clé-non-ascii-1234"}, "api_key"),
        ({"api_key": "k" * 201}, "api_key"),
        ([KEY], "body"),
        ("just a string", "body"),
    ],
)
def test_every_invalid_key_input_is_a_400_naming_the_field(api, sdr, rsps, body, field):
    response = api.call("post", CONNECTION, json.dumps(body))
    assert response.status_code == 400, response.content
    assert response.json()["field"] == field
    assert response.json()["error"].startswith(f"{field}:")
    assert len(rsps.calls) == 0
    assert reload(sdr).smartlead_api_key is None


def test_malformed_json_is_a_400(api, rsps):
    response = api.call("post", CONNECTION, '{"api_key": "abc')
    assert response.status_code == 400
    assert "JSON" in response.json()["error"]


def test_a_body_over_64_kb_is_refused_before_parsing(api, rsps):
    response = api.call("post", CONNECTION, json.dumps({"api_key": "k" * 70_000}))
    assert response.status_code == 413
    assert response.json()["code"] == "too_large"


def test_a_form_encoded_body_is_415_not_500(api, rsps):
    response = api.call(
        "post", CONNECTION, "api_key=abc", content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 415
    assert "error" in response.json()


# --- PUT: choose the email account -------------------------------------------------------
def test_choosing_a_mailbox_the_key_owns_saves_it(api, sdr, rsps):
    sdr.set_smartlead_credentials(api_key=SAVED_KEY, email_account_id=None)
    accounts_of(rsps, SAVED_KEY)
    response = api.call("put", EMAIL_ACCOUNT, {"email_account_id": 11})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["connected"] is True
    assert body["email_account"] == {
        "id": 11,
        "from_email": "sdr@acme.test",
        "from_name": "Sam Sdr",
    }
    assert reload(sdr).smartlead_email_account_id == "11"
    assert status_of(sdr) == SmartleadStatus.CONNECTED


def test_choosing_a_mailbox_the_key_does_not_own_is_400_naming_it(api, sdr, rsps):
    sdr.set_smartlead_credentials(api_key=SAVED_KEY, email_account_id=11)
    accounts_of(rsps, SAVED_KEY)
    response = api.call("put", EMAIL_ACCOUNT, {"email_account_id": 999})
    assert response.status_code == 400
    body = response.json()
    assert body["field"] == "email_account_id" and body["code"] == "email_account_not_owned"
    assert "999" in body["error"]
    assert reload(sdr).smartlead_email_account_id == "11"


def test_choosing_a_mailbox_without_a_saved_key_is_400(api, rsps):
    response = api.call("put", EMAIL_ACCOUNT, {"email_account_id": 11})
    assert response.status_code == 400
    assert response.json()["code"] == "no_api_key"
    assert len(rsps.calls) == 0


def test_choosing_a_mailbox_when_the_saved_key_was_revoked_is_400_and_recorded(api, sdr, rsps):
    sdr.set_smartlead_credentials(api_key=SAVED_KEY, email_account_id=None)
    accounts_of(rsps, SAVED_KEY, rows=[], status=401)
    response = api.call("put", EMAIL_ACCOUNT, {"email_account_id": 11})
    assert response.status_code == 400 and response.json()["code"] == "invalid_api_key"
    assert status_of(sdr) == SmartleadStatus.INVALID_KEY


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"email_account_id": 0},
        {"email_account_id": -3},
        {"email_account_id": "abc"},
        {"email_account_id": 1.5},
        {"email_account_id": True},
        {"email_account_id": None},
        {"email_account_id": 2**64},
        {"email_account_id": [11]},
    ],
)
def test_every_invalid_email_account_input_is_a_400_naming_the_field(api, sdr, rsps, body):
    sdr.set_smartlead_credentials(api_key=SAVED_KEY, email_account_id=None)
    response = api.call("put", EMAIL_ACCOUNT, body)
    assert response.status_code == 400, response.content
    # With neither field, the error names the list (the single id is the older form).
    assert response.json()["field"] == ("email_account_id" if body else "email_account_ids")
    assert len(rsps.calls) == 0


# --- DELETE ------------------------------------------------------------------------------
def test_disconnecting_clears_the_key_and_the_mailbox(api, sdr, rsps):
    sdr.set_smartlead_credentials(api_key=SAVED_KEY, email_account_id=11)
    assert api.call("delete", CONNECTION).status_code == 204
    profile = reload(sdr)
    assert profile.smartlead_api_key is None and profile.smartlead_email_account_id is None
    assert api.call("get", CONNECTION).json()["status"] == "no_api_key"


def test_each_user_only_ever_touches_their_own_connection(client, rsps):
    alice = make_profile(connected=False)
    bob = make_profile(connected=False)
    alice.set_smartlead_credentials(api_key=SAVED_KEY, email_account_id=11)
    accounts_of(rsps, OTHER_KEY)
    bob_api = Api(client, bob)
    assert bob_api.call("get", CONNECTION).json()["status"] == "no_api_key"
    assert bob_api.call("post", CONNECTION, {"api_key": OTHER_KEY}).status_code == 200
    assert bob_api.call("delete", CONNECTION).status_code == 204
    assert reload(alice).smartlead_key() == SAVED_KEY
    assert reload(alice).smartlead_email_account_id == "11"


@pytest.mark.parametrize(
    "method,url",
    [
        ("get", CONNECTION),
        ("post", CONNECTION),
        ("delete", CONNECTION),
        ("put", EMAIL_ACCOUNT),
        ("post", f"/api/sequences/{uuid.uuid4()}/activate"),
        ("post", f"/api/sequences/{uuid.uuid4()}/pause"),
    ],
)
def test_every_endpoint_needs_a_token(client, method, url):
    response = getattr(client, method)(url, content_type="application/json")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


# --- Activate and pause ------------------------------------------------------------------
@pytest.fixture
def smartlead(rsps: responses.RequestsMock) -> FakeSmartlead:
    return FakeSmartlead(rsps)


@pytest.fixture
def owner(sdr: Profile) -> Profile:
    sdr.set_smartlead_credentials(api_key=SAVED_KEY, email_account_id=11)
    return sdr


def activate(api: Api, sequence: Sequence) -> Any:
    return api.call("post", f"/api/sequences/{sequence.id}/activate")


def pause(api: Api, sequence: Sequence) -> Any:
    return api.call("post", f"/api/sequences/{sequence.id}/pause")


def test_activating_sets_up_the_campaign_and_the_sequence_goes_active(api, owner, smartlead):
    sequence = make_sequence(creator=owner, status="draft")
    response = activate(api, sequence)
    assert response.status_code == 200, response.content
    [campaign_id] = smartlead.campaigns
    assert response.json() == {
        "id": str(sequence.id),
        "status": "active",
        "smartlead_campaign_id": str(campaign_id),
    }
    sequence.refresh_from_db()
    assert sequence.status == "active" and sequence.smartlead_campaign_id == str(campaign_id)
    assert smartlead.bodies("email-accounts") == [{"email_account_ids": [11]}]
    assert smartlead.bodies("status") == [{"status": "START"}]


def test_pausing_pauses_the_campaign_and_activating_again_resumes_it(api, owner, smartlead):
    sequence = make_sequence(creator=owner, status="draft")
    assert activate(api, sequence).status_code == 200
    paused = pause(api, sequence)
    assert paused.status_code == 200 and paused.json()["status"] == "paused"
    assert Sequence.objects.get(pk=sequence.pk).status == "paused"
    resumed = activate(api, sequence)
    assert resumed.status_code == 200 and resumed.json()["status"] == "active"
    assert smartlead.count("create") == 1
    assert smartlead.bodies("status") == [{"status": s} for s in ("START", "PAUSED", "START")]


def test_a_campaign_deleted_in_smartlead_needs_attention_instead_of_a_silent_new_one(
    api, owner, smartlead
):
    # Issue 11: a new campaign would start every lead over at email 1. Smartlead is asked, and
    # a campaign it no longer has is a 409 the SDR can read, with nothing created.
    sequence = make_sequence(creator=owner, status="paused", smartlead_campaign_id="4242")
    smartlead.fail("status", 404, {"error": "Campaign not found - Invalid campaign_id."})
    response = activate(api, sequence)
    assert response.status_code == 409, response.content
    assert response.json()["code"] == "campaign_lost"
    assert "no campaign 4242" in response.json()["error"]
    assert smartlead.count("create") == 0 and smartlead.count("get_campaign") == 1
    assert Sequence.objects.get(pk=sequence.pk).smartlead_campaign_id == "4242"


@pytest.mark.parametrize(
    "steps,words",
    [
        ([{"step_type": "call", "call_objective": "Intro"}], "no email step"),
        (
            [
                {"step_type": "email", "subject": "Hi", "body": "Hello"},
                {"step_type": "email", "body": "Again", "condition_previous_opened": True},
            ],
            "opened",
        ),
    ],
)
def test_a_sequence_smartlead_cannot_send_is_400_with_the_reason(
    api, owner, smartlead, steps, words
):
    sequence = make_sequence(creator=owner, status="draft", steps=steps)
    response = activate(api, sequence)
    assert response.status_code == 400
    assert response.json()["code"] == "unsupported_sequence"
    assert words in response.json()["error"]
    assert smartlead.calls == [] and Sequence.objects.get(pk=sequence.pk).status == "draft"


@pytest.mark.parametrize(
    "key,account,missing", [(None, None, "no API key"), (KEY, None, "no email account")]
)
def test_an_owner_not_connected_cannot_activate(api, sdr, smartlead, key, account, missing):
    sdr.set_smartlead_credentials(api_key=key, email_account_id=account)
    sequence = make_sequence(creator=sdr, status="draft")
    response = activate(api, sequence)
    assert response.status_code == 400
    assert response.json() == {
        "error": f"Connect Smartlead first: your profile has {missing} to send with.",
        "code": "not_connected",
    }
    assert smartlead.calls == []


@pytest.mark.parametrize(
    "status,http,code",
    [
        (401, 400, "invalid_api_key"),
        (403, 400, "no_api_access"),
        (500, 502, "smartlead_unavailable"),
    ],
)
def test_smartlead_errors_during_activation_are_mapped_and_nothing_goes_active(
    api, owner, smartlead, status, http, code
):
    sequence = make_sequence(creator=owner, status="draft")
    smartlead.fail("create", status, times=10)
    response = activate(api, sequence)
    assert response.status_code == http and response.json()["code"] == code
    assert Sequence.objects.get(pk=sequence.pk).status == "draft"
    # A refusal is about the key and is recorded; a failing Smartlead says nothing about it.
    verdicts = {401: SmartleadStatus.INVALID_KEY, 403: SmartleadStatus.NO_API_ACCESS}
    assert status_of(owner) == verdicts.get(status, SmartleadStatus.UNCHECKED)


def test_activation_while_another_run_provisions_is_409(api, owner, smartlead):
    sequence = make_sequence(creator=owner, status="draft")
    CampaignProvisioning.objects.create(
        sequence_id=sequence.id, state="in_progress", lease_until="2999-01-01T00:00:00Z"
    )
    response = activate(api, sequence)
    assert response.status_code == 409 and response.json()["code"] == "busy"


def test_archived_sequences_cannot_be_activated(api, owner, smartlead):
    sequence = make_sequence(creator=owner, status="archived")
    assert activate(api, sequence).status_code == 400


def test_pausing_a_draft_is_400(api, owner, smartlead):
    sequence = make_sequence(creator=owner, status="draft")
    response = pause(api, sequence)
    assert response.status_code == 400 and response.json()["code"] == "not_active"


def test_pausing_when_smartlead_is_down_pauses_here_and_says_so(api, owner, smartlead):
    sequence = make_sequence(creator=owner, status="active", smartlead_campaign_id="777")
    smartlead.fail("status", 503, times=10)
    response = pause(api, sequence)
    assert response.status_code == 502
    assert response.json()["error"].startswith("Paused here, but not in Smartlead yet")
    assert Sequence.objects.get(pk=sequence.pk).status == "paused"
    # Issue 12: the pause waits in the outbox, retried by every executor run until it holds.
    (change,) = SyncChange.objects.filter(sequence_id=sequence.pk)
    assert (change.action, change.state, change.campaign_id) == ("pause_campaign", "pending", 777)
    assert "503" in change.last_error


def test_pausing_after_disconnecting_pauses_here_with_a_warning(api, sdr, smartlead):
    sequence = make_sequence(creator=sdr, status="active", smartlead_campaign_id="777")
    response = pause(api, sequence)
    assert response.status_code == 200 and "warning" in response.json()
    assert smartlead.calls == []


@pytest.mark.parametrize("action", ["activate", "pause"])
def test_another_users_sequence_is_404_and_untouched(client, owner, smartlead, action):
    sequence = make_sequence(creator=owner, status="active")
    intruder = Api(client, make_profile())
    response = intruder.call("post", f"/api/sequences/{sequence.id}/{action}")
    assert response.status_code == 404
    assert response.json() == {"error": "No such sequence.", "code": "not_found"}
    assert Sequence.objects.get(pk=sequence.pk).status == "active" and smartlead.calls == []


def test_an_unknown_sequence_is_404_like_someone_elses(api, owner, smartlead):
    response = api.call("post", f"/api/sequences/{uuid.uuid4()}/activate")
    assert response.status_code == 404
    assert response.json() == {"error": "No such sequence.", "code": "not_found"}


# --- End to end, over HTTP, against the sandbox ------------------------------------------
@pytest.fixture
def sandbox(make_sandbox: Any, smartlead_clock: Any) -> SandboxServer:
    """The demo sandbox on the client's fake clock, so its rate limit sees the client's waits."""
    return make_sandbox(clock=smartlead_clock.monotonic)


def test_connect_pick_a_mailbox_activate_and_pause_against_the_sandbox(api, sdr, sandbox):
    connected = api.call("post", CONNECTION, {"api_key": ALICE})
    assert connected.status_code == 200, connected.content
    ids = [a["id"] for a in connected.json()["email_accounts"]]
    assert ids == [1101, 1102]
    chosen = api.call("put", EMAIL_ACCOUNT, {"email_account_id": 1102})
    assert chosen.status_code == 200 and chosen.json()["connected"] is True
    sequence = make_sequence(creator=sdr, status="draft")
    activated = activate(api, sequence)
    assert activated.status_code == 200, activated.content
    [campaign] = sandbox.campaigns(ALICE)
    assert str(campaign["id"]) == activated.json()["smartlead_campaign_id"]
    assert campaign["status"] == "ACTIVE"
    assert pause(api, sequence).status_code == 200
    assert sandbox.campaigns(ALICE)[0]["status"] == "PAUSED"
    again = activate(api, sequence)
    assert again.status_code == 200, again.content
    assert [c["status"] for c in sandbox.campaigns(ALICE)] == ["ACTIVE"]


@pytest.mark.parametrize("key,code", [(BASIC_PLAN, "no_api_access"), (UNKNOWN, "invalid_api_key")])
def test_the_sandbox_refuses_bad_keys_and_nothing_is_saved(api, sdr, sandbox, key, code):
    response = api.call("post", CONNECTION, {"api_key": key})
    assert response.status_code == 400 and response.json()["code"] == code
    assert reload(sdr).smartlead_api_key is None


@pytest.mark.parametrize("mailbox", ["12²", "١٢", "12\n", "12.0", " ", "1" * 19])
def test_it_answers_a_mailbox_id_that_is_not_a_number_without_a_500(api, sdr, rsps, mailbox):
    Profile.objects.filter(pk=sdr.pk).update(
        smartlead_api_key=SAVED_KEY, smartlead_email_account_id=mailbox
    )
    accounts_of(rsps, SAVED_KEY)
    response = api.call("get", CONNECTION)
    assert response.status_code == 200
    body = response.json()
    assert body["connected"] is False and body["status"] == "no_email_account"
    assert status_of(sdr) == "no_email_account"
