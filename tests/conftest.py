"""Shared fixtures. The suite runs on PostgreSQL when DATABASE_URL points at one, else SQLite.

With OUTBOUNDHQ_REQUIRE_POSTGRES=1 (CI) a run on anything but Postgres stops at once, and a run
that skipped any test fails: a Postgres test that did not run is a gap, not a pass.
"""

from __future__ import annotations

import os

import pytest
from django.db import connection

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


@pytest.fixture(autouse=True)
def _plain_static_storage(settings) -> None:  # noqa: ANN001 - pytest-django's fixture
    """Production uses a manifest built by collectstatic; unit tests don't run collectstatic."""
    settings.STORAGES = settings.STORAGES | {
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}
    }
