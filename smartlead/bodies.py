"""How much of a webhook body is kept: bounded, so stored events cannot fill the database.

A delivery may be up to 1 MB (the receiver's limit) and a campaign's URL can post as many as it
likes; the reconcile pass builds bodies from whole message histories. What is kept:

- an event we act on: whole up to `KEPT_CHARS`, which Smartlead's payloads stay far below (a
  few KB, more for a reply that quotes a long thread); past that its long strings are clipped
  and long lists keep their newest items, so it is still the JSON applying reads (ids, subject,
  the first 500 characters of a reply);
- an event we do not act on (`events.ACTED_ON`): `IGNORED_CHARS`, enough to see what it was,
  and only the newest `IGNORED_KEPT_PER_SOURCE` of one caller (smartlead/views.py prunes).

Bodies are clipped after secrets are redacted, so a cut can never leave part of one in clear.
"""

from __future__ import annotations

import json
from typing import Any

from smartlead.api import events

KEPT_CHARS = 64 * 1024
IGNORED_CHARS = 4 * 1024
IGNORED_KEPT_PER_SOURCE = 100
# Added to a clipped body: the size received, so nobody mistakes it for the whole.
CLIPPED = "_outboundhq_clipped_from_chars"
# Each pass clips harder: strings to this many characters, lists to their newest items.
PASSES = ((2000, 50), (200, 10), (40, 3))


def kept(text: str, event_type: str) -> str:
    """What is stored of an accepted body (valid JSON whenever `text` is)."""
    limit = KEPT_CHARS if event_type in events.ACTED_ON else IGNORED_CHARS
    if len(text) <= limit:
        return text
    try:
        payload = json.loads(text)
    except (ValueError, RecursionError):
        return text[:limit]
    if not isinstance(payload, dict):
        return text[:limit]
    for chars, items in PASSES:
        # Every top-level field stays (identity and metadata are read from there).
        fields = {key: _clipped(value, chars, items) for key, value in payload.items()}
        shrunk = _dumps(fields | {CLIPPED: len(text)})
        if len(shrunk) <= limit:
            return shrunk
    return _top_level(payload, limit, len(text))


def _clipped(value: Any, chars: int, items: int) -> Any:
    if isinstance(value, str):
        return value if len(value) <= chars else value[:chars] + f"… [{len(value)} chars]"
    if isinstance(value, list):
        return [_clipped(v, chars, items) for v in value[-items:]]  # a thread's newest messages
    if isinstance(value, dict):
        pairs = list(value.items())[: items * 4]
        return {k[:chars]: _clipped(v, chars, items) for k, v in pairs}
    return value


def _top_level(payload: dict[str, Any], limit: int, size: int) -> str:
    """The last resort: the top level's short plain values, as many as fit."""
    kept_fields: dict[str, Any] = {CLIPPED: size}
    for key, value in payload.items():
        if isinstance(value, dict | list) or len(key) > 100:
            continue
        candidate = kept_fields | {key: _clipped(value, 100, 0)}
        if len(_dumps(candidate)) > limit:
            break
        kept_fields = candidate
    return _dumps(kept_fields)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)
