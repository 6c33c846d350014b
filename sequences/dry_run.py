"""`execute_sequences --dry-run`: what a run would do, said in words, with nothing changed.

It reads the ready set grouped by sequence and step; it claims nothing, writes nothing and sends
nothing to Smartlead, so it can run at any time, even beside a real run.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from typing import Any

from django.db.models import Count, Q
from django.utils import timezone

from sequences.models import Enrollment, ExecutorRun, Sequence, SequenceStep, StepType


def dry_run(*, trigger: str, scope_q: Q, limit: int | None) -> ExecutorRun:
    """What a run would do, from the ready set by step, without claiming or sending anything."""
    record = ExecutorRun(trigger=trigger, dry_run=True, finished_at=timezone.now())
    record.plan_lines = []  # what would happen, in words; a dry run saves nothing
    ready = Enrollment.objects.ready().filter(sequence__in=Sequence.objects.filter(scope_q))
    rows = (
        ready.values(
            "sequence_id",
            "sequence__created_by",
            "sequence__created_by__smartlead_api_key",
            "sequence__created_by__smartlead_email_account_id",
            "sequence__smartlead_campaign_id",
            "current_step",
        )
        .annotate(n=Count("id"))
        .order_by()
    )
    steps = _step_types(ready)
    budget = limit
    for row in rows:
        n = row["n"] if budget is None else min(row["n"], budget)
        budget = None if budget is None else budget - n
        _describe(record, row, n, steps.get(row["sequence_id"], {}))
    return record


def _step_types(ready: Any) -> dict[uuid.UUID, dict[int, str]]:
    steps: dict[uuid.UUID, dict[int, str]] = defaultdict(dict)
    rows = SequenceStep.objects.filter(sequence_id__in=ready.values("sequence_id"))
    for sequence_id, number, kind in rows.values_list("sequence_id", "step_number", "step_type"):
        steps[sequence_id][number] = kind
    return steps


def _describe(record: ExecutorRun, row: dict[str, Any], n: int, steps: dict[int, str]) -> None:
    if n <= 0:
        return
    creator = row["sequence__created_by"]
    if (
        not row["sequence__created_by__smartlead_api_key"]
        or not row["sequence__created_by__smartlead_email_account_id"]
    ):
        record.skipped_no_credentials += n
        record.plan_lines.append(f"User {creator} has not connected their Smartlead account")
        return
    record.due += n
    kind = steps.get(row["current_step"])
    emails = sorted(k for k, v in steps.items() if v == StepType.EMAIL)
    campaign = row["sequence__smartlead_campaign_id"] or "(to be provisioned)"
    if kind is None:
        record.completed += n
        action = "complete"
    elif kind == StepType.CALL:
        record.call_tasks += n
        action = f"create {n} call tasks"
    elif emails and row["current_step"] == emails[0]:
        record.pushed += n
        action = f"push up to {n} leads to campaign {campaign}"
    else:
        record.advanced += n
        action = "advance past a follow-up email Smartlead sends itself"
    record.plan_lines.append(f"Sequence {row['sequence_id']} step {row['current_step']}: {action}")
