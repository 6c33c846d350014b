"""A database connection that died between requests costs no delivery and no 500.

Health checks before every request are off (CONN_HEALTH_CHECKS; see outboundhq/db.py), so the
statements that matter retry once on a fresh connection instead.
"""

from __future__ import annotations

import json

import psycopg
import pytest
from django.conf import settings as django_settings
from django.db import OperationalError, connection, transaction

from outboundhq.db import once_more_if_disconnected
from outboundhq.views import json_exception_handler
from smartlead.models import WebhookEvent

SECRET = "whsec-dropped-4c1e9a7b2d"


def drop_this_connection() -> None:
    """What a database restart or a pooler's idle timeout does to a kept connection."""
    connection.ensure_connection()
    pid = connection.connection.info.backend_pid
    dsn = connection.connection.info.dsn
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_delivery_on_a_dropped_connection_is_stored_and_answered_200(client, settings):
    settings.SMARTLEAD_WEBHOOK_SECRET = SECRET
    settings.SMARTLEAD_WEBHOOK_APPLY_INLINE = True
    drop_this_connection()
    body = {"event_type": "EMAIL_OPEN", "campaign_id": 1, "to_email": "a@b.test", "stats_id": "d1"}
    response = client.post(
        f"/webhooks/smartlead?secret={SECRET}",
        data=json.dumps(body),
        content_type="application/json",
        secure=True,
    )
    assert response.status_code == 200, response.content
    assert WebhookEvent.objects.get(stats_id="d1").deliveries == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_health_stays_ok_when_only_the_kept_connection_was_dropped(client):
    drop_this_connection()
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json()["database"] == "ok"


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


@pytest.mark.django_db
def test_nothing_is_retried_inside_a_transaction():
    calls = []

    def failing() -> None:
        calls.append(1)
        raise OperationalError("server closed the connection unexpectedly")

    with transaction.atomic(), pytest.raises(OperationalError):
        once_more_if_disconnected(failing)
    assert calls == [1]


def test_health_checks_before_each_request_are_off_unless_asked_for():
    assert django_settings.DATABASES["default"]["CONN_HEALTH_CHECKS"] is False


def test_an_api_view_that_loses_the_database_answers_503_with_json():
    response = json_exception_handler(OperationalError("connection refused"), {"view": object()})
    assert response.status_code == 503
    assert response.data == {"error": "The database is unavailable; please retry."}
