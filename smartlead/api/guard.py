"""Sandbox keys never reach the real Smartlead.

The sandbox's accounts (smartlead/sandbox/demo.json, and the keys tests and benchmarks make up)
all start with `sandbox-`, and the demo stores them on its SDRs. A development setting that
forgets SMARTLEAD_BASE_URL (DJANGO_DEBUG=true alone, say) would send a demo database's leads to
Smartlead itself with them: the client refuses before any request leaves.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from smartlead.api.errors import SmartleadError

SANDBOX_PREFIX = "sandbox-"
REAL_DOMAIN = "smartlead.ai"


def refuse_sandbox_key(base_url: str, api_key: str) -> None:
    """Raises (a permanent SmartleadError, never a verdict on the SDR's key) when a sandbox key
    is about to go to a smartlead.ai host."""
    host = (urlsplit(base_url).hostname or "").lower()
    real = host == REAL_DOMAIN or host.endswith("." + REAL_DOMAIN)
    if real and api_key.startswith(SANDBOX_PREFIX):
        raise SmartleadError(
            f"Refused to send a sandbox key to the real Smartlead at {host}: set "
            "SMARTLEAD_BASE_URL to the sandbox's URL (scripts/demo writes it to .env).",
            permanent=True,
        )
