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
from datetime import UTC, datetime

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
profile_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("profile_id", default=None)
run_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("run_id", default=None)

_SECRET_PARAM = re.compile(
    r"(?P<name>api_key|secret|token|password)(?P<sep>=|%3D|\"\s*:\s*\"|'\s*:\s*')(?P<value>[^&\s\"'#]+)",
    re.IGNORECASE,
)
_known_secrets: set[str] = set()
_known_lock = threading.Lock()
_MAX_KNOWN = 10_000


def mask(value: str | None) -> str:
    """`…abcd`: the most of a secret we ever show."""
    if not value:
        return ""
    return "…" + value[-4:] if len(value) > 8 else "…"


def register_secret(value: str | None) -> None:
    """Remember a secret so it is redacted even where it appears outside a query string."""
    if not value or len(value) < 8:
        return
    with _known_lock:
        if len(_known_secrets) >= _MAX_KNOWN:
            _known_secrets.clear()
        _known_secrets.add(value)


def redact(text: str) -> str:
    """Replace every secret-looking query parameter and every registered secret."""
    if not text:
        return text
    text = _SECRET_PARAM.sub(
        lambda m: f"{m.group('name')}{m.group('sep')}{mask(m.group('value'))}", text
    )
    with _known_lock:
        known = [s for s in _known_secrets if s in text]
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
            record.exc_text = redact(record.exc_text)
            record.exc_info = None
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
