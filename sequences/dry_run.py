"""`execute_sequences --dry-run`: what a run would do, said in words, with nothing changed.

It looks at the same SDRs and sequences a run would (`executor.plan`), reads their ready
enrollments without claiming them (`Enrollment.objects.peek`) and asks the same step rule the
run uses (`steps.decide`) what each would do. It writes nothing and sends nothing to Smartlead,
so it can run at any time, even beside a real run.
"""

from __future__ import annotations

import uuid
from collections import Counter

from django.utils import timezone

from profiles.credentials import NOT_CONNECTED
from profiles.models import Profile
from sequences.context import Sdr
from sequences.models import Engagement, Enrollment, ExecutorRun
from sequences.steps import Action, Steps, decide

# How each decision is counted on the run record, as a real run would count it.
COUNTED_AS: dict[Action, str | None] = {
    Action.PUSH: "pushed",
    Action.FOLLOW_UP: "advanced",
    Action.SKIP: "advanced",
    Action.CALL: "call_tasks",
    Action.COMPLETE: "completed",
    Action.UNSUBSCRIBED: None,  # ended, but a run counts no figure for it
    Action.FAIL: "failed",
}


def dry_run(
    *,
    trigger: str,
    waiting: list[tuple[uuid.UUID | None, int]],
    sdrs: list[Sdr],
    limit: int | None,
) -> ExecutorRun:
    """What a run would do now: `waiting` are the not-connected SDRs' ready counts, `sdrs` the
    plan of a real run. Returns an unsaved run record with its `plan_lines`."""
    record = ExecutorRun(trigger=trigger, dry_run=True, finished_at=timezone.now())
    record.plan_lines = []  # what would happen, in words; a dry run saves nothing
    creators = [creator for creator, _ in waiting if creator is not None]
    names = {s.profile_id: s.name for s in Profile.objects.senders(creators)} if creators else {}
    for creator, count in waiting:
        record.skipped_no_credentials += count
        if creator is None:
            record.plan_lines.append(f"{count} enrollments belong to sequences without a creator")
        else:
            record.plan_lines.append(NOT_CONNECTED % names[creator])
    budget = limit
    now = timezone.now()
    for sdr in sdrs:
        for sequence in sdr.sequences:
            if budget is not None and budget <= 0:
                return record
            steps = Steps(sequence.steps.all())
            rows = Enrollment.objects.peek(
                sequence_id=sequence.id, campaign_id=sequence.campaign, at=now, size=budget
            )
            budget = None if budget is None else budget - len(rows)
            signals = (
                Engagement.objects.signals_for(sequence.id, rows) if steps.has_conditions else {}
            )
            actions = Counter(
                (row.current_step, decide(steps, row, signals.get(row.id, frozenset())).action)
                for row in rows
            )
            record.due += len(rows)
            for (step, action), n in sorted(actions.items()):
                counter = COUNTED_AS[action]
                if counter:
                    setattr(record, counter, getattr(record, counter) + n)
                record.plan_lines.append(
                    f"Sequence {sequence.id} step {step}: {what(action, n, sequence.campaign)}"
                )
    return record


def what(action: Action, n: int, campaign_id: int | None) -> str:
    campaign = campaign_id or "(to be provisioned)"
    return {
        Action.PUSH: f"push up to {n} leads to campaign {campaign}",
        Action.FOLLOW_UP: f"advance {n} past a follow-up email Smartlead sends itself",
        Action.SKIP: f"skip {n} whose step conditions are not met",
        Action.CALL: f"create {n} call tasks",
        Action.COMPLETE: f"complete {n} (no steps left)",
        Action.UNSUBSCRIBED: f"end {n}: the contact unsubscribed",
        Action.FAIL: f"fail {n}: the email address cannot be sent to",
    }[action]
