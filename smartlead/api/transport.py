"""The transport under the Smartlead client: one key's session, timeouts, retries and limiter.

`SmartleadClient` (smartlead/client.py) is the API, one method per Smartlead call; this is how
each call travels: the key only in the query string (and registered for log redaction), an
explicit User-Agent, `(connect, read)` timeouts cut to the run's deadline, retries of transient
failures within a budget, the per-key rate limiter, and errors returned rather than raised so
that none carries a requests exception with the URL in it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import requests
import requests.adapters
from django.conf import settings

from outboundhq.logs import RedactSecretsFilter, register_secret
from smartlead.api import limits
from smartlead.api.errors import (
    RateLimited,
    SmartleadError,
    TransientError,
    network_error,
    refused_in_body,
    status_error,
)
from smartlead.api.limits import Limits, Priority, budget_for

# One logger for the whole seam (its name is what operators filter on and what is redacted).
LOGGER_NAME = "smartlead.client"
logger = logging.getLogger(LOGGER_NAME)

USER_AGENT = f"OutboundHQ-backend/1.0 (+python-requests/{requests.__version__})"
MAX_LEADS_PER_REQUEST = 350  # the lowest maximum any Smartlead doc states
BACKOFF_BASE, BACKOFF_CAP = 1.0, 30.0
RETRY_AFTER_JITTER = 0.5  # spreads threads that were all told the same Retry-After


def _install_log_redaction() -> None:
    """urllib3 logs every URL (with ?api_key=) at DEBUG: redact at the source, for every handler."""
    for name in ("urllib3.connectionpool", LOGGER_NAME):
        target = logging.getLogger(name)
        if not any(isinstance(f, RedactSecretsFilter) for f in target.filters):
            target.addFilter(RedactSecretsFilter())


_install_log_redaction()


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


class Transport:
    """How one key's calls travel. Use one per thread (a Session is not meant to be shared);
    the rate limiter behind it is shared by every client of the same key in the process."""

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str | None = None,
        retry_budget: float = 60.0,
        deadline: float | None = None,
        requests_per_minute: int | None = None,
        requests_per_hour: int | None = None,
        priority: Priority = Priority.BULK,
        session: requests.Session | None = None,
    ):
        """`session` (from `new_session()`) lets one thread keep one connection to Smartlead
        across many SDRs' clients; the caller closes it. Without it the client owns one.
        `priority`: how much of the key's budget its requests may use (smartlead/api/limits.py)."""
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
        self._limits = Limits(
            per_minute=requests_per_minute or int(_setting("SMARTLEAD_REQUESTS_PER_MINUTE", 60)),
            per_hour=requests_per_hour or int(_setting("SMARTLEAD_REQUESTS_PER_HOUR", 1000)),
        )
        self._budget = budget_for(api_key, self._limits)
        self.priority = priority
        self._owns_session = session is None
        self._session = session or new_session()
        # HTTP exchanges sent, retries included: what a run record reports as its cost.
        self.requests_sent = 0

    def _timeout(self) -> tuple[float, float]:
        """A request started near the deadline may not outlast it by a full read timeout."""
        connect, read = self.timeout
        if self.deadline is not None:
            read = min(read, max(1.0, self.deadline - limits.clock()))
        return connect, read

    def close(self) -> None:
        if self._owns_session:
            self._session.close()

    def _campaign_post(
        self, campaign_id: int, action: str, body: dict[str, Any], *, repeatable: bool = True
    ) -> None:
        path = f"/campaigns/{campaign_id}/{action}"
        answer = self._call(
            "POST", path, body=body, what=f"campaign {campaign_id}", repeatable=repeatable
        )
        check_reply(answer, "POST", path)

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
        # A key in use stays among the most recent in the redaction registry (outboundhq/logs.py).
        register_secret(self._api_key)
        started = None
        attempt = 0
        while True:
            self._wait_for_slot()
            # The budget counts time spent retrying, not the first wait in the limiter's queue.
            started = limits.clock() if started is None else started
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
            limits.sleep(delay)

    def _wait_for_slot(self) -> None:
        max_wait = None if self.deadline is None else max(0.0, self.deadline - limits.clock())
        self._budget.acquire(max_wait, self.priority)

    def _attempt(
        self, method: str, path: str, what: str, params: Mapping[str, Any] | None, body: Any
    ) -> tuple[SmartleadError | None, Any]:
        """One HTTP exchange. Errors are returned, not raised, so that when the caller raises
        them they carry no chained requests exception (whose text holds the full URL)."""
        query = {**(params or {}), "api_key": self._api_key}
        url = self.base_url + path
        self.requests_sent += 1
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
            return network_error(exc, method, path), None
        logger.debug("Smartlead %s %s -> HTTP %s", method, path, response.status_code)
        self._budget.observe(response.headers)
        payload = _json_or_text(response)
        if not 200 <= response.status_code < 300:
            return status_error(response, payload, method, path, what), None
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
        delay = backoff / 2 + limits.jitter() * backoff / 2
        now = limits.clock()
        if isinstance(error, RateLimited):
            self._budget.pause(error.retry_after)
            delay = max(delay, error.retry_after + limits.jitter() * RETRY_AFTER_JITTER)
        if now + delay - started > self.retry_budget:
            return None
        if self.deadline is not None and now + delay > self.deadline:
            return None
        return delay


def check_reply(answer: Any, method: str, path: str) -> None:
    """A write is done only if the reply says so: Smartlead answers some refusals with 200."""
    refusal = refused_in_body(answer, method, path)
    if refusal is not None:
        raise refusal
