"""Error reporting to Sentry, only when SENTRY_DSN is set, with every secret scrubbed first.

Smartlead keys travel in query strings, so a key can reach an event through a message, an
exception value, a request URL or a breadcrumb (urllib3 logs URLs). Rather than chase each field,
`scrub_event` runs `outboundhq.logs.redact` over every string in the event, and Sentry's own
scrubber removes values stored under secret-looking names (frame locals, headers).
"""

from __future__ import annotations

from typing import Any

import sentry_sdk
from sentry_sdk.integrations.django import DjangoIntegration
from sentry_sdk.scrubber import DEFAULT_DENYLIST, EventScrubber
from sentry_sdk.transport import Transport

from outboundhq.logs import redact

# Names our code uses for secrets, on top of Sentry's defaults (api_key, secret, token, ...).
DENYLIST = [
    *DEFAULT_DENYLIST,
    "smartlead_api_key",
    "key",
    "signing_secret",
    "webhook_secret",
    "cron_secret",
    "jwt",
    "access_token",
    "refresh_token",
    "dsn",
]


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


def scrub_event(event: dict[str, Any], hint: dict[str, Any] | None = None) -> dict[str, Any]:
    """before_send / before_send_transaction: the event with every secret-looking value masked."""
    return _scrub(event)


def init_sentry(
    *,
    dsn: str,
    environment: str,
    traces_sample_rate: float,
    release: str | None = None,
    transport: type[Transport] | Transport | None = None,
) -> str:
    """Start the SDK; returns "" on success or the reason the DSN was refused."""
    try:
        sentry_sdk.init(
            dsn=dsn,
            environment=environment,
            release=release,
            traces_sample_rate=traces_sample_rate,
            integrations=[DjangoIntegration()],
            send_default_pii=False,
            event_scrubber=EventScrubber(denylist=DENYLIST, recursive=True),
            # Request bodies hold webhook payloads (leads' emails) and connect requests (API
            # keys); the URL, method and headers are enough to find a failing request.
            max_request_body_size="never",
            before_send=scrub_event,
            before_send_transaction=scrub_event,
            transport=transport,
        )
    except Exception as exc:  # noqa: BLE001 - sentry raises BadDsn (and others) for a bad value
        return f"is not a valid Sentry DSN ({exc.__class__.__name__})"
    return ""
