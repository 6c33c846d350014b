"""Logging pieces: secret redaction on every handler, request/run context, JSON lines.

Smartlead keys travel in query strings (`?api_key=`), so any URL that reaches a log line —
ours, requests', urllib3's debug output — is rewritten to show at most the key's last 4.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import threading
from collections import OrderedDict
from datetime import UTC, datetime

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
profile_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("profile_id", default=None)
run_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("run_id", default=None)

_SECRET_PARAM = re.compile(
    r"(?P<name>api_key|secret|token|password)(?P<sep>=|%3D|\"\s*:\s*\"|'\s*:\s*')(?P<value>[^&\s\"'#]+)",
    re.IGNORECASE,
)
# Two registries. Pinned: the service's own secrets (webhook, cron, signing), never forgotten.
# The rest (SDRs' keys, which any SDR can add by trying keys on the connect API): the
# MAX_KNOWN most recently used, each client touching its key as it works, so a flood of keys
# only pushes out keys nobody has used since, never a pinned one or one a client is using.
_pinned: set[str] = set()
_recent: OrderedDict[str, None] = OrderedDict()
_known_lock = threading.Lock()
MAX_KNOWN = 10_000


def mask(value: str | None) -> str:
    """`…abcd`: the most of a secret we ever show."""
    if not value:
        return ""
    return "…" + value[-4:] if len(value) > 8 else "…"


def register_secret(value: str | None, *, pinned: bool = False) -> None:
    """Remember a secret so it is redacted even where it appears outside a query string.

    `pinned` for the settings' secrets: kept for good. Others are kept while among the
    MAX_KNOWN most recently registered; registering one again makes it the most recent."""
    if not value or len(value) < 8:
        return
    with _known_lock:
        if pinned:
            _pinned.add(value)
            _recent.pop(value, None)
        elif value not in _pinned:
            _recent[value] = None
            _recent.move_to_end(value)
            while len(_recent) > MAX_KNOWN:
                _recent.popitem(last=False)


def _mask_param(match: re.Match[str]) -> str:
    value = match.group("value")
    # Already masked (a line redacted twice, e.g. by a log filter and then by Sentry): keep it.
    shown = value if value.startswith("…") else mask(value)
    return f"{match.group('name')}{match.group('sep')}{shown}"


def known_secrets() -> set[str]:
    """Every secret registered so far (the test suite checks its own logs against them)."""
    with _known_lock:
        return _pinned | set(_recent)


def redact(text: str) -> str:
    """Replace every secret-looking query parameter and every registered secret."""
    if not text:
        return text
    text = _SECRET_PARAM.sub(_mask_param, text)
    with _known_lock:
        known = [s for s in (*_pinned, *_recent) if s in text]
    for secret in known:
        text = text.replace(secret, mask(secret))
    return text


class RedactSecretsFilter(logging.Filter):
    """Rewrites the formatted message and any traceback so no secret reaches a handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken format string must not lose the record
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            # Formatters print exc_text when it is set, so the redacted text is what's written.
            # exc_info stays: Sentry reads the record after the handlers, and needs the
            # exception itself for a stack trace (its before_send scrubs the values).
            record.exc_text = redact(record.exc_text)
        return True


class RequestContextFilter(logging.Filter):
    """Adds request_id, profile_id and run_id (when known) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        record.profile_id = profile_id.get()
        record.run_id = run_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for Railway's log search."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in ("request_id", "profile_id", "run_id"):
            value = getattr(record, field, None)
            if value:
                entry[field] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """Development: one readable line, with the request/run ids in brackets when known."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(context)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        ids = [
            f"{field}={getattr(record, field)}"
            for field in ("request_id", "profile_id", "run_id")
            if getattr(record, field, None)
        ]
        record.context = f" [{' '.join(ids)}]" if ids else ""
        return super().format(record)


class AccessLogContextFilter(logging.Filter):
    """gunicorn's access line is written after Django has returned: take the request id the
    response carries (RequestIdMiddleware sets X-Request-ID) so it joins the app's lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        atoms = record.args
        if isinstance(atoms, dict):
            rid = atoms.get("{x-request-id}o")
            if rid and rid != "-":
                record.request_id = rid
        return True


def gunicorn_logconfig(*, level: str = "INFO", fmt: str = "json") -> dict[str, object]:
    """gunicorn's `logconfig_dict`: its error and access logs in the same format as the app's,
    through the same redaction (an access line holds the whole URL, query string included)."""
    formatter = "text" if fmt == "text" else "json"
    handler = {"class": "logging.StreamHandler", "formatter": formatter}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "redact_secrets": {"()": "outboundhq.logs.RedactSecretsFilter"},
            "access_context": {"()": "outboundhq.logs.AccessLogContextFilter"},
        },
        "formatters": {
            "json": {"()": "outboundhq.logs.JsonFormatter"},
            "text": {"()": "outboundhq.logs.TextFormatter"},
        },
        "handlers": {
            "error": handler | {"stream": "ext://sys.stderr", "filters": ["redact_secrets"]},
            # The context filter must read the atoms before redaction flattens the arguments.
            "access": handler
            | {"stream": "ext://sys.stdout", "filters": ["access_context", "redact_secrets"]},
        },
        "root": {"level": level, "handlers": ["error"]},
        "loggers": {
            "gunicorn.error": {"level": level, "handlers": ["error"], "propagate": False},
            "gunicorn.access": {"level": "INFO", "handlers": ["access"], "propagate": False},
        },
    }
