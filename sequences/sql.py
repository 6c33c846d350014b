"""The executor's three hot statements on PostgreSQL, one round trip each.

Claiming a chunk, reserving its ledger rows and recording a pushed batch run once per chunk or
batch, for every enrollment the executor touches; doing each as a single statement (ids passed
as arrays, not thousands of parameters) is what keeps a run's database cost growing with
batches rather than enrollments. walk.py uses the ORM equivalents on SQLite.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import psycopg
from django.db import connection
from django.db.backends.utils import CursorWrapper

# Written so the planner uses the indexes (ids as an array, a lateral lookup per contact):
# with plain joins it hashes whole tables, and every claim grows with the ready set.
CLAIM = """
WITH claimed AS (
    UPDATE sequence_enrollments e SET next_send_at = %(lease)s
    WHERE e.id = ANY(ARRAY(
        SELECT r.id FROM sequence_enrollments r
        JOIN sequences s ON s.id = r.sequence_id
        WHERE r.sequence_id = %(sequence)s AND s.status = 'active'
          AND r.status = 'active' AND r.next_send_at <= %(started)s
        LIMIT %(size)s
        FOR UPDATE OF r SKIP LOCKED
    ))
    RETURNING e.id, e.contact_id, e.current_step
)
SELECT claimed.id, claimed.contact_id, claimed.current_step, c.email, c.first_name,
       c.last_name, c.company, c.phone, c.title, c.unsubscribed_at
FROM claimed LEFT JOIN LATERAL (
    SELECT * FROM contacts WHERE contacts.id = claimed.contact_id
) c ON true
"""

# New rows, `pending` ones left by an interrupted run and `rejected` ones (the contact was
# fixed and re-activated) come back: those are sent. A row already `pushed` does not come back,
# so that enrollment is never sent twice.
RESERVE = """
INSERT INTO outboundhq_push (enrollment_id, campaign_id, sequence_id, profile_id, email, state,
                             outcome, counts, attempts, run_id, created_at)
SELECT t.enrollment_id, %(campaign)s, %(sequence)s, %(profile)s, t.email, 'pending', '',
       '{}'::jsonb, 1, %(run)s, now()
FROM unnest(%(ids)s::uuid[], %(emails)s::text[]) AS t(enrollment_id, email)
ON CONFLICT (enrollment_id, campaign_id) DO UPDATE
    SET attempts = outboundhq_push.attempts + 1, run_id = EXCLUDED.run_id
    WHERE outboundhq_push.state IN ('pending', 'rejected')
RETURNING enrollment_id
"""

# One pushed batch: its ledger rows become `pushed` and its enrollments advance (step NULL:
# completed) in one statement, so all of it happens or none. A batch shares its step.
PUSHED = """
WITH ledger AS (
    UPDATE outboundhq_push
    SET state = 'pushed', outcome = 'added_or_existing', counts = %(counts)s::jsonb,
        pushed_at = %(now)s
    WHERE campaign_id = %(campaign)s AND enrollment_id = ANY(%(ids)s::uuid[])
)
UPDATE sequence_enrollments
SET current_step = COALESCE(%(step)s::integer, current_step),
    next_send_at = COALESCE(%(next)s::timestamptz, next_send_at),
    status = CASE WHEN %(step)s::integer IS NULL THEN 'completed' ELSE status END,
    completed_at = CASE WHEN %(step)s::integer IS NULL THEN %(now)s ELSE completed_at END,
    updated_at = %(now)s
WHERE id = ANY(%(ids)s::uuid[]) AND status = 'active' AND current_step = %(from_step)s
"""


def uuid_array(ids: list[uuid.UUID]) -> str:
    """A Postgres array literal: one parameter to send instead of one per element, which psycopg
    would adapt one by one in Python (the executor's hottest loop)."""
    return "{" + ",".join(map(str, ids)) + "}"


def text_array(values: list[str]) -> str:
    quoted = ('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values)
    return "{" + ",".join(quoted) + "}"


@contextmanager
def _cursor() -> Iterator[CursorWrapper]:
    """These statements bind their parameters on the server: thousands of ids travel as arrays
    instead of being quoted into the query text, which cost the executor more CPU than the
    database spent. (Unnamed statements only: fine through PgBouncer/Supavisor in transaction
    mode.) Django's wrapper keeps its error translation and the run's round-trip counter."""
    connection.ensure_connection()
    with CursorWrapper(psycopg.Cursor(connection.connection), connection) as cursor:
        yield cursor


def claim(
    sequence_id: uuid.UUID, started: datetime, size: int, lease_until: datetime
) -> list[tuple]:
    with _cursor() as cursor:
        cursor.execute(
            CLAIM,
            {"sequence": sequence_id, "started": started, "size": size, "lease": lease_until},
        )
        return cursor.fetchall()


def reserve(
    *,
    campaign_id: int,
    sequence_id: uuid.UUID,
    profile_id: uuid.UUID,
    run_id: uuid.UUID,
    ids: list[uuid.UUID],
    emails: list[str],
) -> set[uuid.UUID]:
    with _cursor() as cursor:
        cursor.execute(
            RESERVE,
            {
                "campaign": campaign_id,
                "sequence": sequence_id,
                "profile": profile_id,
                "run": run_id,
                "ids": uuid_array(ids),
                "emails": text_array(emails),
            },
        )
        return {row[0] for row in cursor.fetchall()}


def pushed(
    *,
    campaign_id: int,
    ids: list[uuid.UUID],
    counts: str,
    from_step: int,
    step: int | None,
    next_send_at: datetime | None,
    now: datetime,
) -> int:
    """Returns how many enrollments moved (one replied to or paused meanwhile stays as it is)."""
    with _cursor() as cursor:
        cursor.execute(
            PUSHED,
            {
                "campaign": campaign_id,
                "ids": uuid_array(ids),
                "counts": counts,
                "from_step": from_step,
                "step": step,
                "next": next_send_at,
                "now": now,
            },
        )
        return cursor.rowcount
