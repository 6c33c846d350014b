"""The migration against a copy of the hosted schema, and the local schema from nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from django.conf import settings
from django.utils import timezone

from sequences.models import ExecutorRun
from smartlead.models import WebhookEvent

ROOT = Path(__file__).resolve().parents[1]
HOSTED_TABLES = (
    "profiles",
    "contacts",
    "sequences",
    "sequence_steps",
    "sequence_enrollments",
    "engagements",
    "calls",
)

pytestmark = pytest.mark.postgres


def conninfo(dbname: str) -> str:
    db = settings.DATABASES["default"]
    return psycopg.conninfo.make_conninfo(
        host=db.get("HOST") or "127.0.0.1",
        port=db.get("PORT") or 5432,
        user=db.get("USER") or "postgres",
        password=db.get("PASSWORD") or None,
        dbname=dbname,
    )


@pytest.fixture
def scratch_db() -> Iterator[str]:
    name = f"outboundhq_scratch_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(conninfo("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(conninfo("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def migrate(dbname: str) -> subprocess.CompletedProcess[str]:
    db = settings.DATABASES["default"]
    url = (
        f"postgres://{db.get('USER') or 'postgres'}@{db.get('HOST') or '127.0.0.1'}:"
        f"{db.get('PORT') or 5432}/{dbname}"
    )
    env = os.environ | {"DATABASE_URL": url, "DJANGO_SECRET_KEY": "x" * 50}
    result = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result


def hosted_shape(dbname: str) -> dict[str, set[tuple]]:
    """Columns, constraints and indexes of the hosted tables, for before/after comparison."""
    with psycopg.connect(conninfo(dbname)) as conn:
        columns = set(
            conn.execute(
                "SELECT table_name, column_name, data_type, is_nullable, column_default "
                "FROM information_schema.columns WHERE table_schema = 'public' "
                "AND table_name = ANY(%s)",
                [list(HOSTED_TABLES)],
            ).fetchall()
        )
        constraints = set(
            conn.execute(
                "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) "
                "FROM pg_constraint WHERE conrelid::regclass::text = ANY(%s)",
                [list(HOSTED_TABLES)],
            ).fetchall()
        )
        indexes = set(
            conn.execute(
                "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' "
                "AND tablename = ANY(%s)",
                [list(HOSTED_TABLES)],
            ).fetchall()
        )
    return {"columns": columns, "constraints": constraints, "indexes": indexes}


def load_hosted_copy(dbname: str) -> None:
    with psycopg.connect(conninfo(dbname), autocommit=True) as conn:
        conn.execute((ROOT / "migrations" / "supabase_schema.sql").read_text())


def test_migrate_on_the_hosted_schema_adds_exactly_the_two_columns(scratch_db):
    load_hosted_copy(scratch_db)
    before = hosted_shape(scratch_db)
    migrate(scratch_db)
    after = hosted_shape(scratch_db)
    assert after["constraints"] == before["constraints"]
    assert after["indexes"] == before["indexes"]
    added = {(c[0], c[1], c[2]) for c in after["columns"] - before["columns"]}
    assert added == {
        ("profiles", "smartlead_api_key", "text"),
        ("profiles", "smartlead_email_account_id", "text"),
    }
    assert before["columns"] <= after["columns"]


def test_migrate_twice_changes_nothing_the_second_time(scratch_db):
    load_hosted_copy(scratch_db)
    migrate(scratch_db)
    first = hosted_shape(scratch_db)
    second_run = migrate(scratch_db)
    assert "No migrations to apply" in second_run.stdout
    assert hosted_shape(scratch_db) == first


def test_migrate_is_safe_when_someone_already_ran_the_sql_by_hand(scratch_db):
    load_hosted_copy(scratch_db)
    with psycopg.connect(conninfo(scratch_db), autocommit=True) as conn:
        conn.execute((ROOT / "migrations" / "DATABASE_MIGRATION.sql").read_text())
    before = hosted_shape(scratch_db)
    migrate(scratch_db)
    assert hosted_shape(scratch_db) == before


def test_migrate_on_an_empty_database_builds_the_hosted_shape(scratch_db):
    migrate(scratch_db)
    reference = f"{scratch_db}_ref"
    with psycopg.connect(conninfo("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{reference}"')
    try:
        load_hosted_copy(reference)
        with psycopg.connect(conninfo(reference), autocommit=True) as conn:
            conn.execute((ROOT / "migrations" / "DATABASE_MIGRATION.sql").read_text())
        assert hosted_shape(scratch_db) == hosted_shape(reference)
    finally:
        with psycopg.connect(conninfo("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{reference}" WITH (FORCE)')


@pytest.mark.django_db
def test_the_test_database_itself_was_built_by_the_real_sql():
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = 'sequences'::regclass AND contype = 'c'"
        )
        checks = " ".join(row[0] for row in cursor.fetchall())
    assert "'archived'::text" in checks


@pytest.mark.django_db
def test_rows_written_by_the_previous_version_during_a_deploy_still_insert():
    """The previous version keeps answering while a deploy rolls out, and its raw INSERTs do
    not name the columns added since; each new NOT NULL column has a database default."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO smartlead_webhook_event (received_at, last_received_at, deliveries, "
            "dedupe_key, event_type, lead_email, stats_id, outcome, detail, attempts, headers, "
            "raw_body) VALUES (%s, %s, 1, 'old-version', 'EMAIL_OPEN', '', '', 'received', '', "
            "0, '{}', '{}')",
            [timezone.now(), timezone.now()],
        )
        cursor.execute(
            "INSERT INTO outboundhq_executor_run (id, trigger, dry_run, started_at, due, pushed, "
            "skipped_no_credentials, failed, call_tasks, completed, advanced, deferred, "
            "campaigns_provisioned, smartlead_requests, skipped, errors) VALUES (%s, 'schedule', "
            "false, %s, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, '{}', '[]')",
            [uuid.uuid4().hex if connection.vendor == "sqlite" else uuid.uuid4(), timezone.now()],
        )
    assert WebhookEvent.objects.get(dedupe_key="old-version").source == ""
    assert ExecutorRun.objects.get().propagated == 0
