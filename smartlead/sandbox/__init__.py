"""A local Smartlead for demos, development and end-to-end tests, over real HTTP on 127.0.0.1.

`server` is the HTTP side and the test helpers (`SandboxServer`), `state` the accounts and the
rules of each route (`leads` the lead routes; `mailboxes` the mailbox routes, health and
pinning; `replies` lead categories and what leads write: auto-replies, categories, replies from
another address), `data` what it stores and how it answers; `demo.json` the demo accounts.
"""

from __future__ import annotations

from smartlead.sandbox.server import (
    DEMO_ACCOUNTS_FILE,
    SandboxServer,
    generated_accounts,
    load_accounts,
)

__all__ = ["DEMO_ACCOUNTS_FILE", "SandboxServer", "generated_accounts", "load_accounts"]
