"""Per-campaign webhook tokens: which campaign a webhook URL may report on.

Every SDR can read their own campaign's webhook URL in Smartlead, so the URL must not carry a
secret that works for anyone else's campaign. Each URL carries `campaign=<id>&token=<mac>`,
the mac an HMAC-SHA256 of that campaign id under SMARTLEAD_WEBHOOK_SECRET: it proves the URL
is one we registered, for that campaign only, and costs one HMAC to check (no database).
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from django.conf import settings

# 128 bits of the HMAC, base64url without padding: 22 characters that need no URL escaping.
TOKEN_BYTES = 16
_PURPOSE = b"outboundhq.smartlead-webhook.campaign:"


def token_for(campaign_id: int, secret: str) -> str:
    """The token of one campaign's webhook URL under one server secret."""
    mac = hmac.new(secret.encode(), _PURPOSE + str(campaign_id).encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()[:TOKEN_BYTES]).rstrip(b"=").decode()


def server_secrets() -> list[str]:
    """The secrets a token may be made with: the current one, then the previous one (rotation)."""
    current = settings.SMARTLEAD_WEBHOOK_SECRET
    previous = settings.SMARTLEAD_WEBHOOK_SECRET_PREVIOUS
    return [s for s in (current, previous) if s]


def current_token(campaign_id: int) -> str:
    return token_for(campaign_id, settings.SMARTLEAD_WEBHOOK_SECRET)


def is_valid(token: str, campaign_id: int) -> bool:
    """Whether `token` is this campaign's, under any accepted secret; constant time each."""
    offered = token.encode("utf-8", "replace")
    # Every secret is tried (no early exit), so the timing says nothing about which matched.
    matches = [
        hmac.compare_digest(offered, token_for(campaign_id, s).encode()) for s in server_secrets()
    ]
    return any(matches)


def is_server_secret(offered: str) -> bool:
    """The legacy credential: the whole server secret (current or previous), constant time."""
    value = offered.encode("utf-8", "replace")
    matches = [hmac.compare_digest(value, s.encode()) for s in server_secrets()]
    return any(matches)
