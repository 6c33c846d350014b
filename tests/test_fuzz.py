"""Every endpoint against malformed bodies: none answers 500, each with valid credentials so the
body really is read (webhooks, cron, health, the connect API, activation)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from django.test import Client

from smartlead.api import tokens
from smartlead.models import WebhookEvent
from tests.factories import make_profile, make_sequence
from tests.fake_smartlead import BASE
from tests.test_connect_api import SECRET as JWT_SECRET
from tests.test_connect_api import Api

pytestmark = pytest.mark.django_db

WEBHOOK_SECRET = "whsec-fuzz-8c7b6a5d4e3f"
CRON_SECRET = "cron-fuzz-1a2b3c4d5e6f"
JSON = "application/json"


def nested(levels: int, inner: str = "1") -> str:
    return '{"event_type": "EMAIL_OPEN", "a": ' + "[" * levels + inner + "]" * levels + "}"


def with_fields(**fields: Any) -> str:
    base = {"event_type": "EMAIL_REPLY", "campaign_id": 9181, "to_email": "a@b.test"}
    return json.dumps(base | fields)


# (body, content type): at least 40 per endpoint, shared by all of them.
MALFORMED: list[tuple[str | bytes, str]] = [
    # Not JSON at all
    ("{", JSON),
    ("}", JSON),
    ("{'event_type': 'EMAIL_OPEN'}", JSON),
    ('{"a":}', JSON),
    ("[1,]", JSON),
    ('{"a": 1,}', JSON),
    ("nul", JSON),
    ("", JSON),
    ("   \n\t", JSON),
    (b"\xff\xfe\x00{\x00}", JSON),
    (b"\x80\x81\x82 not utf-8", JSON),
    ("\x00\x00\x00", JSON),
    ("\ufeff{}", JSON),
    # JSON, but not an object
    ("null", JSON),
    ("true", JSON),
    ("42", JSON),
    ("-0", JSON),
    ('"EMAIL_OPEN"', JSON),
    ("[]", JSON),
    ('[{"event_type": "EMAIL_OPEN"}]', JSON),
    # Numbers JSON allows or Python's parser does
    ('{"event_type": "EMAIL_OPEN", "campaign_id": 1e309}', JSON),
    ('{"event_type": "EMAIL_OPEN", "campaign_id": NaN}', JSON),
    ('{"event_type": "EMAIL_OPEN", "campaign_id": -Infinity}', JSON),
    ('{"event_type": "EMAIL_OPEN", "campaign_id": 1' + "0" * 5000 + "}", JSON),
    # Objects with the wrong types
    ('{"event_type": 7}', JSON),
    ('{"event_type": null}', JSON),
    ('{"event_type": ["EMAIL_OPEN"]}', JSON),
    ('{"event_type": {"name": "EMAIL_OPEN"}}', JSON),
    (with_fields(campaign_id="--7"), JSON),
    (with_fields(campaign_id=True), JSON),
    (with_fields(campaign_id=[9181]), JSON),
    (with_fields(campaign_id=-(2**70)), JSON),
    (with_fields(sequence_number="NaN", stats_id=[1], to_email=7), JSON),
    (with_fields(event_timestamp="9999-99-99T99:99:99", time_replied=1e20), JSON),
    (with_fields(event_timestamp=-1e20, lead_category={"new_id": "--7", "old_id": {}}), JSON),
    (with_fields(link_clicked={"a": 1}, reply_message="text", sent_message=[None]), JSON),
    (with_fields(api_key=7, email_account_id="--7", is_active="yes"), JSON),
    (json.dumps({"api_key": None, "email_account_id": True}), JSON),
    (json.dumps({"api_key": ["sl-key"], "email_account_id": 1e308}), JSON),
    (json.dumps({"api_key": "x" * 20_000, "email_account_id": -(2**80)}), JSON),
    (json.dumps({"api_key": " \u0000 ", "email_account_id": " 7"}), JSON),
    # Nulls everywhere, duplicate keys
    (with_fields(campaign_id=None, to_email=None, stats_id=None, event_timestamp=None), JSON),
    ('{"event_type": "EMAIL_OPEN", "event_type": null, "campaign_id": 1, "campaign_id": 2}', JSON),
    # Nesting
    ("[" * 10_000 + "]" * 10_000, JSON),
    ('{"a":' * 3000 + "1" + "}" * 3000, JSON),
    (nested(40), JSON),
    (nested(500, '{"secret_key": "s"}'), JSON),
    # Unicode
    ('{"event_type": "\\ud800", "to_email": "\\udfff@x.test"}', JSON),
    (with_fields(to_email="ü@exämple.test\u202e", subject="😀" * 1000), JSON),
    (with_fields(event_type="EMAIL_\u0000REPLY", to_email="a\u0000@b.test"), JSON),
    # Huge
    (json.dumps({"event_type": "EMAIL_OPEN", "padding": "x" * (1024 * 1024 + 10)}), JSON),
    (with_fields(padding="y" * 200_000), JSON),
    (json.dumps([{"event_type": "EMAIL_OPEN"}] * 20_000), JSON),
    # Wrong content types
    (with_fields(), "text/plain"),
    (with_fields(), "application/x-www-form-urlencoded"),
    ("event_type=EMAIL_OPEN&campaign_id=9181", "application/x-www-form-urlencoded"),
    (with_fields(), "multipart/form-data"),
    (with_fields(), "multipart/form-data; boundary=xyz"),
    (with_fields(), "application/xml"),
    (with_fields(), "application/json; charset=latin-1"),
    (with_fields(), "application/json; charset=nonsense"),
    (with_fields(), ""),
]
assert len(MALFORMED) >= 40


@pytest.fixture(autouse=True)
def _configured(settings: Any, smartlead_clock: Any, rsps: Any) -> None:
    """Every credential set, Smartlead faked (nothing registered: any call fails cleanly)."""
    settings.SMARTLEAD_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.SMARTLEAD_WEBHOOK_SIGNING_SECRET = ""
    settings.SMARTLEAD_WEBHOOK_ACCEPT_LEGACY_SECRET = True  # both credentials are fuzzed
    settings.CRON_SECRET = CRON_SECRET
    settings.SUPABASE_JWT_SECRET = JWT_SECRET
    settings.SUPABASE_URL = ""
    settings.SMARTLEAD_BASE_URL = BASE
    settings.CRON_TIME_BUDGET_SECONDS = 5


def send(client: Client, method: str, url: str, case: tuple[str | bytes, str], **extra: Any) -> Any:
    body, content_type = case
    extra = {"CONTENT_TYPE": content_type} | extra
    return client.generic(
        method.upper(), url, data=body, content_type=content_type, secure=True, **extra
    )


def assert_no_500(response: Any) -> None:
    assert response.status_code < 500 or response.status_code == 503, response.content[:300]
    assert b"Traceback" not in response.content


CASES = pytest.mark.parametrize("case", MALFORMED, ids=[f"body{n}" for n in range(len(MALFORMED))])


@CASES
@pytest.mark.parametrize("credential", ["token", "secret"])
def test_the_webhook_receiver(client, case, credential):
    query = f"campaign=9181&token={tokens.token_for(9181, WEBHOOK_SECRET)}"
    url = "/webhooks/smartlead?" + (query if credential == "token" else f"secret={WEBHOOK_SECRET}")
    response = send(client, "post", url, case)
    assert_no_500(response)
    assert response.status_code != 503
    assert WebhookEvent.objects.count() == 1  # stored, whatever it was


@CASES
def test_the_cron_endpoint(client, case):
    response = send(
        client, "post", "/cron/execute-sequences", case, HTTP_AUTHORIZATION=f"Bearer {CRON_SECRET}"
    )
    assert_no_500(response)


@CASES
@pytest.mark.parametrize("method", ["get", "post"])
def test_health(client, case, method):
    assert_no_500(send(client, method, "/health", case))


@CASES
@pytest.mark.parametrize(
    "method,url",
    [
        ("post", "/api/smartlead/connection"),
        ("put", "/api/smartlead/connection/email-account"),
        ("delete", "/api/smartlead/connection"),
    ],
)
def test_the_connect_api(client, case, method, url):
    api = Api(client, make_profile(connected=False))
    assert_no_500(send(client, method, url, case, HTTP_AUTHORIZATION=api.auth))


@CASES
@pytest.mark.parametrize("action", ["activate", "pause"])
def test_activation(client, case, action):
    owner = make_profile(connected=False)
    sequence = make_sequence(creator=owner, status="draft")
    api = Api(client, owner)
    for sequence_id in (sequence.id, uuid.uuid4()):
        url = f"/api/sequences/{sequence_id}/{action}"
        assert_no_500(send(client, "post", url, case, HTTP_AUTHORIZATION=api.auth))
