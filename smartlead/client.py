"""The one HTTP seam to Smartlead: typed results, typed errors, retries and a per-key limiter.

Nothing else in the project talks to Smartlead. Facts about the live API (bare arrays, numbers as
strings, several error body shapes, a flat schedule body) come from docs/smartlead-api.md in the
shared docs, which wins over Smartlead's own reference wherever they disagree.
"""

from __future__ import annotations

import email.utils
import hashlib
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import requests
import requests.adapters
import urllib3.exceptions
from django.conf import settings

from outboundhq.logs import RedactSecretsFilter, mask, redact, register_secret
from smartlead.results import (  # noqa: F401 - the results are part of the client's API
    AddLeadsResult,
    Campaign,
    EmailAccount,
    FoundLead,
    Lead,
    SequenceStepSpec,
    Webhook,
    _add_leads_result,
    _campaign,
    _email_account,
    _emails,
    _found_lead,
    _int,
    _object,
    _rows,
    _webhook,
)

logger = logging.getLogger(__name__)

USER_AGENT = f"OutboundHQ-backend/1.0 (+python-requests/{requests.__version__})"
MAX_LEADS_PER_REQUEST = 350  # the lowest maximum any Smartlead doc states
PAGE_SIZE = 100  # /email-accounts/ answers 422 above this
MAX_PAGES = 1000
STATUS_WRITES = ("START", "PAUSED", "STOPPED")
BURST, BURST_WINDOW = 10, 2.0  # the legacy "10 requests every 2 s" rule, which fits every doc
WINDOW_MARGIN = 0.25  # seconds added to each window: our send time is not Smartlead's receipt time
BACKOFF_BASE, BACKOFF_CAP = 1.0, 30.0
RETRY_AFTER_JITTER = 0.5  # spreads threads that were all told the same Retry-After
DEFAULT_RETRY_AFTER = BURST_WINDOW

# Indirections the tests replace with a fake clock, so no test sleeps for real.
_clock: Callable[[], float] = time.monotonic
_sleep: Callable[[float], None] = time.sleep
_random: Callable[[], float] = random.random


def _install_log_redaction() -> None:
    """urllib3 logs every URL (with ?api_key=) at DEBUG: redact at the source, for every handler."""
    for name in ("urllib3.connectionpool", __name__):
        target = logging.getLogger(name)
        if not any(isinstance(f, RedactSecretsFilter) for f in target.filters):
            target.addFilter(RedactSecretsFilter())


_install_log_redaction()


# --- Errors ------------------------------------------------------------------------------
class SmartleadError(Exception):
    """A failed Smartlead call. `permanent` errors will fail the same way if repeated."""

    permanent = True

    def __init__(self, message: str, *, status: int | None = None, permanent: bool | None = None):
        super().__init__(redact(message))
        self.status = status
        if permanent is not None:
            self.permanent = permanent
        # Only set on transient errors: whether repeating cannot double a non-idempotent write.
        self.safe_to_repeat = False


class InvalidApiKey(SmartleadError):
    pass


class NoApiAccess(SmartleadError):
    pass


class NotFound(SmartleadError):
    pass


class ValidationFailed(SmartleadError):
    pass


class RateLimited(SmartleadError):
    permanent = False

    def __init__(self, message: str, *, retry_after: float, status: int | None = 429):
        super().__init__(message, status=status)
        self.retry_after = retry_after
        self.safe_to_repeat = True


class TransientError(SmartleadError):
    permanent = False


def _smartlead_message(body: Any, fallback: str) -> str:
    """Smartlead's own words from any of its error shapes (Boom, legacy, guide envelope, HTML)."""
    if isinstance(body, dict):
        error = body.get("error")
        for candidate in (
            error.get("message") if isinstance(error, dict) else None,
            body.get("message"),
            error,
        ):
            if isinstance(candidate, str) and candidate.strip():
                return candidate.strip()[:500]
    if isinstance(body, str) and body.strip():
        return " ".join(body.split())[:200]
    return fallback


def _retry_after(response: requests.Response, body: Any) -> float:
    """Seconds from the Retry-After header (seconds or HTTP date), else from the 429 body."""
    header = response.headers.get("Retry-After", "").strip()
    seconds = None
    try:
        seconds = float(header)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(header).timestamp() - time.time()
        except (TypeError, ValueError):
            seconds = None
    if seconds is None and isinstance(body, dict) and isinstance(body.get("error"), dict):
        seconds = _int(body["error"].get("retry_after"))
    return max(0.0, float(seconds)) if seconds is not None else DEFAULT_RETRY_AFTER


# --- The per-key limiter -------------------------------------------------------------------
class RateLimiter:
    """Sliding-window limiter for one API key: at most `per_window` per `window` seconds and at
    most `burst` per `burst_window`. Callers reserve a send slot under the lock and sleep outside
    it, so one thread's wait never blocks another key (or the lock)."""

    def __init__(
        self,
        per_window: int,
        *,
        window: float = 60.0,
        burst: int = BURST,
        burst_window: float = BURST_WINDOW,
        margin: float = WINDOW_MARGIN,
    ):
        self.per_window = max(1, per_window)
        self.window = window + margin
        self.burst = max(1, burst)
        self.burst_window = burst_window + margin
        self._slots: deque[float] = deque(maxlen=max(self.per_window, self.burst))
        self._paused_until = 0.0
        self._lock = threading.Lock()

    def acquire(self, max_wait: float | None = None) -> float:
        """Reserve the earliest allowed send time, wait for it, and return it.

        Raises RateLimited, reserving nothing, when the wait would exceed `max_wait`.
        """
        with self._lock:
            now = _clock()
            slot = self._earliest(now)
            if max_wait is not None and slot - now > max_wait:
                raise RateLimited(
                    f"The client-side limit for this Smartlead key needs a wait of "
                    f"{slot - now:.1f} s, past this run's deadline; try again later.",
                    retry_after=slot - now,
                    status=None,
                )
            self._slots.append(slot)
        if slot > now:
            _sleep(slot - now)
        return slot

    def set_rate(self, per_window: int) -> None:
        """The latest client's setting wins: one key has one limit in the process."""
        with self._lock:
            self.per_window = max(1, per_window)
            self._slots = deque(self._slots, maxlen=max(self.per_window, self.burst))

    def pause_until(self, until: float) -> None:
        """After a real 429 (another integration may share the key), hold every thread back."""
        with self._lock:
            self._paused_until = max(self._paused_until, until)

    def _earliest(self, now: float) -> float:
        slots = self._slots
        slot = max(now, self._paused_until, slots[-1] if slots else now)
        if len(slots) >= self.per_window:
            slot = max(slot, slots[-self.per_window] + self.window)
        if len(slots) >= self.burst:
            slot = max(slot, slots[-self.burst] + self.burst_window)
        return slot


_limiters: dict[str, RateLimiter] = {}
_limiters_lock = threading.Lock()


def limiter_for(api_key: str, requests_per_minute: int) -> RateLimiter:
    """The process-wide limiter for one key, shared by every client and thread using that key."""
    digest = hashlib.sha256(api_key.encode()).hexdigest()
    with _limiters_lock:
        limiter = _limiters.get(digest)
        if limiter is None:
            limiter = _limiters[digest] = RateLimiter(requests_per_minute)
        else:
            limiter.set_rate(requests_per_minute)
        return limiter


def reset_rate_limiters() -> None:
    """Forget every key's history (tests; a fresh process starts this way anyway)."""
    with _limiters_lock:
        _limiters.clear()


def _setting(name: str, default: Any) -> Any:
    return getattr(settings, name, default) if settings.configured else default


def _json_or_text(response: requests.Response) -> Any:
    """The parsed body; None when empty (some lookups answer 200 with nothing); text otherwise."""
    if not response.content.strip():
        return None
    try:
        return response.json()
    except ValueError:
        return response.text


def _network_error(exc: requests.RequestException, method: str, path: str) -> SmartleadError:
    # The exception's own text carries the full URL and so the key: redact before quoting it.
    detail = redact(str(exc))[:300]
    if isinstance(exc, requests.Timeout):
        phase = "accept the connection" if isinstance(exc, requests.ConnectTimeout) else "answer"
        error = TransientError(
            f"Smartlead did not {phase} in time for {method} {path}; it may be slow or down, "
            "try again later."
        )
    elif isinstance(exc, requests.ConnectionError):
        error = TransientError(
            f"Could not reach Smartlead for {method} {path} ({detail}); check the network and "
            "SMARTLEAD_BASE_URL, then try again."
        )
    else:
        return SmartleadError(f"Could not send {method} {path} to Smartlead ({detail}).")
    error.safe_to_repeat = _never_sent(exc)
    return error


def _never_sent(exc: requests.RequestException) -> bool:
    """True when the request cannot have reached Smartlead, so even a create may be repeated."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, urllib3.exceptions.NewConnectionError)


def _status_error(
    response: requests.Response, body: Any, method: str, path: str, what: str
) -> SmartleadError:
    status = response.status_code
    message = _smartlead_message(body, f"HTTP {status}")
    if status == 401:
        return InvalidApiKey(
            "Smartlead rejected the API key (invalid or revoked): paste a current key from "
            "Smartlead → Settings → API key.",
            status=status,
        )
    if status == 403:
        return NoApiAccess(
            f"Smartlead refused API access ({message}): the Smartlead plan must include API "
            "access (Pro or higher).",
            status=status,
        )
    if status == 404:
        return NotFound(f"Smartlead has no {what} for this API key ({message}).", status=status)
    if status in (400, 422):
        return ValidationFailed(f"Smartlead rejected {method} {path}: {message}", status=status)
    if status == 429:
        wait = _retry_after(response, body)
        return RateLimited(
            f"Smartlead's rate limit for this key was hit ({message}); retry after {wait:.0f} s.",
            retry_after=wait,
        )
    if status == 408 or status >= 500:
        error = TransientError(
            f"Smartlead failed on {method} {path} with HTTP {status} ({message}); try again later.",
            status=status,
        )
        error.safe_to_repeat = status == 503
        return error
    if 300 <= status < 400:
        return SmartleadError(
            f"Smartlead answered {method} {path} with a redirect (HTTP {status}); redirects are "
            "never followed, so check SMARTLEAD_BASE_URL.",
            status=status,
        )
    return SmartleadError(
        f"Smartlead answered {method} {path} with HTTP {status}: {message}", status=status
    )


# --- The client --------------------------------------------------------------------------
# The HTTP session type behind clients, for code that holds one (the executor's workers).
Session = requests.Session


def new_session() -> requests.Session:
    """The HTTP session behind clients: the key is never part of it (it is per request)."""
    session = requests.Session()
    # No proxy or .netrc lookups from the environment: they cost a filesystem walk per call.
    session.trust_env = False
    # Cloudflare bans the default python-requests User-Agent in front of Smartlead.
    session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
    # Hidden urllib3 retries would bypass the limiter and the time budget.
    for prefix in ("https://", "http://"):
        session.mount(prefix, requests.adapters.HTTPAdapter(max_retries=0))
    return session


class SmartleadClient:
    """One Smartlead account's API over one requests.Session.

    Use one client per thread (a Session is not meant to be shared); the rate limiter behind it
    is shared by every client of the same key in the process.
    """

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str | None = None,
        retry_budget: float = 60.0,
        deadline: float | None = None,
        requests_per_minute: int | None = None,
        session: requests.Session | None = None,
    ):
        """`session` (from `new_session()`) lets one thread keep one connection to Smartlead
        across many SDRs' clients; the caller closes it. Without it the client owns one."""
        if not api_key:
            raise ValueError("A Smartlead API key is required.")
        register_secret(api_key)
        self._api_key = api_key
        default_url = "https://server.smartlead.ai/api/v1"
        self.base_url = (base_url or _setting("SMARTLEAD_BASE_URL", default_url)).rstrip("/")
        self.retry_budget = retry_budget
        self.deadline = deadline
        self.timeout = (
            float(_setting("SMARTLEAD_CONNECT_TIMEOUT", 5.0)),
            float(_setting("SMARTLEAD_READ_TIMEOUT", 30.0)),
        )
        per_request = int(_setting("SMARTLEAD_LEADS_PER_REQUEST", 100))
        self.batch_size = min(MAX_LEADS_PER_REQUEST, max(1, per_request))
        per_minute = requests_per_minute or int(_setting("SMARTLEAD_REQUESTS_PER_MINUTE", 60))
        self._limiter = limiter_for(api_key, per_minute)
        self._owns_session = session is None
        self._session = session or new_session()

    def __repr__(self) -> str:
        return f"<SmartleadClient {self.base_url} key={mask(self._api_key)}>"

    def __enter__(self) -> SmartleadClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _timeout(self) -> tuple[float, float]:
        """A request started near the deadline may not outlast it by a full read timeout."""
        connect, read = self.timeout
        if self.deadline is not None:
            read = min(read, max(1.0, self.deadline - _clock()))
        return connect, read

    def close(self) -> None:
        if self._owns_session:
            self._session.close()

    # --- Email accounts ---
    def list_email_accounts(self) -> list[EmailAccount]:
        accounts: list[EmailAccount] = []
        # The page cap guards against a server that ignores `offset` and repeats a full page.
        for offset in range(0, MAX_PAGES * PAGE_SIZE, PAGE_SIZE):
            page = {"offset": offset, "limit": PAGE_SIZE}
            rows = _rows(self._call("GET", "/email-accounts/", params=page, what="email accounts"))
            accounts.extend(a for a in map(_email_account, rows) if a is not None)
            if len(rows) < PAGE_SIZE:
                break
        return accounts

    def get_email_account(self, account_id: int) -> EmailAccount:
        what = f"email account {account_id}"
        account = _email_account(
            _object(self._call("GET", f"/email-accounts/{account_id}/", what=what))
        )
        if account is None:
            raise NotFound(f"Smartlead has no {what} for this API key.", status=200)
        return account

    # --- Campaigns ---
    def create_campaign(self, name: str) -> Campaign:
        body = _object(
            self._call(
                "POST", "/campaigns/create", body={"name": name}, what="campaign", repeatable=False
            )
        )
        if _int(body.get("id")) is None:
            raise SmartleadError(
                "Smartlead answered the campaign creation without a campaign id; look for a "
                f"campaign named {name!r} in Smartlead before trying again.",
                status=200,
                permanent=False,
            )
        return _campaign(body, default_name=name, default_status="DRAFTED")

    def get_campaign(self, campaign_id: int) -> Campaign:
        what = f"campaign {campaign_id}"
        body = _object(self._call("GET", f"/campaigns/{campaign_id}", what=what))
        if _int(body.get("id")) is None:
            raise NotFound(f"Smartlead has no {what} for this API key.", status=200)
        return _campaign(body)

    def list_campaigns(self) -> list[Campaign]:
        rows = _rows(self._call("GET", "/campaigns/", what="campaigns"))
        return [_campaign(row) for row in rows if _int(row.get("id")) is not None]

    def save_sequences(self, campaign_id: int, steps: Sequence[SequenceStepSpec]) -> None:
        if not steps:
            raise ValueError("A campaign needs at least one sequence step.")
        sequences = [
            {
                "id": None,
                "seq_number": step.seq_number,
                "seq_delay_details": {"delay_in_days": step.delay_in_days},
                "subject": step.subject,
                "email_body": step.email_body,
            }
            for step in steps
        ]
        self._campaign_post(campaign_id, "sequences", {"sequences": sequences})

    def add_email_accounts(self, campaign_id: int, account_ids: Sequence[int]) -> None:
        if not account_ids:
            raise ValueError("Attach at least one email account.")
        ids = [int(account_id) for account_id in account_ids]
        self._campaign_post(campaign_id, "email-accounts", {"email_account_ids": ids})

    def set_schedule(
        self,
        campaign_id: int,
        *,
        timezone: str,
        days_of_the_week: Sequence[int],
        start_hour: str,
        end_hour: str,
        min_time_btw_emails: int = 10,
        max_new_leads_per_day: int = 100,
    ) -> None:
        days = [int(day) for day in days_of_the_week]
        if not days or any(day < 0 or day > 6 for day in days):
            raise ValueError("days_of_the_week must be integers 0 (Sunday) to 6 (Saturday).")
        # Flat body: the {schedule: {...}} wrapper in Smartlead's newer docs is rejected live.
        schedule = {
            "timezone": timezone,
            "days_of_the_week": days,
            "start_hour": start_hour,
            "end_hour": end_hour,
            "min_time_btw_emails": min_time_btw_emails,
            "max_new_leads_per_day": max_new_leads_per_day,
        }
        self._campaign_post(campaign_id, "schedule", schedule)

    def update_settings(self, campaign_id: int, **settings: Any) -> None:
        if not settings:
            raise ValueError("Pass at least one campaign setting.")
        self._campaign_post(campaign_id, "settings", settings)

    def set_status(self, campaign_id: int, status: str) -> None:
        if status not in STATUS_WRITES:
            raise ValueError(f"Smartlead only accepts status {', '.join(STATUS_WRITES)}.")
        self._campaign_post(campaign_id, "status", {"status": status})

    # --- Leads ---
    def add_leads(
        self,
        campaign_id: int,
        leads: Sequence[Lead],
        *,
        lead_settings: Mapping[str, bool] | None = None,
    ) -> AddLeadsResult:
        """One add-leads request. `lead_settings` (e.g. ignore_global_block_list) is sent only
        when given: Smartlead rejects the whole request for one unknown key."""
        if len(leads) > self.batch_size:
            raise ValueError(f"At most {self.batch_size} leads per request, got {len(leads)}.")
        if not leads:
            return _add_leads_result({}, 0)
        body: dict[str, Any] = {"lead_list": [lead.as_payload() for lead in leads]}
        if lead_settings:
            body["settings"] = dict(lead_settings)
        # Repeating an add is harmless: a lead already added comes back as already_added.
        answer = self._call(
            "POST", f"/campaigns/{campaign_id}/leads", body=body, what=f"campaign {campaign_id}"
        )
        return _add_leads_result(_object(answer), len(leads))

    def find_lead(self, email: str) -> FoundLead | None:
        answer = self._call("GET", "/leads/", params={"email": email}, what="lead with that email")
        return _found_lead(_object(answer))

    # --- Webhooks ---
    def list_campaign_webhooks(self, campaign_id: int) -> list[Webhook]:
        what = f"campaign {campaign_id}"
        return [
            _webhook(row)
            for row in _rows(self._call("GET", f"/campaigns/{campaign_id}/webhooks", what=what))
        ]

    def save_campaign_webhook(
        self,
        campaign_id: int,
        *,
        name: str,
        url: str,
        event_types: Sequence[str],
        categories: Sequence[str] = ("Interested",),
        webhook_id: int | None = None,
    ) -> None:
        """Create the webhook (webhook_id None) or update it. Empty `categories` are left out,
        because Smartlead answers 400 to `"categories": []`."""
        body: dict[str, Any] = {
            "id": webhook_id,
            "name": name,
            "webhook_url": url,
            "event_types": list(event_types),
        }
        if categories:
            body["categories"] = list(categories)
        self._campaign_post(campaign_id, "webhooks", body, repeatable=webhook_id is not None)

    # --- Transport ---
    def _campaign_post(
        self, campaign_id: int, action: str, body: dict[str, Any], *, repeatable: bool = True
    ) -> None:
        path = f"/campaigns/{campaign_id}/{action}"
        self._call("POST", path, body=body, what=f"campaign {campaign_id}", repeatable=repeatable)

    def _call(
        self,
        method: str,
        path: str,
        *,
        what: str,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        repeatable: bool = True,
    ) -> Any:
        """Send one call, retrying transient failures and 429s within the budget and deadline.

        `repeatable=False` (creates) retries only failures that cannot have reached Smartlead,
        so a timeout never creates a second campaign.
        """
        started = None
        attempt = 0
        while True:
            self._wait_for_slot()
            # The budget counts time spent retrying, not the first wait in the limiter's queue.
            started = _clock() if started is None else started
            error, payload = self._attempt(method, path, what, params, body)
            if error is None:
                return payload
            delay = self._retry_delay(error, attempt, started, repeatable)
            if delay is None:
                raise error
            attempt += 1
            logger.warning(
                "Smartlead %s %s failed (%s); retry %d in %.1f s",
                method,
                path,
                error,
                attempt,
                delay,
            )
            _sleep(delay)

    def _wait_for_slot(self) -> None:
        max_wait = None if self.deadline is None else max(0.0, self.deadline - _clock())
        self._limiter.acquire(max_wait)

    def _attempt(
        self, method: str, path: str, what: str, params: Mapping[str, Any] | None, body: Any
    ) -> tuple[SmartleadError | None, Any]:
        """One HTTP exchange. Errors are returned, not raised, so that when the caller raises
        them they carry no chained requests exception (whose text holds the full URL)."""
        query = {**(params or {}), "api_key": self._api_key}
        url = self.base_url + path
        try:
            response = self._session.request(
                method,
                url,
                params=query,
                json=body,
                timeout=self._timeout(),
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            return _network_error(exc, method, path), None
        logger.debug("Smartlead %s %s -> HTTP %s", method, path, response.status_code)
        payload = _json_or_text(response)
        if not 200 <= response.status_code < 300:
            return _status_error(response, payload, method, path, what), None
        if isinstance(payload, str):
            return TransientError(
                f"Smartlead answered {method} {path} with a body that is not JSON; "
                "try again later.",
                status=response.status_code,
            ), None
        return None, payload

    def _retry_delay(
        self, error: SmartleadError, attempt: int, started: float, repeatable: bool
    ) -> float | None:
        """Seconds to wait before the next attempt, or None to give up now."""
        if error.permanent or not (repeatable or error.safe_to_repeat):
            return None
        backoff = min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt)
        delay = backoff / 2 + _random() * backoff / 2
        now = _clock()
        if isinstance(error, RateLimited):
            self._limiter.pause_until(now + error.retry_after)
            delay = max(delay, error.retry_after + _random() * RETRY_AFTER_JITTER)
        if now + delay - started > self.retry_budget:
            return None
        if self.deadline is not None and now + delay > self.deadline:
            return None
        return delay
