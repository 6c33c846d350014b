"""Shared fixtures. The suite runs on PostgreSQL when DATABASE_URL points at one, else SQLite.

With OUTBOUNDHQ_REQUIRE_POSTGRES=1 (CI) a run on anything but Postgres stops at once, and a run
that skipped any test fails: a Postgres test that did not run is a gap, not a pass.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import responses
from django.db import connection
from django.test import override_settings

from outboundhq.logs import RedactSecretsFilter, known_secrets

REQUIRE_POSTGRES = os.environ.get("OUTBOUNDHQ_REQUIRE_POSTGRES") == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    on_postgres = connection.vendor == "postgresql"
    if REQUIRE_POSTGRES and not on_postgres:
        raise pytest.UsageError(
            "OUTBOUNDHQ_REQUIRE_POSTGRES=1 but DATABASE_URL is not PostgreSQL "
            f"(vendor: {connection.vendor})."
        )
    if not on_postgres:
        skip = pytest.mark.skip(reason="needs PostgreSQL (set DATABASE_URL to a postgres:// URL)")
        for item in items:
            if "postgres" in item.keywords:
                item.add_marker(skip)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if REQUIRE_POSTGRES and skipped and session.exitstatus == 0:
        reporter.write_line(f"FAILED: {skipped} test(s) skipped; CI requires every test to run.")
        session.exitstatus = 1
    if _watch.leaks and session.exitstatus == 0:
        session.exitstatus = 1


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    """Smartlead faked at the HTTP seam: a URL no test registered answers a connection error."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture(autouse=True)
def _plain_static_storage(settings) -> None:  # noqa: ANN001 - pytest-django's fixture
    """Production uses a manifest built by collectstatic; unit tests don't run collectstatic."""
    settings.STORAGES = settings.STORAGES | {
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}
    }


# --- Smartlead (client and sandbox) --------------------------------------------------------
class FakeSmartleadClock:
    """Time for the Smartlead client (and a sandbox given `.monotonic`): sleeping advances it."""

    def __init__(self) -> None:
        self.now = 10_000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)


def hosted_models() -> tuple[type, ...]:
    """The hosted (unmanaged) tables, children first, so rows go without breaking a reference."""
    from profiles.models import CredentialCheck, Profile
    from sequences.models import CallTask, Contact, Engagement, Enrollment, Sequence, SequenceStep

    return (
        Engagement,
        CallTask,
        Enrollment,
        SequenceStep,
        Sequence,
        Contact,
        CredentialCheck,
        Profile,
    )


@pytest.fixture(autouse=True)
def _no_hosted_rows_left(request: pytest.FixtureRequest) -> Iterator[None]:
    """The flush after a transactional test skips the hosted (unmanaged) tables, so their rows
    would meet the next tests: sequences of other SDRs naming the same campaign, for one."""
    yield
    marker = request.node.get_closest_marker("django_db")
    transactional = marker is not None and marker.kwargs.get("transaction", False)
    if not (transactional or "transactional_db" in request.fixturenames):
        return
    with request.getfixturevalue("django_db_blocker").unblock():
        for model in hosted_models():
            model._base_manager.all().delete()


@pytest.fixture(autouse=True)
def _fresh_smartlead_limiters() -> None:
    """The client's per-key limiter is process-wide: start each test with no request history."""
    from smartlead.api import reset_rate_limiters

    reset_rate_limiters()


@pytest.fixture
def smartlead_clock(monkeypatch: pytest.MonkeyPatch) -> FakeSmartleadClock:
    """The client's clock, sleep and jitter, faked: retries and limiter waits cost no real time."""
    from smartlead.api import limits

    clock = FakeSmartleadClock()
    monkeypatch.setattr(limits, "_clock", clock.monotonic)
    monkeypatch.setattr(limits, "_sleep", clock.sleep)
    monkeypatch.setattr(limits, "_random", lambda: 0.5)
    return clock


Accounts = list[dict[str, Any]] | dict[str, list[int]]


@pytest.fixture
def make_sandbox(settings) -> Iterator[Callable[..., Any]]:  # noqa: ANN001 - pytest-django's
    """Starts a Smartlead sandbox for the test and points the client at it (stopped after the
    test). `accounts`: the demo file's when None, account dicts, or {key: [mailbox ids]} for
    pro-plan accounts; other keywords go to SandboxServer (rate limits, clock, latency...). The
    executor and the reconcile pass run their SDRs on the test's own thread: workers' own
    database connections would not see the test's uncommitted rows."""
    from smartlead.sandbox import SandboxServer, load_accounts

    started: list[SandboxServer] = []

    def make(accounts: Accounts | None = None, **options: Any) -> SandboxServer:
        if accounts is None:
            accounts = load_accounts()
        elif isinstance(accounts, dict):
            accounts = [
                {"api_key": key, "plan": "pro", "email_accounts": [{"id": i} for i in mailboxes]}
                for key, mailboxes in accounts.items()
            ]
        server = SandboxServer(accounts, **options).start()
        started.append(server)
        settings.SMARTLEAD_BASE_URL = server.base_url
        settings.EXECUTOR_CONCURRENCY = settings.RECONCILE_CONCURRENCY = 1
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def smartlead_sandbox(make_sandbox: Callable[..., Any]) -> Any:
    """The sandbox serving smartlead/sandbox/demo.json, with SMARTLEAD_BASE_URL pointing at it."""
    return make_sandbox()


@pytest.fixture(autouse=True)
def _heartbeat_stops_with_the_test() -> Iterator[None]:
    """A worker's heartbeat thread (sequences/workers.py) beats into the test database on its
    own connection: it stops with the test that started it, before the next test (which may
    not use the database) or the database's teardown."""
    yield
    from sequences.workers import stop_heartbeat

    stop_heartbeat()


@pytest.fixture(autouse=True)
def _tasks_run_inline(monkeypatch: pytest.MonkeyPatch) -> None:
    """A task the code enqueues (a run shared out to django-q2) runs at once, in the test's
    thread: the tests with real qcluster processes (tests/test_scale_out.py) start their own."""
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", True)


@pytest.fixture(autouse=True)
def _empty_cache() -> None:
    """The dashboard keeps its figures for a minute: each test starts with none kept."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture(scope="session", autouse=True)
def _plain_http_live_server() -> Iterator[None]:
    """The live server's middleware reads SECURE_SSL_REDIRECT once, when the session-wide server
    starts, before any test's own settings (the browser tests, the sandbox's webhooks to our
    receiver): it must start without the HTTPS redirect."""
    with override_settings(SECURE_SSL_REDIRECT=False):
        yield


@pytest.fixture(autouse=True)
def _no_https_redirect(settings) -> None:  # noqa: ANN001 - pytest-django's fixture
    """Production redirects plain HTTP to HTTPS; the test client speaks plain HTTP."""
    settings.SECURE_SSL_REDIRECT = False


class _SecretWatch(logging.Handler):
    """Sees every log record of the run as a handler writes it, and keeps any that still holds a
    registered secret (an SDR's key, the webhook or cron secret) after redaction."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.addFilter(RedactSecretsFilter())
        self.leaks: list[str] = []
        self.seen = 0

    def emit(self, record: logging.LogRecord) -> None:
        text = self.format(record)
        self.seen += 1
        if any(secret in text for secret in known_secrets()):
            self.leaks.append(f"{record.name}: {record.levelname}")


_watch = _SecretWatch()


def pytest_sessionstart(session: pytest.Session) -> None:
    logging.getLogger().addHandler(_watch)


def pytest_unconfigure(config: pytest.Config) -> None:
    logging.getLogger().removeHandler(_watch)


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:  # noqa: ANN001
    terminalreporter.write_line(
        f"Log capture: {_watch.seen} records checked for secrets, {len(_watch.leaks)} leaked."
    )
    if _watch.leaks:
        terminalreporter.write_line("FAILED: secrets in logs from " + ", ".join(_watch.leaks[:10]))
