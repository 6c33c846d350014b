"""Steps 3b-3e of an executor run, for one sequence of one SDR (see sequences/executor.py).

`send_sequence` reads top to bottom:
b. `claimed_chunks`: ready enrollments leased in chunks (`Enrollment.objects.claim`), so
   concurrent runs never share one;
c. `carry_out`: each enrollment's due step decided (`steps.decide`) and carried out for the
   whole chunk at once: advances, completions, failures, call tasks; the leads to push get their
   ledger rows (`Push.objects.reserve`) before any request;
d. `push`: the leads in full batches, one add-leads request each (`SmartleadClient.add_leads`),
   sent on the worker's sending thread;
e. `settle` → `recording.record`: what Smartlead said about each batch, written to the ledger
   and the enrollments (sequences/recording.py).
While one batch is in flight, the batch before it is recorded (d of one batch overlaps e of the
previous one), and a sequence's last batch is recorded once the worker has claimed and sent the
next sequence's first: Smartlead and the database work at the same time, and all database work
stays on the worker's thread. Writes are per chunk or per batch, so the number of SQL
statements grows with batches, not with enrollments.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterator

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from sequences.models import (
    CallTask,
    Engagement,
    Enrollment,
    EnrollmentStatus,
    Push,
    lease_length,
)
from sequences.recording import give_back, not_sent, record
from sequences.steps import (
    ENDS,
    FOLLOW_UP,
    MOVES_ON,
    PUSH,
    Action,
    Claimed,
    Decision,
    Move,
    decide,
)
from sequences.work import Answer, InFlight, Sender, SequenceWork, Tally, start_sending
from smartlead.api import AddLeadsResult, ValidationFailed

__all__ = ["Sender", "SequenceWork", "Tally", "send_sequence", "settle_last"]
NONE: frozenset[str] = frozenset()  # no engagement signals


def send_sequence(work: SequenceWork) -> None:
    """Steps 3b-3e for one sequence. Its last batch may still be out when this returns: the
    worker records it while claiming the next sequence's work."""
    size = work.client.batch_size
    leads: list[Claimed] = []
    try:
        for chunk in claimed_chunks(work, size):  # b
            leads += carry_out(work, chunk)  # c
            while len(leads) >= size and not work.halted:
                batch, leads = leads[:size], leads[size:]
                push(work, batch)  # d, and e of the batch before
        if leads and not work.halted:
            batch, leads = leads, []
            push(work, batch)
    finally:
        if leads:  # claimed and reserved, but nothing more can be sent: give them back
            give_back(work, leads)


def claimed_chunks(work: SequenceWork, batch: int) -> Iterator[list[Claimed]]:
    """Step 3b: chunks of leased enrollments until none is ready, the quota is used or the
    run must stop. A chunk is a multiple of the batch size, so chunk boundaries never cost
    an extra request."""
    size = max(batch, settings.EXECUTOR_CHUNK_SIZE // batch * batch)
    run = work.run
    while not work.stopped:
        wanted = run.take(size)
        chunk = claim(work, wanted) if wanted else []
        run.give_back(wanted - len(chunk))
        work.tally.due += len(chunk)
        if chunk:
            yield chunk
        if len(chunk) < wanted or not wanted:
            return


def claim(work: SequenceWork, size: int) -> list[Claimed]:
    return Enrollment.objects.claim(
        sequence_id=work.sequence_id,
        campaign_id=work.campaign_id,
        started=work.run.started,
        size=size,
        lease_until=timezone.now() + lease_length(),
    )


def carry_out(work: SequenceWork, chunk: list[Claimed]) -> list[Claimed]:
    """Step 3c: every due step of the chunk decided and done; returns the leads to push, each
    with its `pending` ledger row."""
    signals = (
        Engagement.objects.signals_for(work.sequence_id, chunk) if work.steps.has_conditions else {}
    )
    steps = work.steps
    if signals:
        decisions = [(item, decide(steps, item, signals.get(item.id, NONE))) for item in chunk]
    else:  # the usual case: no conditions, or no engagement yet (and no id to hash per row)
        decisions = [(item, decide(steps, item)) for item in chunk]
    decisions = pushed_already(work, decisions, signals)
    to_push = [item for item, decision in decisions if decision is PUSH]
    sendable = Push.objects.reserve(
        campaign_id=work.campaign_id,
        sequence_id=work.sequence_id,
        profile_id=work.sdr.profile.id,
        run_id=work.run.id,
        items=to_push,
    )
    # Pushed by a run that died before it moved them on: Smartlead has them, only advance.
    done_before = [(item, FOLLOW_UP) for item in to_push if item.id not in sendable]
    write_decisions(work, [*decisions, *done_before])
    return [item for item in to_push if item.id in sendable]


def pushed_already(
    work: SequenceWork,
    decisions: list[tuple[Claimed, Decision]],
    signals: dict[uuid.UUID, frozenset[str]],
) -> list[tuple[Claimed, Decision]]:
    """A claim does not read the ledger (reserving tells which leads are in the campaign). The
    few that would end here (unsubscribed, a bad address) are looked up: one that is in the
    campaign already is decided again as such, and only moves on."""
    ending = [item.id for item, decision in decisions if decision.action in ENDS]
    pushed = Push.objects.in_campaign(campaign_id=work.campaign_id, ids=ending) if ending else ()
    if not pushed:
        return decisions
    for item, _ in decisions:
        item.pushed = item.id in pushed
    return [
        (item, decide(work.steps, item, signals.get(item.id, NONE)) if item.pushed else d)
        for item, d in decisions
    ]


def write_decisions(work: SequenceWork, decisions: list[tuple[Claimed, Decision]]) -> None:
    """The chunk's decisions as a few set-based writes, in one transaction."""
    now = timezone.now()
    moves: dict[Move, list[uuid.UUID]] = defaultdict(list)
    ends: dict[str, list[uuid.UUID]] = defaultdict(list)
    failures: dict[int, dict[uuid.UUID, str]] = defaultdict(dict)
    calls = []
    step_moves: dict[int, Move] = {}  # one Move per step, not per enrollment
    for item, decision in decisions:
        if decision.action in MOVES_ON:
            move = step_moves.get(item.current_step)
            if move is None:
                move = step_moves[item.current_step] = work.steps.move_from(item.current_step, now)
            moves[move].append(item.id)
        if decision.action == Action.CALL:
            calls.append((item, work.steps.get(item.current_step)))
        elif decision.action == Action.COMPLETE:
            ends[EnrollmentStatus.COMPLETED].append(item.id)
        elif decision.action == Action.UNSUBSCRIBED:
            ends[EnrollmentStatus.UNSUBSCRIBED].append(item.id)
        elif decision.action == Action.FAIL:
            failures[item.current_step][item.id] = decision.reason
    if not (moves or ends or failures or calls):
        return
    tally = work.tally
    with transaction.atomic():
        for move, ids in moves.items():
            tally.moved(move, Enrollment.objects.advance(move, ids, now))
        for status, ids in ends.items():
            ended = Enrollment.objects.finish(ids, status, now)
            tally.completed += ended if status == EnrollmentStatus.COMPLETED else 0
        for step, reasons in failures.items():
            tally.failed += Enrollment.objects.fail(reasons, step=step, now=now)
        if calls:
            tally.call_tasks += CallTask.objects.schedule_once(
                sequence_id=work.sequence_id, due=calls, now=now
            )


def push(work: SequenceWork, batch: list[Claimed]) -> None:
    """Step 3d: this batch's request goes out; while it is in flight, step 3e for the batch
    before it (of this sequence, or the worker's previous one)."""
    sender = work.sender
    before, sender.in_flight = sender.in_flight, InFlight(work, batch, start_sending(work, batch))
    settle(before)


def settle(sending: InFlight | None) -> None:
    """Step 3e: Smartlead's answer recorded. A batch Smartlead refuses as a whole is split until
    the leads it refuses are found."""
    if sending is None:
        return
    work, batch, answer = sending.work, sending.batch, sending.answer.result()
    if isinstance(answer, ValidationFailed) and len(batch) > 1:
        split(work, batch, answer)
    else:
        record(work, batch, answer)


def settle_last(sender: Sender) -> None:
    """Step 3e for the batch still out: after the worker's last sequence, or its failure."""
    sending, sender.in_flight = sender.in_flight, None
    settle(sending)


def split(work: SequenceWork, batch: list[Claimed], refusal: ValidationFailed) -> None:
    """If no part goes through, the refusal is about the request, not a lead: nobody fails."""
    parts = bisect(work, batch)
    if not any(isinstance(answer, AddLeadsResult) for _, answer in parts):
        not_sent(work, batch, refusal)
        return
    for items, answer in parts:
        record(work, items, answer)


def bisect(work: SequenceWork, batch: list[Claimed]) -> list[tuple[list[Claimed], Answer]]:
    parts: list[tuple[list[Claimed], Answer]] = []
    half = len(batch) // 2
    for part in (batch[:half], batch[half:]):
        answer = start_sending(work, part).result()
        if isinstance(answer, ValidationFailed) and len(part) > 1:
            parts += bisect(work, part)
        else:
            parts.append((part, answer))
    return parts
