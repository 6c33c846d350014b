"""The client end to end against the Smartlead sandbox over real HTTP, and the sandbox's own rules.

Most tests share the `smartlead_clock` fake clock between the client and the sandbox's rate
limit, so pacing and Retry-After waits take no real time.
"""

from __future__ import annotations

import io
import json
import logging
import math
import threading
import urllib.error
import urllib.request
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from smartlead.api import (
    InvalidApiKey,
    Lead,
    NoApiAccess,
    NotFound,
    RateLimited,
    SequenceStepSpec,
    SmartleadClient,
    TransientError,
    ValidationFailed,
)
from smartlead.management.commands.smartlead_sandbox import Command as SandboxCommand
from smartlead.sandbox import SandboxServer, generated_accounts, load_accounts

KEY = "sandbox-test-key-a-51c9e2f0"
OTHER = "sandbox-test-key-b-0d7a43be"
TINY = "sandbox-test-key-tiny-6e2b91"
ALICE = "sandbox-key-alice-7f3a9c2e5b1d"
BASIC = "sandbox-key-basic-plan-9e8d7c6b"
LEADS_ROUTE = "POST /campaigns/{campaign_id}/leads"


def mailboxes(first_id: int, count: int) -> list[dict]:
    return [
        {"id": first_id + n, "from_email": f"sdr{n}@acme.test", "from_name": "SDR", "type": "SMTP"}
        for n in range(count)
    ]


ACCOUNTS = [
    {"api_key": KEY, "email_accounts": mailboxes(5000, 250)},
    {
        "api_key": OTHER,
        "email_accounts": mailboxes(6000, 1),
        "unsubscribed": ["Gone@acme.test"],
        "blocked": ["blocked.test", "Spam@acme.test"],
        "lead_quota": 3,
    },
    {"api_key": TINY, "email_accounts": mailboxes(7000, 1), "requests_per_minute": 2},
]


@pytest.fixture
def sandbox(make_sandbox: Any, smartlead_clock: Any) -> SandboxServer:
    return make_sandbox(ACCOUNTS + load_accounts(), clock=smartlead_clock.monotonic)


def connect(sandbox: SandboxServer, key: str = KEY, **options: Any) -> SmartleadClient:
    return SmartleadClient(key, base_url=sandbox.base_url, **options)


def leads(count: int, start: int = 0) -> list[Lead]:
    return [Lead(f"lead{n}@prospect.test", first_name=f"L{n}") for n in range(start, start + count)]


def push(client: SmartleadClient, campaign_id: int, batch: list[Lead]) -> list:
    size = client.batch_size
    return [client.add_leads(campaign_id, batch[i : i + size]) for i in range(0, len(batch), size)]


def raw(
    sandbox: SandboxServer, method: str, path: str, key: str | None = KEY, body: Any = None
) -> tuple[int, dict[str, str], str]:
    """One request without the client, to see the sandbox's own status, headers and body."""
    query = f"{'&' if '?' in path else '?'}api_key={key}" if key else ""
    data = json.dumps(body).encode() if body is not None else None
    url = sandbox.base_url + path + query  # always http://127.0.0.1
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310 - local sandbox
            return answer.status, dict(answer.headers), answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


def provision(client: SmartleadClient, mailbox_id: int) -> int:
    campaign = client.create_campaign("OutboundHQ · Q3 [seq:42]")
    client.save_sequences(
        campaign.id,
        [
            SequenceStepSpec(1, 0, "Hi {{first_name}}", "<p>Hello</p>"),
            SequenceStepSpec(2, 3, "", "<p>Following up</p>"),
        ],
    )
    client.add_email_accounts(campaign.id, [mailbox_id])
    client.set_schedule(
        campaign.id,
        timezone="America/New_York",
        days_of_the_week=[1, 2, 3, 4, 5],
        start_hour="09:00",
        end_hour="17:00",
    )
    client.update_settings(campaign.id, stop_lead_settings="REPLY_TO_AN_EMAIL", track_settings=[])
    client.set_status(campaign.id, "START")
    return campaign.id


# --- End to end -----------------------------------------------------------------------
def test_it_lists_every_mailbox_across_pages_without_secrets(sandbox: SandboxServer) -> None:
    accounts = connect(sandbox).list_email_accounts()

    assert [a.id for a in accounts] == list(range(5000, 5250))
    assert sandbox.request_count(KEY, route="GET /email-accounts") == 3
    assert set(accounts[0].as_dict()) == {
        "id",
        "from_email",
        "from_name",
        "type",
        "smtp_ok",
        "imap_ok",
        "daily_limit",
        "warmup_status",
        "suspended",
        "warmup_reputation",
        "smtp_error",
        "imap_error",
    }
    assert accounts[0].daily_limit == 40  # the sandbox sends it as the string "40"
    status, _, body = raw(sandbox, "GET", "/email-accounts/?limit=1")
    assert status == 200 and "password" in body  # the live shape the client had to strip


def test_it_provisions_and_starts_a_campaign(sandbox: SandboxServer) -> None:
    client = connect(sandbox)

    campaign_id = provision(client, 5001)

    assert client.get_campaign(campaign_id).status == "ACTIVE"
    [state] = sandbox.campaigns(KEY)
    assert [s["seq_delay_details"]["delay_in_days"] for s in state["sequences"]] == [0, 3]
    assert state["email_account_ids"] == [5001]
    assert state["schedule"]["days_of_the_week"] == [1, 2, 3, 4, 5]
    assert state["settings"] == {"stop_lead_settings": "REPLY_TO_AN_EMAIL", "track_settings": []}
    assert [c.id for c in client.list_campaigns()] == [campaign_id]


def test_it_refuses_to_start_a_campaign_without_steps_or_a_mailbox(
    sandbox: SandboxServer,
) -> None:
    client = connect(sandbox)
    campaign = client.create_campaign("empty")

    with pytest.raises(ValidationFailed, match="sequence step"):
        client.set_status(campaign.id, "START")
    client.save_sequences(campaign.id, [SequenceStepSpec(1, 0, "s", "b")])
    with pytest.raises(ValidationFailed, match="email account"):
        client.set_status(campaign.id, "START")


def test_it_refuses_to_edit_the_sequence_of_an_active_campaign(sandbox: SandboxServer) -> None:
    client = connect(sandbox)
    campaign_id = provision(client, 5000)

    with pytest.raises(ValidationFailed, match="pause it first"):
        client.save_sequences(campaign_id, [SequenceStepSpec(1, 0, "new", "new")])
    client.set_status(campaign_id, "PAUSED")
    client.save_sequences(campaign_id, [SequenceStepSpec(1, 0, "new", "new")])


def test_it_adds_250_leads_in_batches_and_reports_duplicates(sandbox: SandboxServer) -> None:
    client = connect(sandbox)
    campaign_id = client.create_campaign("leads").id

    results = push(client, campaign_id, leads(250))
    again = client.add_leads(campaign_id, leads(40, start=230) + [Lead("LEAD300@prospect.test")])
    in_batch = client.add_leads(campaign_id, [Lead("x@p.test"), Lead("X@p.test"), Lead("nope")])

    assert [r.added for r in results] == [100, 100, 50]
    assert sandbox.request_count(KEY, route=LEADS_ROUTE) == 5
    assert (again.added, again.already_in_campaign) == (21, 20)
    assert (in_batch.added, in_batch.duplicates, in_batch.invalid_emails) == (1, 1, ("nope",))
    assert in_batch.outcomes(["nope"])["nope"].outcome == "invalid"
    assert len(sandbox.campaigns(KEY)[0]["leads"]) == 272


@pytest.mark.parametrize("batch", [100, 25])
def test_it_pushes_1000_leads_in_the_fewest_requests_without_a_429(
    smartlead_clock: Any, settings: Any, batch: int
) -> None:
    settings.SMARTLEAD_LEADS_PER_REQUEST = batch
    with SandboxServer(ACCOUNTS, clock=smartlead_clock.monotonic) as sandbox:
        client = connect(sandbox)
        campaign_id = client.create_campaign("bulk").id
        started = smartlead_clock.now

        results = push(client, campaign_id, leads(1000))

        assert sum(r.added for r in results) == 1000
        assert sandbox.request_count(KEY, route=LEADS_ROUTE) == math.ceil(1000 / batch)
        assert sandbox.request_count(status=429) == 0
        # 41 requests at 10 per 2 s must be spread over 8 s or more; 11 need no more than 2.25 s.
        assert (smartlead_clock.now - started > 8) == (batch == 25)


def test_it_waits_for_the_window_smartleads_headers_say_instead_of_hitting_a_429(
    sandbox: SandboxServer, smartlead_clock: Any
) -> None:
    client = connect(sandbox, TINY)  # the client allows 60/min; the key, used elsewhere too, 2

    for _ in range(3):
        client.list_campaigns()

    assert sandbox.request_count(TINY, status=429) == 0
    assert sandbox.request_count(TINY, status=200) == 3
    [waited] = smartlead_clock.sleeps
    assert 59 <= waited <= 62  # X-RateLimit-Remaining: 0 until X-RateLimit-Reset (+1 s)


def test_it_gives_up_on_a_wait_past_its_deadline_and_sends_nothing(
    sandbox: SandboxServer, smartlead_clock: Any
) -> None:
    client = connect(sandbox, TINY, deadline=smartlead_clock.now + 10)
    client.list_campaigns()
    client.list_campaigns()

    with pytest.raises(RateLimited) as caught:
        client.list_campaigns()

    assert 59 <= caught.value.retry_after <= 62
    assert sandbox.request_count(TINY) == 2


def test_it_keeps_each_keys_campaigns_and_mailboxes_to_itself(sandbox: SandboxServer) -> None:
    mine = connect(sandbox).create_campaign("mine").id
    theirs = connect(sandbox, OTHER)

    with pytest.raises(NotFound, match=f"campaign {mine}"):
        theirs.get_campaign(mine)
    with pytest.raises(NotFound):
        theirs.add_leads(mine, leads(1))
    own = theirs.create_campaign("theirs").id
    with pytest.raises(ValidationFailed, match="5000"):
        theirs.add_email_accounts(own, [5000])


@pytest.mark.parametrize(
    ("key", "error", "text"),
    [
        ("not-a-sandbox-key-123456", InvalidApiKey, "invalid or revoked"),
        (BASIC, NoApiAccess, "plan must include API access"),
    ],
)
def test_it_rejects_unknown_keys_and_plans_without_api_access(
    sandbox: SandboxServer, key: str, error: type, text: str
) -> None:
    with pytest.raises(error, match=text) as caught:
        connect(sandbox, key).list_email_accounts()

    assert caught.value.permanent
    assert key not in str(caught.value)
    assert sandbox.request_count(key) == 1  # permanent: never retried


def test_it_retries_injected_server_faults(sandbox: SandboxServer, smartlead_clock: Any) -> None:
    sandbox.fail_next(2, status=503)

    assert len(connect(sandbox).list_email_accounts()) == 250

    assert sandbox.request_count(KEY, status=503) == 2
    assert len(smartlead_clock.sleeps) == 2


def test_it_survives_a_random_fault_rate(smartlead_clock: Any) -> None:
    with SandboxServer(ACCOUNTS, seed=7, clock=smartlead_clock.monotonic) as box:
        client = connect(box, retry_budget=600)
        campaign_id = client.create_campaign("faulty").id
        box.fault_rate = 0.3

        results = push(client, campaign_id, leads(500))

        assert box.request_count(KEY, status=200) >= 6
        assert box.request_count(KEY) > box.request_count(KEY, status=200)
    assert sum(r.added + r.already_in_campaign for r in results) == 500


def test_it_times_out_on_a_slow_answer(settings: Any) -> None:
    settings.SMARTLEAD_READ_TIMEOUT = 0.2
    with SandboxServer(ACCOUNTS, slow_rate=1.0, slow_seconds=0.5) as slow:
        with pytest.raises(TransientError, match="did not answer in time"):
            connect(slow, retry_budget=0).list_campaigns()


def test_it_applies_unsubscribes_blocks_and_the_lead_quota(sandbox: SandboxServer) -> None:
    client = connect(sandbox, OTHER)
    campaign_id = client.create_campaign("lists").id
    batch = ["gone@acme.test", "spam@acme.test", "x@blocked.test"]
    batch += [f"ok{n}@acme.test" for n in range(5)]

    result = client.add_leads(campaign_id, [Lead(email) for email in batch])

    assert result.unsubscribed == ("gone@acme.test",)
    assert (result.blocked, result.added, result.lead_limit_exhausted) == (2, 3, True)
    assert result.counts["lead_import_stopped_count"] == 2
    outcomes = result.outcomes(batch)
    assert outcomes["gone@acme.test"].outcome == "unsubscribed"
    # The three added are named by the lead id map; of the four left, two are blocked and two
    # were stopped by the quota, and the reply does not say which: none counts as sent.
    assert [outcomes[f"ok{n}@acme.test"].outcome for n in range(3)] == ["added"] * 3
    assert outcomes["ok4@acme.test"].outcome == "unconfirmed"


def test_it_finds_a_lead_by_email_with_its_campaigns(sandbox: SandboxServer) -> None:
    client = connect(sandbox)
    first, second = client.create_campaign("a").id, client.create_campaign("b").id
    client.add_leads(first, [Lead("ann@acme.test")])
    also = {"ignore_duplicate_leads_in_other_campaign": True}
    client.add_leads(second, [Lead("Ann@acme.test", company_name="Acme")], lead_settings=also)

    found = client.find_lead("ann@acme.test")

    assert found is not None and found.id > 2**31  # lead ids overflow a signed 32-bit int
    assert (found.campaign_ids, found.is_unsubscribed) == ((first, second), False)
    assert client.find_lead("nobody@acme.test") is None
    assert connect(sandbox, OTHER).find_lead("ann@acme.test") is None


def test_it_saves_updates_and_lists_campaign_webhooks(sandbox: SandboxServer) -> None:
    client = connect(sandbox)
    campaign_id = client.create_campaign("hooks").id
    url = "https://ohq.test/webhooks/smartlead?secret=hook-secret-42abcdef"

    client.save_campaign_webhook(campaign_id, name="OHQ", url=url, event_types=["EMAIL_SENT"])
    [hook] = client.list_campaign_webhooks(campaign_id)
    client.save_campaign_webhook(
        campaign_id, name="OHQ", url=url, event_types=["EMAIL_REPLY"], webhook_id=hook.id
    )

    [updated] = client.list_campaign_webhooks(campaign_id)
    assert (updated.id, updated.webhook_url, updated.event_types) == (
        hook.id,
        url,
        ("EMAIL_REPLY",),
    )
    with pytest.raises(ValidationFailed, match="Invalid event_types - LEAD_REPLIED"):
        client.save_campaign_webhook(campaign_id, name="x", url=url, event_types=["LEAD_REPLIED"])


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_it_keeps_the_key_out_of_urllib3_debug_logs(
    sandbox: SandboxServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="urllib3")
    # A handler on urllib3's own logger runs before any root handler's filter could help.
    nearest = Collect()
    logging.getLogger("urllib3").addHandler(nearest)
    console = next(
        handler
        for handler in logging.getLogger().handlers
        if any(type(f).__name__ == "RedactSecretsFilter" for f in handler.filters)
    )
    stream = io.StringIO()
    previous = console.setStream(stream)
    try:
        connect(sandbox).list_campaigns()
        with pytest.raises(NotFound):
            connect(sandbox).get_campaign(1)
    finally:
        console.setStream(previous)
        logging.getLogger("urllib3").removeHandler(nearest)

    logged_requests = [line for line in nearest.lines if '"GET /api/v1/campaigns' in line]
    assert len(logged_requests) == 2
    assert all("api_key=…" in line for line in logged_requests)
    assert all(KEY not in text for text in (caplog.text, stream.getvalue(), *nearest.lines))
    assert stream.getvalue().replace("\\u2026", "…").count("api_key=…") == 2  # JSON escapes it


# --- The sandbox's own answers ----------------------------------------------------------------
def test_it_answers_429_with_the_documented_body_and_headers(sandbox: SandboxServer) -> None:
    for _ in range(2):
        assert raw(sandbox, "GET", "/campaigns", TINY)[0] == 200

    status, headers, body = raw(sandbox, "GET", "/campaigns", TINY)

    assert status == 429
    assert json.loads(body)["error"]["code"] == "RATE_LIMIT_EXCEEDED"
    assert headers["Retry-After"] == "60"
    assert (headers["X-RateLimit-Limit"], headers["X-RateLimit-Remaining"]) == ("2", "0")
    assert int(headers["X-RateLimit-Reset"]) > 0


def test_it_allows_ten_requests_in_two_seconds_per_key(
    sandbox: SandboxServer, smartlead_clock: Any
) -> None:
    statuses = [raw(sandbox, "GET", "/campaigns")[0] for _ in range(11)]
    other = raw(sandbox, "GET", "/campaigns", OTHER)[0]
    smartlead_clock.now += 2.0
    later = raw(sandbox, "GET", "/campaigns")[0]

    assert (statuses, other, later) == ([200] * 10 + [429], 200, 200)


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "text"),
    [
        ("GET", "/email-accounts/?limit=101", None, 422, "limit must be less than or equal to 100"),
        ("POST", "/campaigns/{cid}/leads", {"lead_list": [{"email": "a@b.co"}] * 351}, 422, "350"),
        ("POST", "/campaigns/{cid}/leads", {"lead_list": [{"company": "x"}]}, 400, "not allowed"),
        ("POST", "/campaigns/{cid}/schedule", {"schedule": {"timezone": "UTC"}}, 400, "timezone"),
        ("POST", "/campaigns/{cid}/schedule", {"days": [1]}, 400, '"timezone" is required'),
        ("POST", "/campaigns/{cid}/sequences", {"sequence": []}, 400, '"sequences" is required'),
        ("POST", "/campaigns/{cid}/status", {"status": "ACTIVE"}, 400, "START,STOPPED,PAUSED"),
        ("PATCH", "/campaigns/{cid}/status", {"status": "START"}, 404, "Cannot PATCH"),
        ("GET", "/leads/", None, 422, "email is required"),
        ("GET", "/leads/?email=nobody@x.test", None, 200, "{}"),
    ],
)
def test_it_answers_like_the_live_api(
    sandbox: SandboxServer, method: str, path: str, body: Any, status: int, text: str
) -> None:
    campaign_id = connect(sandbox).create_campaign("rules").id

    answer = raw(sandbox, method, path.format(cid=campaign_id), body=body)

    assert answer[0] == status
    assert text in answer[2].replace('\\"', '"')


def test_it_serves_the_demo_accounts_file() -> None:
    with SandboxServer(load_accounts()) as demo:
        assert [a.id for a in connect(demo, ALICE).list_email_accounts()] == [1101, 1102]
        assert raw(demo, "GET", "/campaigns", BASIC)[0] == 403
        assert raw(demo, "GET", "/campaigns", None)[0] == 401


def test_the_shared_fixture_points_the_client_at_the_sandbox(
    smartlead_sandbox: SandboxServer,
) -> None:
    assert len(SmartleadClient(ALICE).list_email_accounts()) == 2
    assert smartlead_sandbox.request_count(ALICE) == 1


def test_it_serves_a_thousand_keys_over_concurrent_connections() -> None:
    accounts = generated_accounts(1000)
    errors: list[BaseException] = []
    with SandboxServer(accounts, latency=0.01) as box:

        def work(key: str) -> None:
            try:
                with connect(box, key) as client:
                    campaign_id = client.create_campaign("bench").id
                    push(client, campaign_id, leads(300))
            except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
                errors.append(exc)

        keys = [account["api_key"] for account in accounts[::50]]
        threads = [threading.Thread(target=work, args=(key,)) for key in keys]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)

        assert errors == []
        assert box.request_count(route=LEADS_ROUTE) == 20 * 3
        assert all(len(box.campaigns(key)[0]["leads"]) == 300 for key in keys)


# --- The command ------------------------------------------------------------------------
def test_the_command_refuses_to_run_without_debug(settings: Any) -> None:
    settings.DEBUG = False

    with pytest.raises(CommandError, match="only with DJANGO_DEBUG=true"):
        call_command("smartlead_sandbox", "--port", "0")


def test_the_command_serves_and_prints_the_base_url(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.DEBUG = True
    seen: dict[str, Any] = {}

    out = io.StringIO()

    def wait_for_stop(command: SandboxCommand) -> None:
        base_url = out.getvalue().split("SMARTLEAD_BASE_URL=")[1].split()[0]
        seen["accounts"] = SmartleadClient(ALICE, base_url=base_url).list_email_accounts()

    monkeypatch.setattr(SandboxCommand, "wait_for_stop", wait_for_stop)

    call_command("smartlead_sandbox", "--port", "0", "--generate-keys", "3", stdout=out)

    assert "SMARTLEAD_BASE_URL=http://127.0.0.1:" in out.getvalue()
    assert "serving 6 keys" in out.getvalue()
    assert ALICE not in out.getvalue()
    assert len(seen["accounts"]) == 2


def test_it_skips_a_lead_in_another_campaign_of_the_account_like_smartlead(
    sandbox: SandboxServer,
) -> None:
    client = connect(sandbox)
    first, second = client.create_campaign("a").id, client.create_campaign("b").id
    client.add_leads(first, [Lead("ann@acme.test")])

    result = client.add_leads(second, [Lead("ann@acme.test"), Lead("bob@acme.test")])

    outcomes = result.outcomes(["ann@acme.test", "bob@acme.test"])
    assert outcomes["ann@acme.test"].outcome == "in_other_campaign"
    assert outcomes["bob@acme.test"].outcome == "added"
    assert result.counts["skipped_in_other_campaign_count"] == 1
    # Another account's campaigns are not "another campaign of this account".
    other = connect(sandbox, OTHER)
    theirs = other.add_leads(other.create_campaign("c").id, [Lead("ann@acme.test")])
    assert theirs.outcomes(["ann@acme.test"])["ann@acme.test"].outcome == "added"


def test_it_applies_the_global_and_account_block_lists_and_the_bounce_list(
    sandbox: SandboxServer,
) -> None:
    client = connect(sandbox)
    campaign_id = client.create_campaign("lists").id
    sandbox.block("spam.test")
    sandbox.block("mine@acme.test", api_key=KEY)
    sandbox.bounce_list(KEY, "gone@acme.test")

    cases = [
        ("x@spam.test", "blocked"),
        ("mine@acme.test", "blocked"),
        ("gone@acme.test", "bounced"),
    ]
    for n, (address, outcome) in enumerate(cases):
        fine = f"ok{n}@acme.test"
        result = client.add_leads(campaign_id, [Lead(address), Lead(fine)])
        verdicts = result.outcomes([address, fine])
        assert (verdicts[address].outcome, verdicts[fine].outcome) == (outcome, "added")
    leads = sandbox.campaigns(KEY)[0]["leads"]
    assert sorted(lead["email"] for lead in leads) == [f"ok{n}@acme.test" for n in range(3)]


@pytest.mark.parametrize("shape", ["empty_object", "empty_body", "not_ok", "docs_shape"])
def test_it_can_answer_add_leads_with_the_odd_shapes_integrators_have_seen(
    sandbox: SandboxServer, shape: str
) -> None:
    client = connect(sandbox)
    campaign_id = client.create_campaign("odd").id
    sandbox.answer_add_leads_with(KEY, shape)

    result = client.add_leads(campaign_id, [Lead("ann@acme.test")])

    assert result.outcomes(["ann@acme.test"])["ann@acme.test"].outcome == "unconfirmed"
    assert client.find_lead("ann@acme.test").campaign_ids == (campaign_id,)  # still imported


# --- Replies and categories (issue 23) ----------------------------------------------------------
def test_it_lists_the_accounts_lead_categories_as_smartlead_does(sandbox: SandboxServer) -> None:
    status, _, body = raw(sandbox, "GET", "/leads/fetch-categories")
    rows = json.loads(body)
    assert status == 200 and isinstance(rows, list)  # a bare array, sorted by id
    assert [(r["id"], r["name"]) for r in rows[:3]] == [
        (1, "Interested"),
        (2, "Meeting Request"),
        (3, "Not Interested"),
    ]
    assert {"sentiment_type", "created_at"} <= set(rows[0])
    sandbox.renumber_categories(OTHER, 100)  # another workspace, other ids
    assert [c.id for c in connect(sandbox, OTHER).lead_categories()][:2] == [101, 102]
    assert connect(sandbox).lead_categories()[0].id == 1


def test_it_takes_the_out_of_office_settings_and_refuses_them_malformed(
    sandbox: SandboxServer,
) -> None:
    client = connect(sandbox)
    campaign_id = provision(client, 5001)
    ooo = {
        "ignoreOOOasReply": True,
        "autoCategorizeOOO": True,
        "autoReactivateOOO": False,
        "reactivateOOOwithDelay": None,
    }
    client.update_settings(
        campaign_id, out_of_office_detection_settings=ooo, auto_pause_domain_leads_on_reply=True
    )
    [state] = sandbox.campaigns(KEY)
    assert state["settings"]["out_of_office_detection_settings"] == ooo

    for bad, message in [
        ({"ignoreOOOasReply": "yes"}, 'ignoreOOOasReply" must be a boolean'),
        ({"reactivateOOOwithDelay": -1}, 'reactivateOOOwithDelay" must be a number'),
        ({"pauseForever": True}, 'out_of_office_detection_settings.pauseForever" is not allowed'),
    ]:
        with pytest.raises(ValidationFailed, match=message):
            client.update_settings(campaign_id, out_of_office_detection_settings=bad)
    with pytest.raises(ValidationFailed, match="must be of type object"):
        client.update_settings(campaign_id, out_of_office_detection_settings="on")
    with pytest.raises(ValidationFailed, match="must be a boolean"):
        client.update_settings(campaign_id, auto_pause_domain_leads_on_reply="true")


def test_it_keeps_an_ignored_auto_reply_going_and_categorises_it(sandbox: SandboxServer) -> None:
    client = connect(sandbox)
    campaign_id = provision(client, 5001)
    client.add_leads(campaign_id, [Lead("ann@acme.test"), Lead("bob@acme.test")])
    client.update_settings(
        campaign_id,
        out_of_office_detection_settings={"ignoreOOOasReply": True, "autoCategorizeOOO": True},
    )
    for address in ("ann@acme.test", "bob@acme.test"):
        sandbox.lead_sent(KEY, campaign_id, address, 1)

    reply, category = sandbox.lead_out_of_office(KEY, campaign_id, "ann@acme.test", "Away.")
    sandbox.lead_replied_from(KEY, campaign_id, "bob@acme.test", "bob@acme.test", "Yes")

    rows = {lead.email: lead for lead in client.campaign_leads(campaign_id)}
    assert rows["ann@acme.test"].status == "INPROGRESS"  # not a reply: not stopped
    assert rows["ann@acme.test"].category_id == 6  # "Out Of Office", on the lead list
    assert rows["bob@acme.test"].status == "STOPPED" and rows["bob@acme.test"].category_id is None
    assert reply["event_type"] == "EMAIL_REPLY" and reply["subject"].startswith("Automatic reply")
    assert category is not None and category["lead_category"]["new_name"] == "Out Of Office"
    assert category["last_reply"]["message_id"] == reply["reply_message"]["message_id"]


def test_a_reply_from_another_address_names_the_lead_and_who_wrote(sandbox: SandboxServer) -> None:
    client = connect(sandbox)
    campaign_id = provision(client, 5001)
    client.add_leads(campaign_id, [Lead("ceo@acme.test"), Lead("cfo@acme.test")])
    client.update_settings(campaign_id, auto_pause_domain_leads_on_reply=True)
    sandbox.lead_sent(KEY, campaign_id, "ceo@acme.test", 1)

    payload = sandbox.lead_replied_from(
        KEY, campaign_id, "ceo@acme.test", "assistant@acme.test", "I manage her calendar."
    )

    assert payload["sl_lead_email"] == "ceo@acme.test"  # the lead of record
    assert payload["to_email"] == "assistant@acme.test"  # who answered, as in Smartlead's sample
    assert payload["leadCorrespondence"] == {
        "targetLeadEmail": "ceo@acme.test",
        "replyReceivedFrom": "assistant@acme.test",
        "repliedCompanyDomain": "SameCompany",
    }
    assert payload["from_email"] == "sdr1@acme.test"  # our mailbox
    assert isinstance(payload["sl_email_lead_id"], str)  # as in Smartlead's own example
    statuses = {lead.email: lead.status for lead in client.campaign_leads(campaign_id)}
    assert statuses == {"ceo@acme.test": "STOPPED", "cfo@acme.test": "PAUSED"}
