"""The Smartlead client at its seam: requests, parsing, typed errors, retries, limiter, redaction.

HTTP is faked with `responses`; time with the `smartlead_clock` fixture, so no test sleeps.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import traceback
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses

from smartlead import api as client_module
from smartlead.api import (
    InvalidApiKey,
    Lead,
    NoApiAccess,
    NotFound,
    RateLimited,
    SequenceStepSpec,
    SmartleadClient,
    SmartleadError,
    TransientError,
    ValidationFailed,
    Webhook,
    transport,
)
from smartlead.api import errors as errors_module
from smartlead.api import limits as limits_module
from smartlead.api.limits import Budget, Limits, MemoryStore, Priority

KEY = "sl-unit-test-key-5f0c1e9a7b3d"
OTHER_KEY = "sl-unit-test-key-other-84c2aa"
BASE = "https://smartlead.test/api/v1"


@pytest.fixture
def api() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock() as mock:
        yield mock


@pytest.fixture
def client(smartlead_clock: Any) -> Iterator[SmartleadClient]:
    with SmartleadClient(KEY, base_url=BASE) as smartlead:
        yield smartlead


def leaks(error: BaseException) -> bool:
    """Whether the key shows anywhere a person or a log could see this exception."""
    shown = "".join(traceback.format_exception(error)) + repr(error) + str(error)
    return KEY in shown


def steps() -> list[SequenceStepSpec]:
    return [
        SequenceStepSpec(
            seq_number=1, delay_in_days=0, subject="Hi {{first_name}}", email_body="A"
        ),
        SequenceStepSpec(seq_number=2, delay_in_days=3, subject="", email_body="B"),
    ]


SCHEDULE = {
    "timezone": "America/New_York",
    "days_of_the_week": [1, 2, 3, 4, 5],
    "start_hour": "09:00",
    "end_hour": "17:00",
    "min_time_btw_emails": 10,
    "max_new_leads_per_day": 100,
}
OPERATIONS = [
    (
        "list_email_accounts",
        (),
        {},
        "GET",
        "/email-accounts/",
        {"offset": "0", "limit": "100"},
        None,
        [],
    ),
    ("get_email_account", (7,), {}, "GET", "/email-accounts/7/", {}, None, {"id": 7}),
    ("create_campaign", ("Q3",), {}, "POST", "/campaigns/create", {}, {"name": "Q3"}, {"id": 12}),
    ("get_campaign", (12,), {}, "GET", "/campaigns/12", {}, None, {"id": 12}),
    ("list_campaigns", (), {}, "GET", "/campaigns/", {}, None, []),
    (
        "save_sequences",
        (12, steps()),
        {},
        "POST",
        "/campaigns/12/sequences",
        {},
        {
            "sequences": [
                {
                    "id": None,
                    "seq_number": 1,
                    "seq_delay_details": {"delay_in_days": 0},
                    "subject": "Hi {{first_name}}",
                    "email_body": "A",
                },
                {
                    "id": None,
                    "seq_number": 2,
                    "seq_delay_details": {"delay_in_days": 3},
                    "subject": "",
                    "email_body": "B",
                },
            ]
        },
        {"ok": True},
    ),
    (
        "add_email_accounts",
        (12, [7, 8]),
        {},
        "POST",
        "/campaigns/12/email-accounts",
        {},
        {"email_account_ids": [7, 8]},
        {"ok": True},
    ),
    ("set_schedule", (12,), SCHEDULE, "POST", "/campaigns/12/schedule", {}, SCHEDULE, {"ok": True}),
    (
        "update_settings",
        (12,),
        {"stop_lead_settings": "REPLY_TO_AN_EMAIL", "track_settings": []},
        "POST",
        "/campaigns/12/settings",
        {},
        {"stop_lead_settings": "REPLY_TO_AN_EMAIL", "track_settings": []},
        {"ok": True},
    ),
    (
        "set_status",
        (12, "PAUSED"),
        {},
        "POST",
        "/campaigns/12/status",
        {},
        {"status": "PAUSED"},
        {},
    ),
    (
        "add_leads",
        (12, [Lead("ann@acme.test", first_name="Ann", custom_fields={"k": "v"}), Lead("b@b.test")]),
        {},
        "POST",
        "/campaigns/12/leads",
        {},
        {
            "lead_list": [
                {"email": "ann@acme.test", "first_name": "Ann", "custom_fields": {"k": "v"}},
                {"email": "b@b.test"},
            ],
            # Always asked for: the per-lead map is the evidence of what was imported.
            "settings": {"return_lead_ids": True},
        },
        {"ok": True, "upload_count": 2, "total_leads": 2},
    ),
    ("find_lead", ("ann@acme.test",), {}, "GET", "/leads/", {"email": "ann@acme.test"}, None, {}),
    ("list_campaign_webhooks", (12,), {}, "GET", "/campaigns/12/webhooks", {}, None, []),
    ("lead_categories", (), {}, "GET", "/leads/fetch-categories", {}, None, []),
    (
        "save_campaign_webhook",
        (12,),
        {"name": "OHQ", "url": "https://ohq.test/wh", "event_types": ["EMAIL_REPLY"]},
        "POST",
        "/campaigns/12/webhooks",
        {},
        {
            "id": None,
            "name": "OHQ",
            "webhook_url": "https://ohq.test/wh",
            "event_types": ["EMAIL_REPLY"],
            "categories": ["Interested"],
        },
        {"ok": True},
    ),
]


@pytest.mark.parametrize(
    ("operation", "args", "kwargs", "method", "path", "query", "body", "answer"),
    OPERATIONS,
    ids=[row[0] for row in OPERATIONS],
)
def test_it_sends_each_operation_to_its_live_path_with_the_key_in_the_query(
    api: responses.RequestsMock,
    client: SmartleadClient,
    settings: Any,
    operation: str,
    args: tuple,
    kwargs: dict,
    method: str,
    path: str,
    query: dict,
    body: Any,
    answer: Any,
) -> None:
    api.add(method, BASE + path, json=answer)

    getattr(client, operation)(*args, **kwargs)

    request = api.calls[0].request
    url = urlsplit(request.url)
    assert (request.method, url.path) == (method, urlsplit(BASE + path).path)
    assert parse_qs(url.query) == {"api_key": [KEY]} | {k: [v] for k, v in query.items()}
    assert (json.loads(request.body) if request.body else None) == body
    assert request.headers["User-Agent"].startswith("OutboundHQ-backend/1.0")
    assert "Authorization" not in request.headers
    timeouts = (settings.SMARTLEAD_CONNECT_TIMEOUT, settings.SMARTLEAD_READ_TIMEOUT)
    assert request.req_kwargs["timeout"] == timeouts


def test_it_drops_mailbox_passwords_and_server_details_at_the_seam(
    api: responses.RequestsMock, client: SmartleadClient
) -> None:
    row = {
        "id": "41",
        "from_email": "sdr@acme.test",
        "from_name": "Sam",
        "type": "gmail",
        "password": "c2VjcmV0LXBhc3N3b3Jk",
        "imap_password": "hunter2-imap",
        "smtp_host": "smtp.acme.test",
        "is_smtp_success": True,
        "is_imap_success": "false",
        "message_per_day": "40",
        "warmup_details": {"status": "ACTIVE", "warmup_reputation": "95%"},
    }
    api.add("GET", BASE + "/email-accounts/", json=[row, {"from_email": "no-id@acme.test"}])

    [account] = client.list_email_accounts()

    assert account.as_dict() == {
        "id": 41,
        "from_email": "sdr@acme.test",
        "from_name": "Sam",
        "type": "GMAIL",
        "smtp_ok": True,
        "imap_ok": False,
        "daily_limit": 40,
        "warmup_status": "ACTIVE",
        "suspended": False,  # no is_suspended in the row: as in Smartlead's examples
        "warmup_reputation": 95.0,  # "95%" on the list route
        "smtp_error": None,
        "imap_error": None,
    }
    assert "hunter2" not in repr(account) and "smtp.acme" not in repr(account)


def test_it_pages_email_accounts_until_a_short_page(
    api: responses.RequestsMock, client: SmartleadClient
) -> None:
    for start, size in ((0, 100), (100, 100), (200, 5)):
        rows = [{"id": n, "from_email": f"m{n}@acme.test"} for n in range(start, start + size)]
        api.add("GET", BASE + "/email-accounts/", json=rows)

    accounts = client.list_email_accounts()

    assert [a.id for a in accounts] == list(range(205))
    offsets = [parse_qs(urlsplit(c.request.url).query)["offset"] for c in api.calls]
    assert offsets == [["0"], ["100"], ["200"]]


def test_it_fills_missing_mailbox_fields_with_empty_values(
    api: responses.RequestsMock, client: SmartleadClient
) -> None:
    api.add("GET", BASE + "/email-accounts/9/", json=[{"id": 9, "warmup_details": None}])

    account = client.get_email_account(9)

    assert (account.from_email, account.type, account.daily_limit) == ("", "", None)
    assert (account.smtp_ok, account.warmup_status) == (False, None)


@pytest.mark.parametrize(
    "answer",
    [
        {"id": "12", "name": "Q3", "status": "ACTIVE"},
        {"success": True, "data": {"id": 12, "name": "Q3", "status": "ACTIVE"}},
        [{"id": 12, "name": "Q3", "status": "ACTIVE"}],
    ],
    ids=["bare-with-string-id", "wrapped", "one-element-array"],
)
def test_it_reads_a_campaign_in_any_envelope(
    api: responses.RequestsMock, client: SmartleadClient, answer: Any
) -> None:
    api.add("GET", BASE + "/campaigns/12", json=answer)

    assert client.get_campaign(12) == client_module.Campaign(12, "Q3", "ACTIVE")


@pytest.mark.parametrize("answer", [{"json": {}}, {"body": ""}, {"status": 404, "json": {}}])
def test_it_reports_a_missing_campaign_as_not_found_however_smartlead_says_it(
    api: responses.RequestsMock, client: SmartleadClient, answer: dict
) -> None:
    api.add("GET", BASE + "/campaigns/77", **answer)

    with pytest.raises(NotFound, match="campaign 77") as caught:
        client.get_campaign(77)

    assert caught.value.permanent


def test_it_returns_the_new_campaign_as_drafted(
    api: responses.RequestsMock, client: SmartleadClient
) -> None:
    api.add("POST", BASE + "/campaigns/create", json={"ok": True, "id": 12, "name": "Q3"})

    assert client.create_campaign("Q3") == client_module.Campaign(12, "Q3", "DRAFTED")


def test_it_finds_a_lead_or_returns_none_for_smartleads_empty_answer(
    api: responses.RequestsMock, client: SmartleadClient
) -> None:
    lead = {
        "id": "3499513771",
        "email": "ann@acme.test",
        "is_unsubscribed": False,
        "lead_campaign_data": [{"campaign_id": 12}, {"campaign_id": "13"}],
    }
    api.add("GET", BASE + "/leads/", json=lead)
    api.add("GET", BASE + "/leads/", json={})

    found = client.find_lead("ann@acme.test")

    assert found == client_module.FoundLead(3499513771, "ann@acme.test", False, (12, 13))
    assert client.find_lead("nobody@acme.test") is None


def test_it_turns_add_leads_counts_into_per_lead_outcomes(
    api: responses.RequestsMock, client: SmartleadClient
) -> None:
    answer = {
        "ok": True,
        "upload_count": "5",
        "total_leads": "2",
        "already_added_to_campaign": 1,
        "duplicate_count": 0,
        "invalid_email_count": "1",
        "invalid_emails": ["Bad@"],
        "block_count": 0,
        "bounce_count": 0,
        "unsubscribed_leads": [{"email": "Gone@acme.test"}],
        "is_lead_limit_exhausted": False,
        "unrelated": "x",
    }
    api.add("POST", BASE + "/campaigns/12/leads", json=answer)
    emails = ["a@acme.test", "b@acme.test", "c@acme.test", "bad@", "gone@acme.test"]

    result = client.add_leads(12, [Lead(email) for email in emails])

    assert (result.submitted, result.added, result.already_in_campaign) == (5, 2, 1)
    assert (result.invalid_count, result.invalid_emails) == (1, ("Bad@",))
    # The ledger keeps Smartlead's own counts, exactly as sent.
    assert result.counts == {
        key: value
        for key, value in answer.items()
        if key not in ("ok", "unrelated", "invalid_emails")
    }
    outcomes = result.outcomes(emails)
    # Three leads, two added and one already there: all three are in the campaign.
    assert [outcomes[email].outcome for email in emails] == ["added_or_existing"] * 3 + [
        "invalid",
        "unsubscribed",
    ]


def test_it_marks_leads_not_imported_when_the_lead_quota_runs_out(
    api: responses.RequestsMock, client: SmartleadClient
) -> None:
    answer = {"total_leads": 1, "invalid_emails": ["x"], "is_lead_limit_exhausted": True}
    answer |= {"invalid_email_count": 1}
    api.add("POST", BASE + "/campaigns/12/leads", json=answer)

    result = client.add_leads(12, [Lead("a@acme.test"), Lead("b@acme.test"), Lead("x")])

    assert result.lead_limit_exhausted
    outcomes = result.outcomes(["a@acme.test", "b@acme.test", "x"])
    # One of the two was imported and the reply does not say which: neither counts as sent.
    assert outcomes["a@acme.test"].outcome == outcomes["b@acme.test"].outcome == "unconfirmed"
    assert outcomes["x"].outcome == "invalid"


def test_it_refuses_a_batch_over_the_configured_size_without_calling_smartlead(
    api: responses.RequestsMock, settings: Any
) -> None:
    settings.SMARTLEAD_LEADS_PER_REQUEST = 2
    smartlead = SmartleadClient(KEY, base_url=BASE)

    with pytest.raises(ValueError, match="At most 2 leads"):
        smartlead.add_leads(12, [Lead(f"{n}@acme.test") for n in range(3)])

    assert len(api.calls) == 0


@pytest.mark.parametrize(("configured", "batch"), [(1000, 350), (0, 1), (100, 100)])
def test_it_clamps_the_batch_size_to_smartleads_lowest_documented_maximum(
    settings: Any, configured: int, batch: int
) -> None:
    settings.SMARTLEAD_LEADS_PER_REQUEST = configured

    assert SmartleadClient(KEY, base_url=BASE).batch_size == batch


def test_it_refuses_status_values_smartlead_cannot_write(
    api: responses.RequestsMock, client: SmartleadClient
) -> None:
    with pytest.raises(ValueError, match="START, PAUSED, STOPPED"):
        client.set_status(12, "ACTIVE")

    assert len(api.calls) == 0


def test_it_reads_webhooks_in_either_event_shape_and_hides_url_secrets(
    api: responses.RequestsMock, client: SmartleadClient
) -> None:
    url = "https://ohq.test/webhooks/smartlead?secret=wh-secret-0123456789"
    rows = [
        {"id": 1, "name": "a", "webhook_url": url, "event_types": ["EMAIL_REPLY"]},
        {"id": "2", "name": "b", "webhook_url": url, "event_type_map": {"EMAIL_SENT": True}},
    ]
    api.add("GET", BASE + "/campaigns/12/webhooks", json=rows)

    hooks = client.list_campaign_webhooks(12)

    assert [h.event_types for h in hooks] == [("EMAIL_REPLY",), ("EMAIL_SENT",)]
    assert hooks[1] == Webhook(2, "b", url, ("EMAIL_SENT",))
    assert "wh-secret-0123456789" not in repr(hooks)


def test_it_leaves_out_empty_webhook_categories_which_smartlead_rejects(
    api: responses.RequestsMock, client: SmartleadClient
) -> None:
    api.add("POST", BASE + "/campaigns/12/webhooks", json={"ok": True})

    client.save_campaign_webhook(
        12, name="n", url="https://o.test", event_types=["EMAIL_REPLY"], categories=(), webhook_id=5
    )

    assert json.loads(api.calls[0].request.body) == {
        "id": 5,
        "name": "n",
        "webhook_url": "https://o.test",
        "event_types": ["EMAIL_REPLY"],
    }


# --- Reads for the reconcile pass (campaign leads, message history) ----------------------


def lead_rows(start: int, size: int, **row: Any) -> list[dict[str, Any]]:
    return [
        {
            "campaign_lead_map_id": 9000 + n,
            "status": "INPROGRESS",
            "lead": {"id": n, "email": f"L{n}@acme.test"},
        }
        | row
        for n in range(start, start + size)
    ]


def test_it_pages_campaign_leads_by_100_until_total_leads_a_string(
    api: responses.RequestsMock, client: SmartleadClient
) -> None:
    for start, size in ((0, 100), (100, 100), (200, 5)):
        answer = {
            "total_leads": "205",
            "offset": start,
            "limit": 100,
            "data": lead_rows(start, size),
        }
        api.add("GET", BASE + "/campaigns/12/leads", json=answer)

    leads = client.campaign_leads(12, email_status="is_replied")

    assert [lead.id for lead in leads] == list(range(205))  # lead.id, not campaign_lead_map_id
    assert leads[7] == client_module.CampaignLead(7, "l7@acme.test", "INPROGRESS")
    queries = [parse_qs(urlsplit(c.request.url).query) for c in api.calls]
    assert [(q["offset"], q["limit"], q["emailStatus"]) for q in queries] == [
        (["0"], ["100"], ["is_replied"]),
        (["100"], ["100"], ["is_replied"]),
        (["200"], ["100"], ["is_replied"]),
    ]


def test_it_goes_on_after_a_page_shorter_than_asked_while_total_leads_says_more(
    api: responses.RequestsMock, client: SmartleadClient
) -> None:
    # A short page is not the end when the total says otherwise: stopping there would hide the
    # replies of every lead after it. The next page starts after the rows actually received.
    for start, size in ((0, 60), (60, 40)):
        answer = {"total_leads": "100", "data": lead_rows(start, size)}
        api.add("GET", BASE + "/campaigns/12/leads", json=answer)

    assert len(client.campaign_leads(12)) == 100
    offsets = [parse_qs(urlsplit(c.request.url).query)["offset"] for c in api.calls]
    assert offsets == [["0"], ["60"]]


def test_it_skips_lead_rows_without_a_lead_id_or_email_and_stops_on_an_empty_page(
    api: responses.RequestsMock, client: SmartleadClient
) -> None:
    rows = [
        {"status": "COMPLETED", "lead": {"id": "3499513771", "email": "Big@acme.test"}},
        {"status": "STOPPED", "lead": {"email": "no-id@acme.test"}},
        {"status": "STOPPED", "lead": None},
        "not a row",
    ]
    api.add("GET", BASE + "/campaigns/12/leads", json={"total_leads": "9", "data": rows})
    api.add("GET", BASE + "/campaigns/12/leads", json={"total_leads": "9", "data": []})

    leads = client.campaign_leads(12)

    assert leads == [client_module.CampaignLead(3499513771, "big@acme.test", "COMPLETED")]
    assert len(api.calls) == 2  # the total was wrong, the empty page ended it


@pytest.mark.parametrize("wrap", [lambda rows: {"history": rows}, lambda rows: rows])
def test_it_reads_a_leads_message_history_bare_or_wrapped(
    api: responses.RequestsMock, client: SmartleadClient, wrap: Any
) -> None:
    rows = [
        {
            "type": "SENT",
            "stats_id": "s-1",
            "message_id": "<m1>",
            "subject": "Hi",
            "email_body": "<p>Hello</p>",
            "time": "2026-12-01T09:00:00+00:00",
            "seq_number": "1",
        },
        {
            "type": "reply",
            "stats_id": "s-1",
            "message_id": "<m2>",
            "email_body": "Yes",
            "time": "2026-12-01T10:00:00+00:00",
        },
    ]
    api.add("GET", BASE + "/campaigns/12/leads/3499513771/message-history", json=wrap(rows))

    sent, reply = client.message_history(12, 3499513771)

    assert (sent.type, sent.stats_id, sent.sequence_number) == ("SENT", "s-1", 1)
    assert (reply.type, reply.stats_id, reply.body, reply.subject) == ("REPLY", "s-1", "Yes", "")


# --- Errors ----------------------------------------------------------------------------
JOI = {
    "statusCode": 400,
    "error": "Bad Request",
    "message": '"min_time_btw_emails" must be larger than or equal to 3',
}
GUIDE_ERROR = {"error": {"code": "VALIDATION_ERROR", "message": "Invalid timezone - Mars/Base"}}
ERRORS = [
    (401, {"json": {"message": "Invalid API Key"}}, InvalidApiKey, True, "invalid or revoked"),
    (403, {"json": {"message": "Access denied"}}, NoApiAccess, True, "plan must include API"),
    (404, {"json": {"error": "Resource not found"}}, NotFound, True, "Resource not found"),
    (404, {"body": "<pre>Cannot PATCH /x</pre>"}, NotFound, True, "Cannot PATCH"),
    (400, {"json": JOI}, ValidationFailed, True, '"min_time_btw_emails" must be larger'),
    (400, {"json": GUIDE_ERROR}, ValidationFailed, True, "Invalid timezone - Mars/Base"),
    (
        422,
        {"json": {"error": "limit must be less than or equal to 100"}},
        ValidationFailed,
        True,
        "limit",
    ),
    (429, {"json": {}, "headers": {"Retry-After": "30"}}, RateLimited, False, "retry after 30"),
    (500, {"json": {"error": "Error while creating"}}, TransientError, False, "Error while"),
    (503, {"body": ""}, TransientError, False, "HTTP 503"),
    (302, {"headers": {"Location": f"{BASE}/elsewhere"}}, SmartleadError, True, "redirect"),
    (409, {"json": {"error": "Duplicate"}}, SmartleadError, True, "Duplicate"),
]


@pytest.mark.parametrize(
    ("status", "answer", "error_class", "permanent", "text"),
    ERRORS,
    ids=[f"{row[0]}-{row[2].__name__}" for row in ERRORS],
)
def test_it_raises_a_typed_error_a_person_can_act_on(
    api: responses.RequestsMock,
    smartlead_clock: Any,
    status: int,
    answer: dict,
    error_class: type,
    permanent: bool,
    text: str,
) -> None:
    api.assert_all_requests_are_fired = False
    api.add("GET", BASE + "/campaigns/", status=status, **answer)
    api.add("GET", BASE + "/elsewhere", json=[])  # only reached if a redirect were followed
    smartlead = SmartleadClient(KEY, base_url=BASE, retry_budget=0)

    with pytest.raises(error_class, match=text) as caught:
        smartlead.list_campaigns()

    assert type(caught.value) is error_class
    assert (caught.value.permanent, caught.value.status) == (permanent, status)
    assert not leaks(caught.value)
    assert len(api.calls) == 1


@pytest.mark.parametrize(
    ("failure", "text"),
    [
        (requests.ReadTimeout, "did not answer in time"),
        (requests.ConnectTimeout, "did not accept the connection"),
        (requests.ConnectionError, "Could not reach Smartlead"),
    ],
)
def test_it_turns_network_failures_into_transient_errors_without_the_url(
    api: responses.RequestsMock, smartlead_clock: Any, failure: type, text: str
) -> None:
    message = f"HTTPSConnectionPool: Max retries exceeded with url: /api/v1/x?api_key={KEY}"
    api.add("GET", BASE + "/campaigns/", body=failure(message))
    smartlead = SmartleadClient(KEY, base_url=BASE, retry_budget=0)

    with pytest.raises(TransientError, match=text) as caught:
        smartlead.list_campaigns()

    assert not caught.value.permanent
    assert caught.value.__cause__ is None and caught.value.__context__ is None
    assert not leaks(caught.value)


# --- Retries ---------------------------------------------------------------------------
@pytest.mark.parametrize(("jitter", "waits"), [(0.0, [0.5, 1.0, 2.0]), (1.0, [1.0, 2.0, 4.0])])
def test_it_retries_server_errors_with_exponential_backoff_and_jitter(
    api: responses.RequestsMock,
    client: SmartleadClient,
    smartlead_clock: Any,
    monkeypatch: pytest.MonkeyPatch,
    jitter: float,
    waits: list[float],
) -> None:
    monkeypatch.setattr(limits_module, "_random", lambda: jitter)
    for _ in range(3):
        api.add("GET", BASE + "/campaigns/", status=503, json={"error": "busy"})
    api.add("GET", BASE + "/campaigns/", json=[{"id": 1, "name": "a"}])

    assert [c.id for c in client.list_campaigns()] == [1]
    assert len(api.calls) == 4
    assert smartlead_clock.sleeps == waits


def test_it_caps_the_backoff(
    api: responses.RequestsMock, smartlead_clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits_module, "_random", lambda: 1.0)
    api.add("GET", BASE + "/campaigns/", status=502, json={})
    smartlead = SmartleadClient(KEY, base_url=BASE, retry_budget=200)

    with pytest.raises(TransientError):
        smartlead.list_campaigns()

    assert smartlead_clock.sleeps == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0, 30.0]


@pytest.mark.parametrize(
    ("headers", "body", "wait"),
    [
        ({"Retry-After": "7"}, {}, 7.0),
        ({}, {"error": {"code": "RATE_LIMIT_EXCEEDED", "retry_after": 30}}, 30.0),
        ({}, {}, errors_module.DEFAULT_RETRY_AFTER),
    ],
    ids=["header", "body", "default"],
)
def test_it_waits_at_least_retry_after_before_retrying_a_429(
    api: responses.RequestsMock,
    client: SmartleadClient,
    smartlead_clock: Any,
    headers: dict,
    body: dict,
    wait: float,
) -> None:
    api.add("GET", BASE + "/campaigns/", status=429, json=body, headers=headers)
    api.add("GET", BASE + "/campaigns/", json=[])

    assert client.list_campaigns() == []
    [slept] = smartlead_clock.sleeps
    assert wait <= slept <= wait + transport.RETRY_AFTER_JITTER


def test_it_reads_an_http_date_retry_after(
    api: responses.RequestsMock, client: SmartleadClient, smartlead_clock: Any
) -> None:
    when = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 20))
    api.add("GET", BASE + "/campaigns/", status=429, json={}, headers={"Retry-After": when})
    api.add("GET", BASE + "/campaigns/", json=[])

    client.list_campaigns()

    assert 18 <= smartlead_clock.sleeps[0] <= 21


def test_it_never_retries_a_permanent_error(
    api: responses.RequestsMock, client: SmartleadClient, smartlead_clock: Any
) -> None:
    api.add("POST", BASE + "/campaigns/12/schedule", status=400, json=JOI)

    with pytest.raises(ValidationFailed):
        client.set_schedule(12, **SCHEDULE)

    assert len(api.calls) == 1
    assert smartlead_clock.sleeps == []


def test_it_gives_up_when_the_retry_budget_is_spent(
    api: responses.RequestsMock, smartlead_clock: Any
) -> None:
    api.add("GET", BASE + "/campaigns/", status=503, json={})
    smartlead = SmartleadClient(KEY, base_url=BASE, retry_budget=5)

    with pytest.raises(TransientError):
        smartlead.list_campaigns()

    # Waits of 0.75 s and 1.5 s fit in the 5 s budget; a third, of 3 s, would end past it.
    assert smartlead_clock.sleeps == [0.75, 1.5]
    assert len(api.calls) == 3


def test_it_does_not_count_waiting_for_the_limiter_against_the_retry_budget(
    api: responses.RequestsMock, smartlead_clock: Any
) -> None:
    api.add("GET", BASE + "/campaigns/", json=[])
    for _ in range(limits_module.BURST):
        SmartleadClient(KEY, base_url=BASE).list_campaigns()
    api.add("GET", BASE + "/campaigns/", status=503, json={})
    api.add("GET", BASE + "/campaigns/", json=[{"id": 3, "name": "c"}])

    campaigns = SmartleadClient(KEY, base_url=BASE, retry_budget=1).list_campaigns()

    assert [c.id for c in campaigns] == [3]
    assert smartlead_clock.sleeps == [pytest.approx(2.25), 0.75]


def test_it_starts_no_wait_past_the_callers_deadline(
    api: responses.RequestsMock, smartlead_clock: Any
) -> None:
    api.add("GET", BASE + "/campaigns/", status=429, json={}, headers={"Retry-After": "10"})
    deadline = smartlead_clock.now + 5
    smartlead = SmartleadClient(KEY, base_url=BASE, deadline=deadline)

    with pytest.raises(RateLimited) as caught:
        smartlead.list_campaigns()

    assert caught.value.retry_after == 10.0
    assert smartlead_clock.sleeps == []


def test_it_refuses_a_limiter_wait_that_would_end_past_the_deadline(
    api: responses.RequestsMock, smartlead_clock: Any
) -> None:
    api.add("GET", BASE + "/campaigns/", json=[])
    smartlead = SmartleadClient(KEY, base_url=BASE, deadline=smartlead_clock.now + 1)
    for _ in range(limits_module.BURST):
        smartlead.list_campaigns()

    with pytest.raises(RateLimited, match="deadline"):
        smartlead.list_campaigns()

    assert len(api.calls) == limits_module.BURST


@pytest.mark.parametrize(
    ("failure", "calls"),
    [
        ({"body": requests.ReadTimeout("read")}, 1),
        ({"status": 500, "json": {}}, 1),
        ({"body": requests.ConnectTimeout("connect")}, 2),
        ({"status": 503, "json": {}}, 2),
        ({"status": 429, "json": {}}, 2),
    ],
    ids=["read-timeout", "500", "connect-timeout", "503", "429"],
)
def test_it_repeats_a_campaign_creation_only_if_smartlead_cannot_have_done_it(
    api: responses.RequestsMock, client: SmartleadClient, failure: dict, calls: int
) -> None:
    api.assert_all_requests_are_fired = False
    api.add("POST", BASE + "/campaigns/create", **failure)
    api.add("POST", BASE + "/campaigns/create", json={"id": 12, "name": "Q3"})

    if calls == 1:
        with pytest.raises(TransientError):
            client.create_campaign("Q3")
    else:
        assert client.create_campaign("Q3").id == 12
    assert len(api.calls) == calls


# --- The per-key limiter -----------------------------------------------------------------
def test_it_keeps_one_key_under_its_limits_across_threads() -> None:
    limits = Limits(per_minute=4, per_hour=100, burst=2, minute=0.3, burst_window=0.05, margin=0)
    store = MemoryStore()
    budget = Budget("one-key", store, limits)

    def send(times: int) -> None:
        for _ in range(times):
            budget.acquire(priority=Priority.CHANGE)

    started = time.monotonic()
    threads = [threading.Thread(target=send, args=(3,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    sent = sorted(store._times["one-key"])  # when each request was let through
    assert len(sent) == 12
    assert all(sum(s <= t < s + 0.3 for t in sent) <= 4 for s in sent)
    assert all(sum(s <= t < s + 0.05 for t in sent) <= 2 for s in sent)
    assert time.monotonic() - started >= 0.6  # 12 calls at 4 per 0.3 s need two full windows


def test_it_paces_one_key_at_ten_per_two_seconds_and_its_minute_limit(
    api: responses.RequestsMock, smartlead_clock: Any
) -> None:
    sent: list[float] = []

    def answer(request: Any) -> tuple[int, dict, str]:
        sent.append(smartlead_clock.now)
        return 200, {}, "[]"

    api.add_callback("GET", BASE + "/campaigns/", callback=answer)
    smartlead = SmartleadClient(KEY, base_url=BASE, requests_per_minute=20)

    for _ in range(25):
        smartlead.list_campaigns()

    assert all(sum(s <= t < s + 2.0 for t in sent) <= 10 for s in sent)
    assert all(sum(s <= t < s + 60.0 for t in sent) <= 20 for s in sent)
    assert sent[20] - sent[0] >= 60.0


def test_it_shares_one_keys_limit_across_clients_but_never_makes_keys_wait_for_each_other(
    api: responses.RequestsMock, smartlead_clock: Any
) -> None:
    api.add("GET", BASE + "/campaigns/", json=[])
    first = SmartleadClient(KEY, base_url=BASE)
    for _ in range(limits_module.BURST):
        first.list_campaigns()
    assert smartlead_clock.sleeps == []

    SmartleadClient(OTHER_KEY, base_url=BASE).list_campaigns()
    assert smartlead_clock.sleeps == []

    SmartleadClient(KEY, base_url=BASE).list_campaigns()
    assert smartlead_clock.sleeps == [pytest.approx(2.0 + limits_module.WINDOW_MARGIN)]


def test_it_holds_the_whole_key_back_after_a_real_429(
    api: responses.RequestsMock, smartlead_clock: Any
) -> None:
    api.add("GET", BASE + "/campaigns/", status=429, json={}, headers={"Retry-After": "20"})
    api.add("GET", BASE + "/campaigns/", json=[])
    with pytest.raises(RateLimited):
        SmartleadClient(KEY, base_url=BASE, retry_budget=0).list_campaigns()

    SmartleadClient(KEY, base_url=BASE).list_campaigns()

    assert smartlead_clock.sleeps == [pytest.approx(20.0)]


# --- Redaction -------------------------------------------------------------------------
def test_it_keeps_the_key_out_of_reprs_logs_and_retry_warnings(
    api: responses.RequestsMock, smartlead_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    detail = f"upstream said api_key={KEY}"
    api.add("GET", BASE + "/campaigns/", status=503, json={"error": detail})
    api.add("GET", BASE + "/campaigns/", status=503, body=f"<html>{KEY}</html>")
    api.add("GET", BASE + "/campaigns/", json=[])
    smartlead = SmartleadClient(KEY, base_url=BASE)

    smartlead.list_campaigns()

    assert KEY not in repr(smartlead) and KEY[-4:] in repr(smartlead)
    assert "retry 2" in caplog.text
    assert KEY not in caplog.text
    assert all(KEY not in record.getMessage() for record in caplog.records)


def test_it_redacts_the_key_when_smartlead_echoes_it_in_an_error(
    api: responses.RequestsMock, client: SmartleadClient
) -> None:
    api.add("GET", BASE + "/campaigns/", status=400, json={"message": f"Bad key {KEY} given"})

    with pytest.raises(ValidationFailed, match="Bad key") as caught:
        client.list_campaigns()

    assert not leaks(caught.value)
    assert f"…{KEY[-4:]}" in str(caught.value)


def test_it_needs_a_key() -> None:
    with pytest.raises(ValueError, match="API key is required"):
        SmartleadClient("", base_url=BASE)


# --- What each add-leads reply proves about each lead (issue: truthful pushes) -----------------
LIVE_OTHER_CAMPAIGN = {"ok": True, "upload_count": 1, "total_leads": 0}
LIVE_OTHER_CAMPAIGN |= {"skipped_in_other_campaign_count": 1}


@pytest.mark.parametrize(
    ("reply", "emails", "expected"),
    [
        # The live reply an integrator captured: the one lead is in another campaign.
        (LIVE_OTHER_CAMPAIGN, ["a@x.test"], ["in_other_campaign"]),
        # The per-lead map wins over counts.
        (
            {
                "ok": True,
                "upload_count": 3,
                "total_leads": 1,
                "already_added_to_campaign": 1,
                "skipped_in_other_campaign_count": 1,
                "emailToLeadIdMap": {
                    "newlyAddedLeads": {"A@x.test": "11"},
                    "existingLeads": {"b@x.test": 12},
                    "existingLeadsInOtherCampaigns": {"c@x.test": 13},
                },
            },
            ["a@x.test", "b@x.test", "c@x.test"],
            ["added", "already_in_campaign", "in_other_campaign"],
        ),
        # One lead left and one reason left: unambiguous.
        (
            {
                "ok": True,
                "upload_count": 2,
                "total_leads": 1,
                "block_count": 1,
                "emailToLeadIdMap": {"newlyAddedLeads": {"a@x.test": 1}},
            },
            ["a@x.test", "b@x.test"],
            ["added", "blocked"],
        ),
        (
            {"ok": True, "upload_count": 1, "total_leads": 0, "bounce_count": 1},
            ["a@x.test"],
            ["bounced"],
        ),
        # unsubscribed_leads as a number.
        (
            {"ok": True, "upload_count": 1, "total_leads": 0, "unsubscribed_leads": 1},
            ["a@x.test"],
            ["unsubscribed"],
        ),
        # Two reasons for two leads without a map: which is which is unknown.
        (
            {"ok": True, "upload_count": 2, "total_leads": 1, "block_count": 1},
            ["a@x.test", "b@x.test"],
            ["unconfirmed", "unconfirmed"],
        ),
        # An unknown non-zero counter is never "added".
        (
            {"ok": True, "upload_count": 1, "total_leads": 1, "skipped_by_magic_count": 1},
            ["a@x.test"],
            ["unconfirmed"],
        ),
        # Replies that prove nothing about any lead.
        ({}, ["a@x.test"], ["unconfirmed"]),
        ({"ok": False}, ["a@x.test"], ["unconfirmed"]),
        ({"success": True, "added_count": 1, "skipped_count": 0}, ["a@x.test"], ["unconfirmed"]),
        # The lead limit, live: nothing imported.
        (
            {
                "ok": False,
                "is_lead_limit_exhausted": True,
                "lead_import_stopped_count": 1,
                "error": "The lead credit limit has been reached",
            },
            ["a@x.test"],
            ["not_imported"],
        ),
    ],
)
def test_it_counts_a_lead_as_in_the_campaign_only_on_evidence(
    api: responses.RequestsMock, client: SmartleadClient, reply: Any, emails: list, expected: list
) -> None:
    api.add("POST", BASE + "/campaigns/12/leads", json=reply)
    result = client.add_leads(12, [Lead(email) for email in emails])
    outcomes = result.outcomes(emails)
    assert [outcomes[email].outcome for email in emails] == expected
    for email, outcome in zip(emails, expected, strict=True):
        if outcome not in ("added", "already_in_campaign", "added_or_existing"):
            assert outcomes[email].reason  # the SDR sees why, in Smartlead's terms


def test_it_treats_an_empty_200_as_proving_nothing(
    api: responses.RequestsMock, client: SmartleadClient
) -> None:
    api.add("POST", BASE + "/campaigns/12/leads", body="")
    result = client.add_leads(12, [Lead("a@x.test")])
    assert result.outcomes(["a@x.test"])["a@x.test"].outcome == "unconfirmed"


# --- Lead categories (issue 23) -----------------------------------------------------------------


def test_it_reads_the_accounts_lead_categories_and_each_leads_category(
    api: responses.RequestsMock, client: SmartleadClient
) -> None:
    categories = [
        {"id": 1, "name": "Interested", "sentiment_type": "positive"},
        {"id": "789", "name": " Follow Up Later ", "sentiment_type": "neutral"},
        {"id": 5, "name": ""},  # no name: nothing to act on
        {"name": "no id"},
    ]
    api.add("GET", BASE + "/leads/fetch-categories", json=categories)
    rows = [
        {"lead_category_id": 6, "status": "INPROGRESS", "lead": {"id": 1, "email": "a@acme.test"}},
        {"lead_category_id": None, "status": "STARTED", "lead": {"id": 2, "email": "b@acme.test"}},
    ]
    api.add("GET", BASE + "/campaigns/12/leads", json={"total_leads": "2", "data": rows})

    assert client.lead_categories() == [
        client_module.Category(1, "Interested", "positive"),
        client_module.Category(789, "Follow Up Later", "neutral"),
    ]
    assert [lead.category_id for lead in client.campaign_leads(12)] == [6, None]


def test_it_reads_the_category_filter_of_a_webhook(
    api: responses.RequestsMock, client: SmartleadClient
) -> None:
    row = {
        "id": 1,
        "name": "a",
        "webhook_url": "https://o.test",
        "event_types": ["LEAD_CATEGORY_UPDATED"],
        "categories": ["Interested", "Out Of Office"],
    }
    api.add("GET", BASE + "/campaigns/12/webhooks", json=[row])

    (hook,) = client.list_campaign_webhooks(12)

    assert hook.categories == ("Interested", "Out Of Office")


@pytest.mark.parametrize(
    "base", ["https://server.smartlead.ai/api/v1", "https://api.smartlead.ai/v1"]
)
def test_it_never_sends_a_sandbox_key_to_the_real_smartlead(api, base):
    """A demo database's keys (smartlead/sandbox/demo.json) with a setting that forgot
    SMARTLEAD_BASE_URL: refused before any request, and not as a verdict on the key."""
    with SmartleadClient("sandbox-key-alice-7f3a9c2e5b1d", base_url=base) as smartlead:
        with pytest.raises(SmartleadError, match="Refused to send a sandbox key") as refused:
            smartlead.list_campaigns()
    assert type(refused.value) is SmartleadError and refused.value.permanent
    assert len(api.calls) == 0


def test_a_sandbox_key_still_goes_to_a_sandbox(api):
    api.get(f"{BASE}/campaigns/", json=[])
    with SmartleadClient("sandbox-key-alice-7f3a9c2e5b1d", base_url=BASE) as smartlead:
        assert smartlead.list_campaigns() == []
