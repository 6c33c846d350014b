"""The executor's three hot statements on PostgreSQL, for the managers in sequences/managers.py.

Each is one round trip: ids travel as arrays bound on the server, which is what keeps a run's
database cost growing with batches rather than enrollments. Table names come from the models'
`db_table` and every status from their choices, so a rename in models.py reaches the SQL.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from django.apps import apps
from django.db import connection
from django.db.backends.utils import CursorWrapper


def _table(name: str) -> str:
    model = apps.get_model("sequences", name)
    return connection.ops.quote_name(model._meta.db_table)


def status_params() -> dict[str, str]:
    get = functools.partial(apps.get_model, "sequences")
    Enrollment, Sequence, Push = get("Enrollment"), get("Sequence"), get("Push")  # noqa: N806
    return {
        "active": Enrollment.Status.ACTIVE,
        "completed": Enrollment.Status.COMPLETED,
        "sequence_active": Sequence.Status.ACTIVE,
        "pending": Push.State.PENDING,
        "pushed": Push.State.PUSHED,
        "rejected": Push.State.REJECTED,
    }


@functools.cache
def claim_statement() -> str:
    # Written so the planner uses the indexes (ids as an array, a lateral lookup per contact):
    # with plain joins it hashes whole tables, and every claim grows with the ready set. It does
    # not read the ledger: reserving the leads says which are in the campaign already.
    enrollments, sequences, contacts = _table("Enrollment"), _table("Sequence"), _table("Contact")
    return f"""
WITH claimed AS (
    UPDATE {enrollments} e SET next_send_at = %(lease)s
    WHERE e.id = ANY(ARRAY(
        SELECT r.id FROM {enrollments} r
        JOIN {sequences} s ON s.id = r.sequence_id
        WHERE r.sequence_id = %(sequence)s AND s.status = %(sequence_active)s
          AND r.status = %(active)s AND r.next_send_at <= %(started)s
        LIMIT %(size)s
        FOR UPDATE OF r SKIP LOCKED
    ))
    RETURNING e.id, e.contact_id, e.current_step
)
SELECT claimed.id, claimed.contact_id, claimed.current_step, c.email, c.first_name,
       c.last_name, c.company, c.phone, c.title, c.unsubscribed_at
FROM claimed LEFT JOIN LATERAL (
    SELECT * FROM {contacts} WHERE {contacts}.id = claimed.contact_id
) c ON true
"""  # noqa: S608 - identifiers from the models' metadata; every value is a parameter


@functools.cache
def reserve_statement() -> str:
    ledger = _table("Push")
    return f"""
INSERT INTO {ledger} (enrollment_id, campaign_id, sequence_id, profile_id, email, state,
                      outcome, counts, attempts, run_id, created_at)
SELECT t.enrollment_id, %(campaign)s, %(sequence)s, %(profile)s, t.email, %(pending)s, '',
       '{{}}'::jsonb, 1, %(run)s, now()
FROM unnest(%(ids)s::uuid[], %(emails)s::text[]) AS t(enrollment_id, email)
ON CONFLICT (enrollment_id, campaign_id) DO UPDATE
    SET run_id = EXCLUDED.run_id, attempts = {ledger}.attempts + 1
    WHERE {ledger}.state IN (%(pending)s, %(rejected)s)
RETURNING enrollment_id
"""  # noqa: S608


@functools.cache
def pushed_statement() -> str:
    # A batch shares its step; step NULL means the enrollments complete.
    ledger, enrollments = _table("Push"), _table("Enrollment")
    return f"""
WITH ledger AS (
    UPDATE {ledger}
    SET state = %(pushed)s, outcome = 'added_or_existing', counts = %(counts)s,
        pushed_at = %(now)s
    WHERE campaign_id = %(campaign)s AND enrollment_id = ANY(%(ids)s::uuid[])
)
UPDATE {enrollments}
SET current_step = COALESCE(%(step)s::integer, current_step),
    next_send_at = COALESCE(%(next)s::timestamptz, next_send_at),
    status = CASE WHEN %(step)s::integer IS NULL THEN %(completed)s ELSE status END,
    completed_at = CASE WHEN %(step)s::integer IS NULL THEN %(now)s ELSE completed_at END,
    updated_at = %(now)s
WHERE id = ANY(%(ids)s::uuid[]) AND status = %(active)s AND current_step = %(from_step)s
"""  # noqa: S608


def uuid_array(ids: list[uuid.UUID]) -> str:
    """A Postgres array literal: one parameter to send instead of one per element, which psycopg
    would adapt one by one in Python (the executor's hottest loop)."""
    return "{" + ",".join(map(str, ids)) + "}"


def text_array(values: list[str]) -> str:
    quoted = ('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values)
    return "{" + ",".join(quoted) + "}"


@contextmanager
def server_bound_cursor() -> Iterator[CursorWrapper]:
    """The hot statements bind their parameters on the server: thousands of ids travel as
    arrays instead of being quoted into the query text, which cost the executor more CPU than
    the database spent. (Unnamed statements only: fine through PgBouncer/Supavisor in
    transaction mode.) Django's wrapper keeps its error translation and execute wrappers."""
    connection.ensure_connection()
    with CursorWrapper(psycopg.Cursor(connection.connection), connection) as cursor:
        yield cursor
