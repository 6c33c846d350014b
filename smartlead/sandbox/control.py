"""Driving a sandbox that runs in another process (`manage.py smartlead_sandbox`, which
scripts/demo keeps running): make something happen to a lead there, which delivers the
campaign's webhooks (smartlead/sandbox/hooks.py). Development only; nothing in production
calls it, and it never talks to Smartlead itself (the URL must be a local one)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlencode, urlsplit

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


class SandboxUnavailable(Exception):
    """The sandbox did not answer, or refused; the message says what it said."""


def sandbox_root(base_url: str) -> str:
    """`http://127.0.0.1:8765` from SMARTLEAD_BASE_URL; refuses anything but a local sandbox."""
    parts = urlsplit(base_url)
    if parts.hostname not in LOCAL_HOSTS:
        raise SandboxUnavailable(
            f"SMARTLEAD_BASE_URL ({parts.hostname}) is not a local sandbox: this only drives the "
            "sandbox that scripts/demo starts."
        )
    return f"{parts.scheme}://{parts.netloc}"


def lead_event(
    base_url: str,
    api_key: str,
    campaign_id: int,
    email: str,
    event_type: str,
    *,
    text: str = "",
    deliver: bool = True,
) -> dict[str, Any]:
    query = urlencode({"api_key": api_key})
    url = f"{sandbox_root(base_url)}/sandbox/campaigns/{campaign_id}/events?{query}"
    body = {"email": email, "event_type": event_type, "text": text, "deliver": deliver}
    request = urllib.request.Request(  # noqa: S310 - a local URL, checked above
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        said = error.read()[:300].decode("utf-8", "replace")
        raise SandboxUnavailable(f"The sandbox answered {error.code}: {said}") from None
    except (urllib.error.URLError, OSError) as error:
        raise SandboxUnavailable(
            f"The sandbox at {sandbox_root(base_url)} did not answer: {error}"
        ) from None
