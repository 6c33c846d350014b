"""A local Smartlead for demos, development and end-to-end tests, over real HTTP on 127.0.0.1.

In process (tests, benchmarks):

    with SandboxServer(accounts=load_accounts()) as sandbox:
        client = SmartleadClient(key, base_url=sandbox.base_url)

From a shell: `manage.py smartlead_sandbox` (refused unless DEBUG). The server core is the
standard library only; the rules of each route live in state.py beside it.
"""

from __future__ import annotations

import itertools
import json
import logging
import random
import re
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from smartlead.sandbox.data import ODD_REPLIES, ApiError, build_account, joi, snapshot
from smartlead.sandbox.hooks import WebhookHelpers
from smartlead.sandbox.replies import ReplyHelpers
from smartlead.sandbox.state import SandboxState

logger = logging.getLogger(__name__)

PREFIX = "/api/v1"
DEMO_ACCOUNTS_FILE = Path(__file__).with_name("demo.json")
FAULT_STATUSES = (500, 502, 503)


@dataclass(frozen=True)
class Route:
    method: str
    label: str
    pattern: re.Pattern[str]
    handler: str


def _route(method: str, path: str, handler: str) -> Route:
    regex = re.sub(r"\{(\w+)\}", r"(?P<\1>\\d+)", path)
    return Route(method, f"{method} {path}", re.compile(f"^{regex}/?$"), handler)


ROUTES = (
    _route("GET", "/email-accounts", "list_mailboxes"),
    _route("GET", "/email-accounts/{mailbox_id}", "get_mailbox"),
    _route("POST", "/campaigns/create", "create_campaign"),
    _route("GET", "/campaigns", "list_campaigns"),
    _route("GET", "/campaigns/{campaign_id}", "get_campaign"),
    _route("DELETE", "/campaigns/{campaign_id}", "delete_campaign"),
    _route("POST", "/campaigns/{campaign_id}/sequences", "save_sequences"),
    _route("GET", "/campaigns/{campaign_id}/email-accounts", "campaign_mailboxes"),
    _route("POST", "/campaigns/{campaign_id}/email-accounts", "attach_mailboxes"),
    _route("DELETE", "/campaigns/{campaign_id}/email-accounts", "detach_mailboxes"),
    _route("POST", "/campaigns/{campaign_id}/reallocate-mailboxes", "reallocate_mailboxes"),
    _route("POST", "/campaigns/update-lead-email-account", "update_lead_mailbox"),
    _route("POST", "/campaigns/{campaign_id}/schedule", "set_schedule"),
    _route("POST", "/campaigns/{campaign_id}/settings", "update_settings"),
    _route("POST", "/campaigns/{campaign_id}/status", "set_status"),
    _route("POST", "/campaigns/{campaign_id}/leads", "add_leads"),
    _route("GET", "/leads", "find_lead"),
    _route("GET", "/leads/fetch-categories", "fetch_categories"),
    _route("GET", "/campaigns/{campaign_id}/leads", "campaign_leads"),
    _route("GET", "/campaigns/{campaign_id}/leads/{lead_id}/message-history", "message_history"),
    _route("POST", "/campaigns/{campaign_id}/leads/{lead_id}/pause", "pause_lead"),
    _route("POST", "/campaigns/{campaign_id}/leads/{lead_id}/resume", "resume_lead"),
    _route("POST", "/campaigns/{campaign_id}/leads/{lead_id}/unsubscribe", "unsubscribe_lead"),
    _route("DELETE", "/campaigns/{campaign_id}/leads/{lead_id}", "delete_lead"),
    _route("GET", "/campaigns/{campaign_id}/webhooks", "list_webhooks"),
    _route("POST", "/campaigns/{campaign_id}/webhooks", "save_webhook"),
    _route("DELETE", "/campaigns/{campaign_id}/webhooks", "delete_webhook"),
)


def _match(method: str, path: str) -> tuple[Route | None, dict[str, str]]:
    if not path.startswith(PREFIX):
        return None, {}
    path = path[len(PREFIX) :]
    for route in ROUTES:
        found = route.pattern.match(path) if route.method == method else None
        if found:
            return route, found.groupdict()
    return None, {}


def load_accounts(path: str | Path = DEMO_ACCOUNTS_FILE) -> list[dict]:
    """Accounts from a JSON file shaped like smartlead/sandbox/demo.json (or a bare list)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    accounts = data.get("accounts") if isinstance(data, dict) else data
    if not isinstance(accounts, list):
        raise ValueError(f"{path}: expected {{'accounts': [...]}} or a list of accounts")
    for index, account in enumerate(accounts):
        if not isinstance(account, dict) or not isinstance(account.get("api_key"), str):
            raise ValueError(f"{path}: account #{index} has no api_key")
    return accounts


def generated_accounts(count: int, *, mailboxes: int = 2, prefix: str = "sandbox-key-gen") -> list:
    """`count` pro-plan keys (`{prefix}-00001`…) with `mailboxes` mailboxes each, for benchmarks."""
    return [
        {
            "api_key": f"{prefix}-{n:05d}",
            "plan": "pro",
            "email_accounts": [
                {"from_email": f"sdr{n}.{m}@sandbox.test", "from_name": f"SDR {n}"}
                for m in range(1, mailboxes + 1)
            ],
        }
        for n in range(1, count + 1)
    ]


def _json_body(raw: bytes) -> Any:
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        raise joi("Invalid request payload JSON format") from None


class SandboxServer(ReplyHelpers, WebhookHelpers):
    """The sandbox's HTTP server plus helpers for tests: counts, state snapshots, forced faults;
    what leads do in replies.py (an out-of-office reply, a category, a reply from another
    address, each returned as the webhook payloads Smartlead sends).

    `latency` (seconds) is added to every request; `fault_rate` answers that share of requests
    with a 5xx; `slow_rate` delays that share by `slow_seconds` (to exercise read timeouts).
    `limits` go to SandboxState: requests_per_minute, window, burst, burst_window,
    max_leads_per_request and clock (which drives the rate limit, so a test can share a fake
    clock with the client).
    """

    def __init__(
        self,
        accounts: Iterable[dict] = (),
        *,
        port: int = 0,
        latency: float = 0.0,
        fault_rate: float = 0.0,
        slow_rate: float = 0.0,
        slow_seconds: float = 5.0,
        seed: int | None = None,
        **limits: Any,
    ):
        self._mailbox_ids = itertools.count(100_001)
        accounts = [build_account(raw, self._mailbox_ids) for raw in accounts]
        self.state = SandboxState(accounts, **limits)
        self.latency, self.fault_rate = latency, fault_rate
        self.slow_rate, self.slow_seconds = slow_rate, slow_seconds
        self._random = random.Random(seed)  # noqa: S311 - fault injection, not security
        self._forced_faults: deque[int] = deque()
        self._forced_replies: defaultdict[str, deque[tuple[int, Any]]] = defaultdict(deque)
        self._counts: Counter[tuple[str | None, str, int]] = Counter()
        self._counts_lock = threading.Lock()
        self._port = port
        self._httpd: _HTTPServer | None = None

    # --- Lifecycle ---
    def start(self) -> SandboxServer:
        self._httpd = _HTTPServer(("127.0.0.1", self._port), _Handler)
        self._httpd.sandbox = self
        self._port = self._httpd.server_address[1]
        thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}{PREFIX}"

    # --- Test helpers ---
    def block(self, address: str, api_key: str | None = None) -> None:
        """Put an address (or a domain) on one account's block list, or Smartlead's global one."""
        target = self.state.accounts[api_key].blocked if api_key else self.state.global_block_list
        target.add(address.strip().lower())

    def bounce_list(self, api_key: str, *addresses: str) -> None:
        self.state.accounts[api_key].bounced.update(a.strip().lower() for a in addresses)

    def answer_add_leads_with(self, api_key: str, shape: str) -> None:
        """ "live", or one of data.ODD_REPLIES: replies that prove nothing per lead."""
        if shape != "live" and shape not in ODD_REPLIES:
            raise ValueError(f"Unknown reply shape {shape!r}")
        self.state.accounts[api_key].add_leads_reply = shape

    def reply_next(self, route: str, body: Any, status: int = 200) -> None:
        """Answer the next authenticated request on `route` (a label such as "POST /campaigns/
        {campaign_id}/schedule") with this body and status, instead of doing it."""
        self._forced_replies[route].append((status, body))

    def hand_key_to(self, api_key: str, other_api_key: str) -> None:
        """`api_key` now opens the account of `other_api_key`: as when an SDR's saved key is
        replaced by one of another Smartlead account (or the account is re-created)."""
        self.state.accounts[api_key] = self.state.accounts[other_api_key]

    # What leads did, as Smartlead records it (its webhooks are not sent by the sandbox).
    def lead_sent(self, api_key: str, campaign_id: int, email: str, sequence_number: int) -> str:
        """Email `sequence_number` went to the lead; returns its stats_id."""
        return self.state.record(api_key, campaign_id, email, "SENT", sequence_number, "")

    def lead_replied(self, api_key: str, campaign_id: int, email: str, text: str) -> str:
        """The lead replied to its last email: a REPLY row (with that email's stats_id, as
        Smartlead's reply webhook carries it), emailStatus is_replied, the lead STOPPED."""
        return self.state.record(api_key, campaign_id, email, "REPLY", None, text)

    def lead_bounced(self, api_key: str, campaign_id: int, email: str) -> str:
        return self.state.record(api_key, campaign_id, email, "BOUNCE", None, "")

    def lead_unsubscribed(self, api_key: str, campaign_id: int, email: str) -> str:
        return self.state.record(api_key, campaign_id, email, "UNSUBSCRIBE", None, "")

    # Mailbox health as Smartlead reports it, and its scheduler (sandbox/mailboxes.py).
    def break_mailbox(self, api_key: str, mailbox_id: int, **health: object) -> None:
        """E.g. `break_mailbox(key, 11)` (SMTP failing), or `is_suspended=True`,
        `is_imap_success=False`, `warmup_reputation=40`."""
        smtp = {"is_smtp_success": False, "smtp_failure_error": "535 Authentication failed"}
        self.state.set_mailbox_health(api_key, mailbox_id, **(health or smtp))

    def fix_mailbox(self, api_key: str, mailbox_id: int) -> None:
        self.state.set_mailbox_health(
            api_key,
            mailbox_id,
            is_smtp_success=True,
            is_imap_success=True,
            smtp_failure_error=None,
            imap_failure_error=None,
            is_suspended=False,
            warmup_reputation=95,
        )

    def send_next(self, api_key: str, campaign_id: int) -> list[tuple[str, int, int]]:
        """Smartlead's scheduler, once: each lead it would write to now gets its next step, from
        the mailbox it is pinned to; returns (email, step, mailbox id) per email sent."""
        return self.state.send_next(api_key, campaign_id)

    def fail_next(self, count: int = 1, status: int = 503) -> None:
        """Answer the next `count` authenticated requests with `status`."""
        self._forced_faults.extend([status] * count)

    def request_count(
        self, api_key: str | None = None, *, route: str | None = None, status: int | None = None
    ) -> int:
        """Requests seen, optionally for one key, one route label ("POST /campaigns/{campaign_id}
        /leads") and one answer status."""
        with self._counts_lock:
            return sum(
                n
                for (key, label, code), n in self._counts.items()
                if (api_key is None or key == api_key)
                and (route is None or label == route)
                and (status is None or code == status)
            )

    def reset_counts(self) -> None:
        with self._counts_lock:
            self._counts.clear()

    def arrived_again(self) -> int:
        """Leads delivered again to a campaign that already had them, over every account."""
        total = 0
        for account in list(self.state.accounts.values()):
            with account.lock:
                total += sum(c.arrived_again for c in account.campaigns.values())
        return total

    def campaigns(self, api_key: str) -> list[dict]:
        """Every campaign of one key as plain dicts, leads included."""
        account = self.state.accounts[api_key]
        with account.lock:
            return [snapshot(account, campaign) for campaign in account.campaigns.values()]

    # --- Serving ---
    def handle(self, method: str, target: str, raw_body: bytes) -> tuple[int, Any, dict]:
        """Answer one request: (status, JSON body or an HTML string, extra headers)."""
        url = urlsplit(target)
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        api_key = query.pop("api_key", None)
        route, ids = _match(method, url.path)
        headers: dict[str, str] = {}
        try:
            self._delay()
            account = self.state.authenticate(api_key)
            if method == "POST" and url.path.startswith("/sandbox/"):
                # The sandbox's own route: not Smartlead's API, so outside its rate limit.
                status, body = 200, self.control(api_key, url.path, _json_body(raw_body))
                self._count(api_key, "sandbox events", status)
                return status, body, headers
            headers = self.state.admit(account)
            self._maybe_fail()
            if route is None:  # Express's answer to an unknown path or a wrong method
                raise ApiError(404, f"Cannot {method} {url.path}")
            forced = self._forced_replies.get(route.label)
            if forced:
                status, body = forced.popleft()
            else:
                handler = getattr(self.state, route.handler)
                status, body = 200, handler(account, query, _json_body(raw_body), **ids)
        except ApiError as error:
            status, body, headers = error.status, error.body, headers | error.headers
        self._count(api_key, route.label if route else "no route", status)
        return status, body, headers

    def _delay(self) -> None:
        pause = self.latency
        if self.slow_rate and self._random.random() < self.slow_rate:
            pause += self.slow_seconds
        if pause > 0:
            time.sleep(pause)

    def _maybe_fail(self) -> None:
        try:
            status = self._forced_faults.popleft()
        except IndexError:
            if not (self.fault_rate and self._random.random() < self.fault_rate):
                return
            status = self._random.choice(FAULT_STATUSES)
        raise ApiError(status, {"error": "Internal server error (sandbox fault injection)"})

    def _count(self, api_key: str | None, label: str, status: int) -> None:
        with self._counts_lock:
            self._counts[(api_key, label, status)] += 1


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # Keep-alive connections park their threads; stopping must not wait for them.
    block_on_close = False
    request_queue_size = 128
    allow_reuse_address = True
    sandbox: SandboxServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-answer is normal under load; anything else is a bug.
        logger.debug("Sandbox connection from %s ended with an error", client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the client reuses one connection per thread
    server_version = "SmartleadSandbox/1.0"
    timeout = 60  # an idle keep-alive connection gives its thread back after this
    # Headers and body leave in one segment: two small writes meet delayed ACKs (40 ms each).
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True
    server: _HTTPServer

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._serve()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET  # noqa: N815

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            status, body, headers = self.server.sandbox.handle(self.command, self.path, raw)
        except Exception:
            logger.exception("Sandbox bug on %s %s", self.command, urlsplit(self.path).path)
            status, body, headers = 500, {"error": "Sandbox bug; see its log"}, {}
        if body is None:  # a 200 with nothing in it, as some Smartlead routes answer
            data, kind = b"", "application/json; charset=utf-8"
        elif isinstance(body, str):
            page = f"<!DOCTYPE html><html><body><pre>{escape(body)}</pre></body></html>"
            data, kind = page.encode(), "text/html; charset=utf-8"
        else:
            data, kind = json.dumps(body).encode(), "application/json; charset=utf-8"
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base signature
        """Silent: the request line carries ?api_key=."""
