"""A database connection that died between requests costs no delivery and no 500.

The web processes skip Django's per-request connection health check (gunicorn.conf.py), so the
statements that matter there retry once on a fresh connection instead (outboundhq/db.py).
"""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from django.db import OperationalError, connection, transaction

from outboundhq.db import once_more_if_disconnected
from outboundhq.views import json_exception_handler
from smartlead.api import tokens
from smartlead.models import WebhookEvent

ROOT = Path(__file__).resolve().parents[1]
SECRET = "whsec-dropped-4c1e9a7b2d"


@pytest.fixture
def web_process_connection() -> Iterator[None]:
    """The connection as the web processes have it: no health check before a request."""
    connection.settings_dict["CONN_HEALTH_CHECKS"] = False
    connection.close()
    yield
    connection.settings_dict["CONN_HEALTH_CHECKS"] = True
    connection.close()


def drop_this_connection() -> int:
    """What a database restart or a pooler's idle timeout does to a kept connection; returns the
    backend's pid. Waits until the backend is really gone."""
    connection.ensure_connection()
    pid = connection.connection.info.backend_pid
    with psycopg.connect(**connection.get_connection_params(), autocommit=True) as admin:
        gone = admin.execute("SELECT pg_terminate_backend(%s, 5000)", [pid]).fetchone()[0]
    assert gone
    return pid


def backend_pid() -> int:
    return connection.connection.info.backend_pid


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_delivery_on_a_dropped_connection_is_stored_and_answered_200(
    client, settings, web_process_connection
):
    settings.SMARTLEAD_WEBHOOK_SECRET = SECRET
    dropped = drop_this_connection()
    body = {"event_type": "EMAIL_OPEN", "campaign_id": 1, "to_email": "a@b.test", "stats_id": "d1"}
    response = client.post(
        f"/webhooks/smartlead?campaign=1&token={tokens.token_for(1, SECRET)}",
        data=json.dumps(body),
        content_type="application/json",
        secure=True,
    )
    assert response.status_code == 200, response.content
    assert backend_pid() != dropped  # it really went through a second connection
    assert WebhookEvent.objects.get(stats_id="d1").deliveries == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_health_stays_ok_when_only_the_kept_connection_was_dropped(client, web_process_connection):
    dropped = drop_this_connection()
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json()["database"] == "ok"
    assert backend_pid() != dropped


@pytest.mark.django_db(transaction=True)
def test_a_dead_connection_is_replaced_and_the_work_run_once_more(monkeypatch):
    connection.ensure_connection()
    monkeypatch.setattr(connection, "is_usable", lambda: False)
    calls = []

    def first_time_fails() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("server closed the connection unexpectedly")
        return "done"

    assert once_more_if_disconnected(first_time_fails) == "done"
    assert calls == [1, 1]


@pytest.mark.django_db(transaction=True)
def test_an_error_on_a_working_connection_is_not_retried():
    connection.ensure_connection()
    calls = []

    def lock_timeout() -> None:
        calls.append(1)
        raise OperationalError("canceling statement due to lock timeout")

    with pytest.raises(OperationalError):
        once_more_if_disconnected(lock_timeout)
    assert calls == [1]


@pytest.mark.django_db(transaction=True)
def test_nothing_is_retried_inside_a_transaction(monkeypatch):
    connection.ensure_connection()
    monkeypatch.setattr(connection, "is_usable", lambda: False)
    calls = []

    def failing() -> None:
        calls.append(1)
        raise OperationalError("server closed the connection unexpectedly")

    with transaction.atomic(), pytest.raises(OperationalError):
        once_more_if_disconnected(failing)
    assert calls == [1]


def health_checks_setting(**env: str) -> str:
    base = {k: v for k, v in os.environ.items() if not k.startswith("DATABASE_CONN_HEALTH")}
    code = "from django.conf import settings; print(settings.DATABASE_CONN_HEALTH_CHECKS)"
    result = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        cwd=ROOT,
        env=base | {"DJANGO_SETTINGS_MODULE": "outboundhq.settings"} | env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout.strip()


def test_commands_and_the_worker_keep_health_checks_and_the_web_server_turns_them_off(
    monkeypatch,
):
    assert health_checks_setting() == "True"
    assert health_checks_setting(DATABASE_CONN_HEALTH_CHECKS="false") == "False"
    # setenv first, so that whatever gunicorn.conf.py sets is undone after the test.
    monkeypatch.setenv("DATABASE_CONN_HEALTH_CHECKS", "unset")
    monkeypatch.delenv("DATABASE_CONN_HEALTH_CHECKS")
    runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    assert os.environ["DATABASE_CONN_HEALTH_CHECKS"] == "false"


def test_the_api_exception_handler_answers_503_when_the_database_is_gone():
    response = json_exception_handler(OperationalError("connection refused"), {"view": object()})
    assert response.status_code == 503
    assert response.data == {"error": "The database is unavailable; please retry."}
