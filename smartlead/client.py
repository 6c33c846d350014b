"""The one HTTP seam to Smartlead: typed results, typed errors, retries and a per-key limiter.

Nothing else in the project talks to Smartlead. Facts about the live API (bare arrays, numbers as
strings, several error body shapes, a flat schedule body) come from docs/smartlead-api.md in the
shared docs, which wins over Smartlead's own reference wherever they disagree.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import requests
import requests.adapters
from django.conf import settings

from outboundhq.logs import RedactSecretsFilter, mask, register_secret
from smartlead import limits
from smartlead.errors import (  # noqa: F401 - the errors are part of the client's API
    InvalidApiKey,
    NoApiAccess,
    NotFound,
    RateLimited,
    SmartleadError,
    TransientError,
    ValidationFailed,
    network_error,
    refused_in_body,
    smartlead_message,
    status_error,
)
from smartlead.limits import RateLimiter, limiter_for, reset_rate_limiters  # noqa: F401
from smartlead.results import (  # noqa: F401 - the results are part of the client's API
    AddLeadsResult,
    Campaign,
    EmailAccount,
    FoundLead,
    Lead,
    LeadOutcome,
    LeadVerdict,
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
BACKOFF_BASE, BACKOFF_CAP = 1.0, 30.0
RETRY_AFTER_JITTER = 0.5  # spreads threads that were all told the same Retry-After


def _install_log_redaction() -> None:
    """urllib3 logs every URL (with ?api_key=) at DEBUG: redact at the source, for every handler."""
    for name in ("urllib3.connectionpool", __name__):
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
            read = min(read, max(1.0, self.deadline - limits.clock()))
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

    def remove_email_accounts(self, campaign_id: int, account_ids: Sequence[int]) -> None:
        if not account_ids:
            raise ValueError("Name at least one email account to remove.")
        ids = [int(account_id) for account_id in account_ids]
        path = f"/campaigns/{campaign_id}/email-accounts"
        answer = self._call(
            "DELETE", path, body={"email_account_ids": ids}, what=f"campaign {campaign_id}"
        )
        _check_reply(answer, "DELETE", path)

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
        """One add-leads request. It always asks for the lead id map (`return_lead_ids`), which
        says per address whether the lead is new, already in the campaign or in another one;
        `lead_settings` (e.g. ignore_global_block_list) are added to it. Smartlead rejects the
        whole request for one unknown settings key. What happened to each lead:
        `AddLeadsResult.outcomes()`."""
        if len(leads) > self.batch_size:
            raise ValueError(f"At most {self.batch_size} leads per request, got {len(leads)}.")
        if not leads:
            return _add_leads_result({}, 0)
        body: dict[str, Any] = {
            "lead_list": [lead.as_payload() for lead in leads],
            "settings": {"return_lead_ids": True, **(lead_settings or {})},
        }
        # Repeating an add is harmless: a lead already added comes back as already_added.
        answer = self._call(
            "POST", f"/campaigns/{campaign_id}/leads", body=body, what=f"campaign {campaign_id}"
        )
        return _add_leads_result(_object(answer), len(leads))

    def find_lead(self, email: str) -> FoundLead | None:
        answer = self._call("GET", "/leads/", params={"email": email}, what="lead with that email")
        return _found_lead(_object(answer))

    # Per-lead actions in one campaign. `lead_id` is Smartlead's lead id (`FoundLead.id`), not
    # the campaign-lead map id. Each answers {ok: true}; a refusal in the reply raises.
    def pause_lead(self, campaign_id: int, lead_id: int) -> None:
        self._campaign_post(campaign_id, f"leads/{int(lead_id)}/pause", {})

    def resume_lead(self, campaign_id: int, lead_id: int) -> None:
        """Resumes where the lead stopped (Smartlead refuses it after the last email)."""
        self._campaign_post(campaign_id, f"leads/{int(lead_id)}/resume", {})

    def unsubscribe_lead(self, campaign_id: int, lead_id: int) -> None:
        """Unsubscribes within the campaign; Smartlead has no undo."""
        self._campaign_post(campaign_id, f"leads/{int(lead_id)}/unsubscribe", {})

    def remove_lead(self, campaign_id: int, lead_id: int) -> None:
        path = f"/campaigns/{campaign_id}/leads/{int(lead_id)}"
        _check_reply(self._call("DELETE", path, what=f"campaign {campaign_id}"), "DELETE", path)

    # --- Webhooks ---
    def list_campaign_webhooks(self, campaign_id: int) -> list[Webhook]:
        what = f"campaign {campaign_id}"
        answer = self._call("GET", f"/campaigns/{campaign_id}/webhooks", what=what)
        if isinstance(answer, dict) and "id" in answer:  # the legacy shape: one webhook, bare
            answer = [answer]
        return [_webhook(row) for row in _rows(answer)]

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
        answer = self._call(
            "POST", path, body=body, what=f"campaign {campaign_id}", repeatable=repeatable
        )
        _check_reply(answer, "POST", path)

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
            return network_error(exc, method, path), None
        logger.debug("Smartlead %s %s -> HTTP %s", method, path, response.status_code)
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
            self._limiter.pause_until(now + error.retry_after)
            delay = max(delay, error.retry_after + limits.jitter() * RETRY_AFTER_JITTER)
        if now + delay - started > self.retry_budget:
            return None
        if self.deadline is not None and now + delay > self.deadline:
            return None
        return delay


def _check_reply(answer: Any, method: str, path: str) -> None:
    """A write is done only if the reply says so: Smartlead answers some refusals with 200."""
    refusal = refused_in_body(answer, method, path)
    if refusal is not None:
        raise refusal
