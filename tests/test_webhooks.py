"""POST /webhooks/smartlead: authentication, storing, de-duplication, bad input, concurrency.

What applying each event does is in test_webhooks_apply.py; both replay the real payload shapes
in tests/fixtures/smartlead/.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest
from django.db import DatabaseError, connection
from django.http import HttpResponse
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from sequences.models import Contact, Engagement, Enrollment, Sequence
from smartlead import applier as background
from smartlead import applying, notices, views, webhooks
from smartlead.api import events
from smartlead.models import Outcome, WebhookEvent
from tests.factories import make_contact, make_enrollment, make_profile, make_sequence

SECRET = "whsec-test-2f9c81d0e4b7a6c5"
SIGNING_SECRET = "signing-test-7d3e5a1b9c0f"
URL = "/webhooks/smartlead"
FIXTURES = Path(__file__).parent / "fixtures" / "smartlead"
LEAD_EMAIL = "james.parker@prospect.test"
CAMPAIGN = "9181"
SMARTLEAD_SECRET_KEY = "4f7c8d23-a619-58c2-93a6-72936ee16f38"  # in every fixture's body

pytestmark = pytest.mark.django_db


@dataclass
class Lead:
    sequence: Sequence
    contact: Contact
    enrollment: Enrollment


def make_lead(*, campaign_id: str = CAMPAIGN, email: str = LEAD_EMAIL, **contact: Any) -> Lead:
    """A contact enrolled in a sequence whose Smartlead campaign is the fixtures' campaign."""
    sequence = make_sequence(creator=make_profile(), smartlead_campaign_id=campaign_id)
    person = make_contact(email=email, **({"engagement_score": 0} | contact))
    return Lead(sequence, person, make_enrollment(sequence=sequence, contact=person))


def fixture(name: str, **changes: Any) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text()) | changes


def post(
    client: Client,
    body: dict[str, Any] | str | bytes,
    *,
    secret: str | None = SECRET,
    content_type: str = "application/json",
    **extra: Any,
) -> HttpResponse:
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    url = f"{URL}?secret={secret}" if secret is not None else URL
    # secure=True: in production the proxy terminates TLS; plain HTTP would be redirected.
    # CONTENT_TYPE explicitly: the test client drops it when the body is empty.
    extra = {"CONTENT_TYPE": content_type} | extra
    return client.post(url, data=data, content_type=content_type, secure=True, **extra)


def as_stored(body: str) -> str:
    """What is kept of a body: Smartlead's `secret_key` and any URL secret replaced (the
    fixtures' webhook_url carries `secret=`), a rejected one clipped at 64 KB."""
    body = body.replace(f'"secret_key": "{SMARTLEAD_SECRET_KEY}"', '"secret_key": "[redacted]"')
    body = body.replace("?secret=redacted", "?secret=[redacted]")
    kept = webhooks.REJECTED_BODY_KEPT
    return body if len(body) <= kept else f"{body[:kept]}\n[truncated: {len(body)} bytes received]"


def configure(settings: Any, secret: str = SECRET, signing: str = "") -> None:
    settings.SMARTLEAD_WEBHOOK_SECRET = secret
    settings.SMARTLEAD_WEBHOOK_SIGNING_SECRET = signing
    # These tests post with the global secret (`?secret=`), which is off by default; the
    # per-campaign token URLs are tested in test_webhook_tokens.py.
    settings.SMARTLEAD_WEBHOOK_ACCEPT_LEGACY_SECRET = True
    # No applier thread runs in tests, so events are applied within the request.


@pytest.fixture(autouse=True)
def _webhook_secret(settings: Any) -> None:
    configure(settings)


def sign(body: bytes, secret: str = SIGNING_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# --- Authentication ------------------------------------------------------------------------


def test_it_accepts_the_secret_in_the_query_string(client):
    response = post(client, fixture("email_open"))
    assert response.status_code == 200
    assert response.json()["status"] == "received"
    assert WebhookEvent.objects.count() == 1


def test_it_accepts_the_secret_in_an_x_webhook_secret_header(client):
    response = post(client, fixture("email_open"), secret=None, HTTP_X_WEBHOOK_SECRET=SECRET)
    assert response.status_code == 200


@pytest.mark.parametrize("secret", ["wrong-secret", SECRET[:-1], SECRET + "x", "ünïcödé"])
def test_it_refuses_a_wrong_secret_and_stores_nothing(client, secret):
    response = post(client, fixture("email_open"), secret=secret)
    assert response.status_code == 401
    assert response.json() == {"error": "Wrong webhook secret."}
    assert not WebhookEvent.objects.exists()


def test_it_refuses_a_missing_secret_and_stores_nothing(client):
    response = post(client, fixture("email_open"), secret=None)
    assert response.status_code == 401
    assert "Missing webhook secret" in response.json()["error"]
    assert not WebhookEvent.objects.exists()


def test_it_refuses_everything_with_503_when_no_secret_is_configured(client, settings):
    configure(settings, secret="")
    for secret in (None, "", "anything"):
        response = post(client, fixture("email_open"), secret=secret)
        assert response.status_code == 503
        assert "SMARTLEAD_WEBHOOK_SECRET" in response.json()["error"]
    assert not WebhookEvent.objects.exists()


def test_it_accepts_a_body_whose_signature_matches(client, settings):
    configure(settings, signing=SIGNING_SECRET)
    body = json.dumps(fixture("email_reply")).encode()
    response = post(client, body, HTTP_X_SMARTLEAD_SIGNATURE=sign(body))
    assert response.status_code == 200
    assert WebhookEvent.objects.get().headers["x-smartlead-signature"] == "verified"


WRONG_SIGNATURES = {
    "another secret": lambda body: sign(body, "someone-else"),
    "truncated": lambda body: sign(body)[:-2],
    "another algorithm": lambda body: "md5=" + sign(body).partition("=")[2],
    "not hex": lambda body: "sha256=" + "z" * 64,
    "empty": lambda body: "",
}


@pytest.mark.parametrize("wrong", WRONG_SIGNATURES)
def test_it_refuses_a_body_whose_signature_does_not_match(client, settings, wrong):
    configure(settings, signing=SIGNING_SECRET)
    body = json.dumps(fixture("email_reply")).encode()
    response = post(client, body, HTTP_X_SMARTLEAD_SIGNATURE=WRONG_SIGNATURES[wrong](body))
    assert response.status_code == 401
    assert "X-Smartlead-Signature" in response.json()["error"]
    assert not WebhookEvent.objects.exists()


def test_it_accepts_unsigned_deliveries_even_with_a_signing_secret(client, settings):
    # Real Smartlead deliveries mostly carry no signature; the URL secret is the check.
    configure(settings, signing=SIGNING_SECRET)
    assert post(client, fixture("email_reply")).status_code == 200


def test_a_signature_is_only_noted_when_no_signing_secret_is_configured(client):
    response = post(client, fixture("email_reply"), HTTP_X_SMARTLEAD_SIGNATURE="sha256=whatever")
    assert response.status_code == 200
    assert WebhookEvent.objects.get().headers["x-smartlead-signature"] == "present, not verified"


def test_it_never_stores_our_secret(client):
    post(client, fixture("email_open"), HTTP_X_WEBHOOK_SECRET=SECRET, HTTP_USER_AGENT="Smartlead")
    event = WebhookEvent.objects.get()
    assert SECRET not in json.dumps(event.headers) + event.raw_body
    assert event.headers == {"content-type": "application/json", "user-agent": "Smartlead"}


def test_it_refuses_other_methods_with_json(client):
    response = client.get(f"{URL}?secret={SECRET}", secure=True)
    assert response.status_code == 405
    assert response["Allow"] == "POST"
    assert "POST" in response.json()["error"]


# --- Storing and de-duplicating ------------------------------------------------------------


def test_it_stores_the_raw_body_and_the_parsed_identity(client):
    body = json.dumps(fixture("email_reply"), indent=1)
    response = post(client, body, HTTP_X_REQUEST_ID="req-42")
    event = WebhookEvent.objects.get()
    assert response.json() == {"status": "received", "id": event.pk}
    assert event.raw_body == as_stored(body)
    assert event.event_type == "EMAIL_REPLY"
    assert event.campaign_id == 9181
    assert event.lead_email == LEAD_EMAIL
    assert event.sequence_number == 1
    assert event.stats_id == "b7d21c90-3f4e-4a6b-9c8d-1e2f3a4b5c6d"
    assert event.event_time.isoformat() == "2025-03-28T09:35:01+00:00"
    assert event.dedupe_key == "stats:9181:b7d21c90-3f4e-4a6b-9c8d-1e2f3a4b5c6d:EMAIL_REPLY"
    assert event.headers["x-request-id"] == "req-42"
    assert event.deliveries == 1


def test_a_redelivered_event_is_acknowledged_as_a_duplicate_and_applied_once(client):
    lead = make_lead()
    first = post(client, fixture("email_open"))
    again = post(client, fixture("email_open"))
    assert first.json()["status"] == "received"
    assert again.status_code == 200
    assert again.json() == {"status": "duplicate", "id": first.json()["id"]}
    event = WebhookEvent.objects.get()
    assert event.deliveries == 2 and event.last_received_at >= event.received_at
    assert Engagement.objects.filter(contact=lead.contact).count() == 1
    lead.contact.refresh_from_db()
    assert lead.contact.engagement_score == 10


def test_events_without_a_stats_id_are_deduplicated_on_their_hash(client):
    make_lead()
    payload = fixture("email_sent")
    post(client, payload)
    # The same event with numbers as strings and the address in capitals: still the same.
    again = payload | {
        "campaign_id": "9181",
        "sequence_number": "1",
        "to_email": "James.Parker@PROSPECT.test",
    }
    assert post(client, again).json()["status"] == "duplicate"
    event = WebhookEvent.objects.get()
    assert event.dedupe_key.startswith("hash:") and event.deliveries == 2
    assert Engagement.objects.count() == 1


def test_a_different_step_or_time_without_stats_id_is_a_different_event(client):
    payload = fixture("email_sent")
    post(client, payload)
    post(client, payload | {"sequence_number": 2})
    post(client, payload | {"time_sent": "2025-03-30T10:00:00+00:00"})
    assert WebhookEvent.objects.count() == 3


def test_the_same_stats_id_with_another_event_type_is_another_event(client):
    # email_open and email_link_click are about the same email (same stats_id).
    post(client, fixture("email_open"))
    post(client, fixture("email_link_click"))
    assert WebhookEvent.objects.count() == 2


def test_time_less_events_are_told_apart_by_their_body(client):
    """A category change stripped of its times. This used LEAD_UNSUBSCRIBED, which issue 12 gave
    an identity of its own (campaign and lead, the next test)."""
    timeless = fixture("lead_category_updated", event_timestamp=None, created_at=None)
    post(client, timeless)
    assert post(client, timeless).json()["status"] == "duplicate"
    post(client, timeless | {"to_name": "Someone else entirely"})
    assert WebhookEvent.objects.count() == 2


def test_an_unsubscribe_is_one_event_per_campaign_and_lead(client):
    """Issue 12: it has no stats_id, no time and no undo, so another LEAD_UNSUBSCRIBED of that
    lead in that campaign is a duplicate whatever else its body says (the reconcile pass's too)."""
    post(client, fixture("lead_unsubscribed"))
    again = fixture("lead_unsubscribed", lead_name="Someone else entirely")
    assert post(client, again).json()["status"] == "duplicate"
    post(client, fixture("lead_unsubscribed", campaign_id=5555))
    post(client, fixture("lead_unsubscribed", lead_email="other@prospect.test"))
    assert WebhookEvent.objects.count() == 3
    assert all(e.dedupe_key.startswith("lead:") for e in WebhookEvent.objects.all())


def test_storing_a_delivery_costs_one_statement_before_the_acknowledgement(client, monkeypatch):
    monkeypatch.setattr(background, "hand_off", lambda: None)
    with CaptureQueriesContext(connection) as queries:
        assert post(client, fixture("email_open")).status_code == 200
        assert post(client, fixture("email_open")).json()["status"] == "duplicate"
    assert len(queries) == 2, [q["sql"] for q in queries.captured_queries]


def test_it_answers_503_when_the_event_cannot_be_stored_so_smartlead_retries(client, monkeypatch):
    def broken_store(**_: Any) -> None:
        raise DatabaseError("connection refused")

    monkeypatch.setattr(WebhookEvent.objects, "store", broken_store)
    response = post(client, fixture("email_reply"))
    assert response.status_code == 503
    assert response.json() == {"error": "The event could not be stored; please retry."}


def test_an_unexpected_bug_is_a_json_500_without_a_traceback(client, monkeypatch):
    def bug(*_: Any) -> None:
        raise KeyError("oops")

    monkeypatch.setattr(views, "headers_that_matter", bug)
    response = post(client, fixture("email_reply"))
    assert response.status_code == 500
    assert response.json() == {"error": "Internal error; it has been logged."}


# --- Bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body,status,message",
    [
        ("{not json", 400, "The body is not valid JSON"),
        ("", 400, "The body is not valid JSON"),
        ("[" * 100_000, 400, "The body is not valid JSON"),
        ('[{"event_type": "EMAIL_OPEN"}]', 400, "not an object (it is an array)"),
        ('"EMAIL_OPEN"', 400, "not an object (it is a string)"),
        ("42", 400, "not an object (it is a number)"),
        ("null", 400, "not an object (it is null)"),
        ('{"campaign_id": 9181}', 400, "The JSON object has no event_type."),
        ('{"event_type": ""}', 400, "event_type must be a non-empty string."),
        ('{"event_type": 7}', 400, "event_type must be a non-empty string."),
    ],
)
def test_unparsable_bodies_get_a_400_naming_the_problem_and_are_kept(client, body, status, message):
    response = post(client, body)
    assert response.status_code == status
    assert message in response.json()["error"]
    event = WebhookEvent.objects.get()
    assert event.outcome == Outcome.REJECTED
    assert event.raw_body == as_stored(body)
    assert message in event.detail


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", ""])
def test_a_wrong_content_type_gets_a_415_and_the_body_is_kept(client, content_type):
    body = json.dumps(fixture("email_open"))
    response = post(client, body, content_type=content_type)
    assert response.status_code == 415
    assert "Content-Type must be application/json" in response.json()["error"]
    assert WebhookEvent.objects.get(outcome=Outcome.REJECTED).raw_body == as_stored(body)


def test_json_with_a_charset_is_fine(client):
    response = post(client, fixture("email_open"), content_type="application/json; charset=utf-8")
    assert response.status_code == 200


def test_a_body_over_1_mb_gets_a_413_not_a_500(client):
    body = json.dumps(fixture("email_reply", padding="x" * (1024 * 1024)))
    response = post(client, body)
    assert response.status_code == 413
    assert "1 MB" in response.json()["error"]
    event = WebhookEvent.objects.get()
    assert event.outcome == Outcome.REJECTED and event.raw_body == ""
    assert "not kept" in event.detail


def test_a_body_over_2_mb_is_a_413_too_not_djangos_request_data_too_big(client):
    assert post(client, "x" * (3 * 1024 * 1024)).status_code == 413


def test_a_body_of_exactly_1_mb_is_accepted(client):
    payload = fixture("email_open")
    filler = 1024 * 1024 - len(json.dumps(payload | {"padding": ""}))
    body = json.dumps(payload | {"padding": "x" * filler})
    assert len(body) == 1024 * 1024
    assert post(client, body).status_code == 200


def test_the_size_that_is_read_counts_not_only_content_length():
    # A chunked request has no Content-Length; gunicorn de-chunks it and says so.
    request = RequestFactory().post(
        f"{URL}?secret={SECRET}", data="x" * (1024 * 1024 + 10), content_type="application/json"
    )
    del request.META["CONTENT_LENGTH"]
    request.META["wsgi.input_terminated"] = True
    response = views.smartlead_webhook(request)
    assert response.status_code == 413


def test_bad_input_without_the_secret_is_refused_and_not_kept(client):
    assert post(client, "{not json", secret="wrong").status_code == 401
    assert post(client, "x" * (2 * 1024 * 1024), secret=None).status_code == 401
    assert not WebhookEvent.objects.exists()


def test_text_postgres_cannot_hold_is_replaced_not_a_500(client):
    body = b'{"event_type": "EMAIL_OPEN\\u0000", "to_email": "a\\ud800@x.test", "x": "\xff\x00"}'
    response = post(client, body)
    assert response.status_code == 200
    event = WebhookEvent.objects.get()
    assert "\x00" not in event.raw_body + event.event_type + event.lead_email


def test_numbers_out_of_range_are_dropped_not_a_500(client):
    payload = fixture("email_open", campaign_id=2**70, sequence_number="99999999999")
    assert post(client, payload).status_code == 200
    event = WebhookEvent.objects.get()
    assert event.campaign_id is None and event.sequence_number is None
    assert event.outcome == Outcome.UNMATCHED


# --- Parsing (pure) -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("2025-03-28T09:35:01+00:00", "2025-03-28T09:35:01+00:00"),
        ("2025-03-28T09:35:01.512Z", "2025-03-28T09:35:01.512000+00:00"),
        ("2025-03-28T11:35:01+02:00", "2025-03-28T11:35:01+02:00"),
        ("2025-03-28 09:35:01", "2025-03-28T09:35:01+00:00"),  # naive means UTC
        (1743154501, "2025-03-28T09:35:01+00:00"),  # epoch seconds
        ("1743154501000", "2025-03-28T09:35:01+00:00"),  # epoch milliseconds, as text
        ("yesterday", None),
        ("2025-02-30T00:00:00Z", None),
        (True, None),
        ({"time": 1}, None),
    ],
)
def test_event_times_in_every_shape_parse_or_are_dropped(raw, expected):
    parsed = webhooks.identify({"event_type": "EMAIL_OPEN", "event_timestamp": raw}, "{}")
    assert (parsed.event_time.isoformat() if parsed.event_time else None) == expected


@pytest.mark.parametrize(
    "raw,expected",
    [
        (9181, 9181),
        ("9181", 9181),
        (" 9181 ", 9181),
        (9181.0, 9181),
        (9181.5, None),
        ("9181abc", None),
        (True, None),
        (None, None),
        ([9181], None),
        (2**63, None),
    ],
)
def test_numbers_as_strings_parse_like_numbers(raw, expected):
    assert (
        webhooks.identify({"event_type": "EMAIL_OPEN", "campaign_id": raw}, "{}").campaign_id
        == expected
    )


def test_the_lead_is_the_enrolled_address_before_the_replying_alias():
    payload = fixture("email_reply", to_email="assistant@prospect.test")
    assert webhooks.identify(payload, "{}").lead_email == LEAD_EMAIL


def test_old_event_names_are_stored_under_the_current_ones():
    for old, new in [("EMAIL_REPLIED", "EMAIL_REPLY"), ("email_opened", "EMAIL_OPEN")]:
        assert webhooks.identify({"event": old}, "{}").event_type == new


# --- Never a 5xx ------------------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
event_like = st.fixed_dictionaries(
    {
        "event_type": st.sampled_from([*applying.EFFECTS, "EMAIL_OPENED", "X"]) | json_scalars,
        "campaign_id": st.sampled_from([9181, "9181", " 9181 ", 9181.0, 2**64]) | json_values,
        "sl_lead_email": st.sampled_from([LEAD_EMAIL, LEAD_EMAIL.upper(), ""]) | json_values,
        "stats_id": st.uuids().map(str) | json_scalars,
        "sequence_number": st.integers() | st.text(max_size=12),
        "event_timestamp": st.datetimes().map(str) | json_scalars,
        "lead_category": json_values,
        "link_clicked": json_values,
    },
    optional={"event": json_values, "lead": json_values, "time_sent": json_values},
)
bodies = (
    st.binary(max_size=300)
    | st.text(max_size=300).map(str.encode)
    | json_values.map(lambda v: json.dumps(v).encode())
    | event_like.map(lambda v: json.dumps(v).encode())
    | event_like.map(lambda v: json.dumps(v, ensure_ascii=False).encode())
)
content_types = st.sampled_from(
    ["application/json", "application/JSON; charset=utf-8", ""]
) | st.text(max_size=30)
headers = st.dictionaries(
    st.sampled_from(
        [
            "HTTP_X_SMARTLEAD_SIGNATURE",
            "HTTP_X_WEBHOOK_SECRET",
            "HTTP_USER_AGENT",
            "HTTP_X_REQUEST_ID",
        ]
    ),
    st.text(max_size=80),
    max_size=3,
)


@pytest.mark.postgres
@hypothesis_settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=bodies,
    content_type=content_types,
    secret=st.sampled_from([SECRET, SECRET, "wrong", "", "ü"]),
    extra=headers,
    signing=st.sampled_from(["", SIGNING_SECRET]),
)
def test_it_never_answers_5xx_whatever_arrives(
    client, settings, body, content_type, secret, extra, signing
):
    configure(settings, signing=signing)
    if not WebhookEvent.objects.exists():
        make_lead()
    response = post(client, body, secret=secret, content_type=content_type, **extra)
    assert response.status_code < 500, response.content
    assert response["Content-Type"] == "application/json"
    assert set(response.json()) in ({"error"}, {"status", "id"})


# --- Concurrency ----------------------------------------------------------------------------


def at_the_same_moment(*calls: Any) -> list[Any]:
    """Run the calls in threads released together; each thread has its own connection."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(i: int, call: Any) -> None:
        try:
            barrier.wait()
            results[i] = call()
        except Exception as exc:  # noqa: BLE001 - reported by the assertions below
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("name", ["email_open", "email_sent"])
def test_the_same_event_delivered_twice_at_the_same_moment_is_applied_once(name):
    lead = make_lead()
    body = json.dumps(fixture(name))
    for _ in range(5):  # a few rounds, so the race is really run both ways
        WebhookEvent.objects.all().delete()
        Engagement.objects.all().delete()
        Contact.objects.filter(pk=lead.contact.pk).update(engagement_score=0)
        responses = at_the_same_moment(*[lambda: post(Client(), body)] * 2)
        assert sorted(r.json()["status"] for r in responses) == ["duplicate", "received"]
        event = WebhookEvent.objects.get()
        assert event.deliveries == 2 and event.outcome == Outcome.APPLIED
        assert Engagement.objects.filter(contact=lead.contact).count() == 1
        expected = 10 if name == "email_open" else 0
        assert Contact.objects.get(pk=lead.contact.pk).engagement_score == expected


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_reprocessors_at_the_same_moment_apply_a_failed_event_once(monkeypatch):
    lead = make_lead()
    monkeypatch.setattr(background, "hand_off", lambda: None)
    post(Client(), fixture("email_reply"))
    WebhookEvent.objects.update(outcome=Outcome.FAILED, detail="OperationalError: deadlock")
    results = at_the_same_moment(
        *[lambda: applying.apply(WebhookEvent.objects.reprocessable())] * 3
    )
    assert sum(sum(r.values()) for r in results) == 1, results
    assert Engagement.objects.filter(contact=lead.contact).count() == 1
    assert Contact.objects.get(pk=lead.contact.pk).engagement_score == 50
    assert WebhookEvent.objects.get().attempts == 1


def in_a_thread(work: Any) -> threading.Thread:
    """Start `work` in a thread with its own connection, closed when it ends."""

    def run() -> None:
        try:
            work()
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@dataclass
class Stall:
    resolving: threading.Event
    release: threading.Event


@pytest.fixture
def stalled_resolve(monkeypatch: pytest.MonkeyPatch) -> Stall:
    """The first batch to resolve stops there until released; later ones run at once."""
    stall = Stall(threading.Event(), threading.Event())
    real_resolve = applying.resolve
    first_call = threading.Lock()

    def slow_once(keys: set[tuple[str, str]]) -> Any:
        if first_call.acquire(blocking=False):
            stall.resolving.set()
            stall.release.wait(timeout=10)
        return real_resolve(keys)

    monkeypatch.setattr(applying, "resolve", slow_once)
    monkeypatch.setattr(background, "hand_off", lambda: None)
    return stall


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_redelivery_is_answered_while_its_event_is_being_applied(stalled_resolve):
    """Resolving a batch is the slow part of applying it; a re-delivery must not wait for it."""
    lead = make_lead()
    body = json.dumps(fixture("email_open"))
    post(Client(), body)
    answers: list[int] = []
    batch = in_a_thread(lambda: applying.apply(WebhookEvent.objects.pending()))
    assert stalled_resolve.resolving.wait(timeout=10)
    redelivery = in_a_thread(lambda: answers.append(post(Client(), body).status_code))
    redelivery.join(timeout=5)
    answered_during_apply = not redelivery.is_alive()
    stalled_resolve.release.set()
    batch.join(timeout=10)
    redelivery.join(timeout=10)
    assert answered_during_apply and answers == [200]
    event = WebhookEvent.objects.get()
    assert event.deliveries == 2 and event.outcome == Outcome.APPLIED
    assert Engagement.objects.filter(contact=lead.contact).count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_an_event_applied_by_another_process_while_a_batch_resolves_is_applied_once(
    stalled_resolve,
):
    """A batch reads its events unlocked, resolves them, then locks them: an event someone
    else applied in between must be left out, not applied a second time."""
    lead = make_lead()
    post(Client(), fixture("email_reply"))
    results: list[Any] = []
    stalled = in_a_thread(lambda: results.append(applying.apply(WebhookEvent.objects.pending())))
    assert stalled_resolve.resolving.wait(timeout=10)
    assert applying.apply(WebhookEvent.objects.pending()) == {"applied": 1}
    stalled_resolve.release.set()
    stalled.join(timeout=10)
    assert results == [{}]
    assert Engagement.objects.filter(contact=lead.contact).count() == 1
    assert Contact.objects.get(pk=lead.contact.pk).engagement_score == 50


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_it_applies_events_in_the_background_within_seconds_when_the_applier_runs(monkeypatch):
    applier = background.Applier()
    monkeypatch.setattr(background, "applier", applier)
    lead = make_lead()
    applier.start()
    try:
        ids = [post(Client(), fixture(n)).json()["id"] for n in ("email_open", "email_reply")]
        deadline = time.monotonic() + 5
        while WebhookEvent.objects.pending().exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        applier.stop()
    assert set(WebhookEvent.objects.filter(pk__in=ids).values_list("outcome", flat=True)) == {
        Outcome.APPLIED
    }
    assert Contact.objects.get(pk=lead.contact.pk).engagement_score == 60


def call_wsgi(
    path: str, body: bytes = b"", query: str = "", host: str = "testserver"
) -> tuple[str, dict[str, str]]:
    """Through outboundhq.wsgi.application, as gunicorn calls it."""
    from outboundhq.wsgi import application

    environ = {"PATH_INFO": path, "QUERY_STRING": query, "HTTP_X_FORWARDED_PROTO": "https"}
    environ["HTTP_HOST"] = host
    if body:
        environ |= {"REQUEST_METHOD": "POST", "CONTENT_TYPE": "application/json"}
        environ |= {"CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body)}
    setup_testing_defaults(environ)
    answer: list[Any] = []
    result = application(environ, lambda status, headers, *_: answer.extend([status, headers]))
    b"".join(result)
    result.close()
    return answer[0], dict(answer[1])


# Outside a test transaction: the real handler opens and closes connections per request.
@pytest.mark.django_db(transaction=True)
def test_the_receiver_is_served_without_the_browser_middleware(settings):
    configure(settings)
    body = json.dumps(fixture("email_open", stats_id="wsgi-1")).encode()
    status, headers = call_wsgi(URL, body, query=f"secret={SECRET}")
    assert status.startswith("200")
    assert WebhookEvent.objects.filter(stats_id="wsgi-1").exists()
    # Request ids and security headers, but no session, CSRF, CORS or framing middleware.
    assert "X-Request-ID" in headers and headers["X-Content-Type-Options"] == "nosniff"
    assert "X-Frame-Options" not in headers and "Vary" not in headers
    # Every other path keeps the whole stack.
    status, headers = call_wsgi("/health")
    assert status.startswith("200") and headers["X-Frame-Options"] == "DENY"


@pytest.mark.django_db(transaction=True)
def test_the_receiver_still_refuses_a_host_that_is_not_allowed(settings):
    configure(settings)
    body = json.dumps(fixture("email_open", stats_id="wsgi-2")).encode()
    status, _ = call_wsgi(URL, body, query=f"secret={SECRET}", host="evil.example")
    assert status.startswith("400")
    assert not WebhookEvent.objects.filter(stats_id="wsgi-2").exists()


def test_it_takes_the_webhook_fast_path_right_after_the_security_middleware(settings):
    middleware = settings.MIDDLEWARE
    fast = middleware.index("outboundhq.middleware.WebhookFastPath")
    assert middleware[fast - 1] == "django.middleware.security.SecurityMiddleware"
    assert middleware[:fast] == ["outboundhq.middleware.RequestIdMiddleware", middleware[fast - 1]]


# --- Hostile input (issue 13 point 5) ------------------------------------------------------


NOT_NUMBERS = ["--7", "1e309", "NaN", "-", "+7", "٣", "7.5", "0x1f", "9" * 30, "", " "]


@pytest.mark.parametrize("field", ["campaign_id", "sequence_number", "sl_email_lead_id"])
@pytest.mark.parametrize("value", [*NOT_NUMBERS, True, False, 1e308, -(2**70), [7], {"id": 7}])
def test_a_field_that_is_no_number_never_loses_the_delivery(client, field, value):
    make_lead()
    response = post(client, fixture("email_reply", **{field: value}))
    assert response.status_code == 200, response.content
    event = WebhookEvent.objects.get()
    assert event.outcome in (Outcome.APPLIED, Outcome.UNMATCHED)
    if field == "campaign_id":
        assert event.campaign_id is None and event.outcome == Outcome.UNMATCHED


@pytest.mark.parametrize("literal", ["1e309", "-1e309", "NaN", "Infinity", "1" + "0" * 5000])
def test_json_number_literals_out_of_range_are_no_500(client, literal):
    body = json.dumps(fixture("email_open"))
    body = body.replace('"campaign_id": 9181', f'"campaign_id": {literal}')
    assert literal in body
    response = post(client, body)
    assert response.status_code in (200, 400)
    assert WebhookEvent.objects.count() == 1


def test_a_number_with_spaces_around_it_still_counts():
    assert webhooks.campaign_id_of(" 9181 ") == 9181
    assert webhooks.campaign_id_of("-12") == -12
    assert webhooks.campaign_id_of("--7") is None


def test_a_deeply_nested_body_is_kept_as_rejected_and_its_admin_page_opens(client, admin_client):
    deep = "[" * 10_000 + "]" * 10_000
    nested = '{"event_type": "EMAIL_OPEN", "a": ' + "[" * 40 + "]" * 40 + "}"
    for body in (deep, nested):
        assert post(client, body).status_code == 400
    # And a row stored deeply nested by an older version must not break its page either.
    WebhookEvent.objects.create(dedupe_key="deep", outcome=Outcome.REJECTED, raw_body=deep[:5000])
    for event in WebhookEvent.objects.all():
        assert event.outcome == Outcome.REJECTED
        page = admin_client.get(reverse("admin:smartlead_webhookevent_change", args=[event.pk]))
        assert page.status_code == 200


def test_a_large_rejected_body_is_kept_clipped_with_its_size(client):
    body = "x" * (200 * 1024)
    assert post(client, body).status_code == 400
    event = WebhookEvent.objects.get()
    assert len(event.raw_body) < 65 * 1024
    assert event.raw_body.endswith(f"[truncated: {200 * 1024} bytes received]")


def test_only_the_newest_rejected_deliveries_of_each_source_are_kept(client, monkeypatch):
    monkeypatch.setattr(views, "REJECTED_KEPT_PER_SOURCE", 3)
    for n in range(5):
        assert post(client, f"not json {n}").status_code == 400
    other = WebhookEvent.objects.store(
        dedupe_key="rejected:other", outcome=Outcome.REJECTED, source="token:777", raw_body="x"
    )
    assert post(client, "not json 5").status_code == 400
    kept = WebhookEvent.objects.filter(source="secret").order_by("id")
    assert [e.raw_body for e in kept] == ["not json 3", "not json 4", "not json 5"]
    assert WebhookEvent.objects.filter(pk=other.id).exists()  # another source's are its own
    assert post(client, fixture("email_open")).status_code == 200  # accepted ones are never pruned
    assert post(client, "not json 6").status_code == 400
    assert WebhookEvent.objects.exclude(outcome=Outcome.REJECTED).count() == 1


# --- What is kept of an accepted body (issue 24, point 10) ---------------------------------


def test_it_keeps_an_accepted_body_bounded_and_still_applies_it(client):
    lead = make_lead()
    thread = [{"stats_id": f"s{n}", "email_body": "quoted " * 2000} for n in range(20)]
    huge = fixture("email_reply", history=thread)
    huge["reply_message"] = huge["reply_message"] | {"text": "Yes, let's talk. " + "x" * 600_000}
    assert 800_000 < len(json.dumps(huge)) < 1024 * 1024

    assert post(client, huge).status_code == 200

    event = WebhookEvent.objects.get()
    assert len(event.raw_body) <= 64 * 1024
    kept = json.loads(event.raw_body)  # still the JSON applying reads
    assert kept["sl_lead_email"] == LEAD_EMAIL and kept["_outboundhq_clipped_from_chars"] > 800_000
    assert event.outcome == Outcome.APPLIED
    reply = Engagement.objects.get(contact=lead.contact)
    assert reply.metadata["reply_preview"].startswith("Yes, let's talk.")
    assert Enrollment.objects.get(pk=lead.enrollment.pk).status == "replied"


def test_it_keeps_a_glimpse_of_an_event_it_does_not_act_on_and_only_the_newest(client, monkeypatch):
    monkeypatch.setattr(views, "IGNORED_KEPT_PER_SOURCE", 3)
    for n in range(6):
        body = {"event_type": "UNTRACKED_REPLIES", "stats_id": f"u{n}", "padding": "x" * 900_000}
        assert post(client, body).status_code == 200

    kept = WebhookEvent.objects.order_by("id")
    assert [e.stats_id for e in kept] == ["u3", "u4", "u5"]
    assert all(e.outcome == Outcome.IGNORED and len(e.raw_body) <= 4096 for e in kept)
    assert json.loads(kept[0].raw_body)["event_type"] == "UNTRACKED_REPLIES"
    assert post(client, fixture("email_open")).status_code == 200  # acted-on ones are not pruned
    assert WebhookEvent.objects.count() == 4


def test_it_keeps_whole_the_bodies_of_exactly_the_events_applying_acts_on():
    assert events.ACTED_ON == set(applying.EFFECTS) | set(notices.NOTICES)
