"""The registry of secrets redacted from every log line: bounded, and never forgetting the
service's own secrets or a key a client is using, however many keys SDRs try."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import responses

from outboundhq import logs
from smartlead.api import SmartleadClient

WEBHOOK_SECRET = "whsec-pinned-6b5a4c3d2e1f"
CRON_SECRET = "cron-pinned-0f1e2d3c4b5a"


@pytest.fixture(autouse=True)
def _fresh_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test fills its own registry; the session's stays as it was."""
    monkeypatch.setattr(logs, "_pinned", set())
    monkeypatch.setattr(logs, "_recent", OrderedDict())


def flood(count: int, prefix: str = "sdr-flood-key") -> None:
    for n in range(count):
        logs.register_secret(f"{prefix}-{n:06d}-abcdefgh")


def test_pinned_secrets_survive_any_number_of_sdr_keys():
    logs.register_secret(WEBHOOK_SECRET, pinned=True)
    logs.register_secret(CRON_SECRET, pinned=True)
    flood(logs.MAX_KNOWN + 1)
    line = logs.redact(f"posted with {WEBHOOK_SECRET} and Bearer {CRON_SECRET}")
    assert WEBHOOK_SECRET not in line and CRON_SECRET not in line
    assert len(logs.known_secrets()) == logs.MAX_KNOWN + 2


def test_the_registry_never_holds_more_than_its_bound(monkeypatch):
    monkeypatch.setattr(logs, "MAX_KNOWN", 100)
    flood(1000)
    assert len(logs.known_secrets()) == 100
    newest = "sdr-flood-key-000999-abcdefgh"
    assert logs.redact(newest) == logs.mask(newest)
    assert "sdr-flood-key-000000-abcdefgh" not in logs.known_secrets()  # the oldest went


def test_a_key_registered_again_is_kept_over_keys_nobody_used_since(monkeypatch):
    monkeypatch.setattr(logs, "MAX_KNOWN", 100)
    live = "sl-live-key-of-a-working-sdr-1234"
    logs.register_secret(live)
    for burst in range(10):
        flood(50, prefix=f"burst{burst}")
        logs.register_secret(live)  # what every client call does
    assert live in logs.known_secrets()


def test_a_client_touches_its_key_on_every_call(monkeypatch, rsps):
    monkeypatch.setattr(logs, "MAX_KNOWN", 10)
    key = "sl-key-in-use-by-a-client-5678"
    rsps.add(responses.GET, "https://smartlead.test/api/v1/campaigns/", json=[])
    with SmartleadClient(key, base_url="https://smartlead.test/api/v1") as client:
        flood(50)  # an SDR trying keys meanwhile
        assert key not in logs.known_secrets()
        client.list_campaigns()
        assert key in logs.known_secrets()
        assert logs.redact(f"a traceback quoting {key}") == f"a traceback quoting {logs.mask(key)}"


def test_a_pinned_secret_is_not_counted_or_evicted_as_a_recent_one(monkeypatch):
    monkeypatch.setattr(logs, "MAX_KNOWN", 5)
    logs.register_secret(WEBHOOK_SECRET, pinned=True)
    logs.register_secret(WEBHOOK_SECRET)  # the same value coming in as an SDR key
    flood(20)
    assert WEBHOOK_SECRET in logs.known_secrets()
    assert len(logs.known_secrets()) == 6
