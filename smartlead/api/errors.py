"""What can go wrong talking to Smartlead, as typed errors, and how an HTTP answer maps to one.

Every message is redacted (no API key) and says what to do. `permanent` errors fail the same way
if repeated; `safe_to_repeat` says whether a transient one cannot have doubled a write.
"""

from __future__ import annotations

import email.utils
import time
from typing import Any

import requests
import urllib3.exceptions

from outboundhq.logs import redact
from smartlead.api.results import as_int

DEFAULT_RETRY_AFTER = 2.0  # Smartlead's burst window, when a 429 names no wait


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


def smartlead_message(body: Any, fallback: str) -> str:
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


def retry_after(response: requests.Response, body: Any) -> float:
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
        seconds = as_int(body["error"].get("retry_after"))
    return max(0.0, float(seconds)) if seconds is not None else DEFAULT_RETRY_AFTER


def network_error(exc: requests.RequestException, method: str, path: str) -> SmartleadError:
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
    error.safe_to_repeat = never_sent(exc)
    return error


def never_sent(exc: requests.RequestException) -> bool:
    """True when the request cannot have reached Smartlead, so even a create may be repeated."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, urllib3.exceptions.NewConnectionError)


def status_error(
    response: requests.Response, body: Any, method: str, path: str, what: str
) -> SmartleadError:
    status = response.status_code
    message = smartlead_message(body, f"HTTP {status}")
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
        wait = retry_after(response, body)
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


def refused_in_body(payload: Any, method: str, path: str) -> SmartleadError | None:
    """A 200 whose body says the call failed: `{ok: false, ...}`, `{success: false, ...}` or an
    error body without `ok: true` (some setup routes answer so). None for a real success."""
    if not isinstance(payload, dict) or payload.get("ok") is True:
        return None
    failed = payload.get("ok") is False or payload.get("success") is False
    if not failed and not payload.get("error"):
        return None
    said = smartlead_message(payload, "no reason given")
    return ValidationFailed(
        f"Smartlead refused {method} {path} in its reply (HTTP 200): {said}", status=200
    )
