"""Steps 3b-3e of an executor run, for one sequence of one SDR (see sequences/executor.py).

`send_sequence` reads top to bottom, in the order things happen:
b. `claimed_chunks`: ready enrollments leased in chunks (`Enrollment.objects.claim`), so
   concurrent runs never share one;
c. `carry_out`: each enrollment's due step decided (`steps.decide`) and carried out for the
   whole chunk at once: advances, completions, failures, call tasks; the leads to push get their
   ledger rows (`Push.objects.reserve`) before any request;
d. `send_batch`: the leads in full batches, one add-leads request each
   (`SmartleadClient.add_leads`), sent on the worker's sending thread;
e. `settle` → `record`: what Smartlead said about a batch, written to the ledger and the
   enrollments: the leads it proves are in the campaign (`record_pushed`), those it turned away
   (`turned_away`), those it did not prove (`confirm`, looked up before any counts as sent), and
   a request it refused or never answered (`rejected`, `not_sent`, `campaign_missing`).
A batch is recorded while the next one is in flight (d of one batch overlaps e of the one
before), and a sequence's last batch once the worker has sent the next sequence's first
(`settle_last` after the worker's last): Smartlead and the database work at the same time, and
all database work stays on the worker's thread. Writes are per chunk or per batch, so the number
of SQL statements grows with batches, not with enrollments.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from sequences.claimed import Claimed, Move
from sequences.context import Answer, InFlight, Sender, SequenceWork, ask, start_sending
from sequences.models import (
    CallTask,
    Engagement,
    Enrollment,
    EnrollmentStatus,
    Push,
    PushState,
    lease_length,
)
from sequences.provisioning import campaign_gone, needs_attention
from sequences.steps import ENDS, FOLLOW_UP, MOVES_ON, PUSH, Action, Decision, decide
from smartlead.api import (
    IN_CAMPAIGN,
    REASONS,
    AddLeadsResult,
    FoundLead,
    LeadOutcome,
    LeadVerdict,
    NotFound,
    SmartleadError,
    ValidationFailed,
)

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
                before = send_batch(work, batch)  # d: out on the sending thread
                settle(before)  # e: the batch before it, recorded meanwhile
        if leads and not work.halted:
            batch, leads = leads, []
            settle(send_batch(work, batch))
    finally:
        if leads:  # claimed and reserved, but nothing more can be sent: ready for next run
            defer(work, leads)


def claimed_chunks(work: SequenceWork, batch: int) -> Iterator[list[Claimed]]:
    """Step 3b: chunks of leased enrollments until none is ready, the quota is used or the
    run must stop. A chunk is a multiple of the batch size, so chunk boundaries never cost
    an extra request."""
    size = max(batch, settings.EXECUTOR_CHUNK_SIZE // batch * batch)
    run = work.run
    while not work.stopped:
        wanted = run.take(size)
        chunk = claim(work, wanted) if wanted else []
        run.return_unused(wanted - len(chunk))
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
        # The share's own lease time: a worker that dies gives these back by it (workers.py).
        lease_until=work.sdr.lease_until or timezone.now() + lease_length(),
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
    pushed = Push.objects.pushed_of(campaign_id=work.campaign_id, ids=ending) if ending else ()
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
            ended = Enrollment.objects.end(ids, status, now)
            tally.completed += ended if status == EnrollmentStatus.COMPLETED else 0
        for step, reasons in failures.items():
            tally.failed += Enrollment.objects.fail(reasons, step=step, now=now)
        if calls:
            tally.call_tasks += CallTask.objects.schedule_once(
                sequence_id=work.sequence_id, due=calls, now=now
            )


def send_batch(work: SequenceWork, batch: list[Claimed]) -> InFlight | None:
    """Step 3d: this batch's request goes out on the sending thread. Returns the batch that was
    in flight before it (of this sequence, or the worker's previous one), to be settled while
    this one travels."""
    sender = work.sender
    before, sender.in_flight = sender.in_flight, InFlight(work, batch, start_sending(work, batch))
    return before


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


# --- Step 3e: what Smartlead said about a batch ------------------------------------------
UNCONFIRMED = LeadOutcome.UNCONFIRMED
# Lead-by-email lookups per batch for leads a reply did not prove (each costs a request).
CONFIRM_PER_BATCH = 10


def record(work: SequenceWork, batch: list[Claimed], answer: Answer) -> None:
    """Step 3e: the ledger and the enrollments say what Smartlead said about this batch."""
    if isinstance(answer, ValidationFailed):
        rejected(work, batch, str(answer))
    elif isinstance(answer, SmartleadError):
        not_sent(work, batch, answer)
    else:
        accepted(work, batch, answer)


def accepted(work: SequenceWork, batch: list[Claimed], result: AddLeadsResult) -> None:
    """Smartlead took the request: each lead as its reply proves (`AddLeadsResult.outcomes`).
    A lead the reply does not prove is looked up before it counts as sent; none is ever
    counted as sent on a reply's say-so alone."""
    emails = [item.lead.email for item in batch]
    verdicts = result.outcomes(emails)
    paired = list(zip(batch, emails, strict=True))
    unsure = [item for item, email in paired if verdicts[email].outcome is UNCONFIRMED]
    if unsure:
        verdicts |= confirm(work, unsure)
    by_outcome: dict[LeadOutcome, list[Claimed]] = defaultdict(list)
    for item, email in paired:
        by_outcome[verdicts[email].outcome].append(item)
    record_pushed(
        work, [item for o in IN_CAMPAIGN for item in by_outcome.pop(o, [])], result.counts
    )
    not_now = by_outcome.pop(LeadOutcome.NOT_IMPORTED, [])
    still_unsure = by_outcome.pop(UNCONFIRMED, [])
    turned_away(work, by_outcome, verdicts, result)
    if not_now:
        defer(work, not_now)
        work.tally.error(
            f"Smartlead's lead limit is exhausted for campaign {work.campaign_id}: "
            f"{len(not_now)} leads wait for the next run."
        )
    if still_unsure:
        # Maybe in the campaign: the ledger row stays `pending`, and the next run's re-send
        # gets Smartlead's answer for each (a lead already there is reported as such).
        defer(work, still_unsure, maybe_sent=True)
        work.tally.error(
            f"{len(still_unsure)} leads for campaign {work.campaign_id} are not confirmed by "
            f"Smartlead and wait for the next run: {verdicts[still_unsure[0].lead.email].reason}"
        )


def confirm(work: SequenceWork, items: list[Claimed]) -> dict[str, LeadVerdict]:
    """Leads a reply did not prove, a few per batch (the rest are sent again next run, when
    Smartlead says where each one is): Smartlead's lead-by-email lookup first; a lead it does
    not have is sent again on its own, so the reply's counts can only be about that lead
    (Smartlead turns a blocked or bounced lead away again; nothing is doubled)."""
    found: dict[str, LeadVerdict] = {}
    for item in items[:CONFIRM_PER_BATCH]:
        email = item.lead.email
        lead = look_up(work, email)
        if lead is not None and work.campaign_id in lead.campaign_ids:
            found[email] = LeadVerdict(LeadOutcome.IN_CAMPAIGN, "Confirmed by lookup.", lead.id)
        elif lead is not None and lead.campaign_ids:
            found[email] = LeadVerdict(
                LeadOutcome.IN_OTHER_CAMPAIGN, REASONS[LeadOutcome.IN_OTHER_CAMPAIGN], lead.id
            )
        else:
            alone = start_sending(work, [item]).result()
            if isinstance(alone, AddLeadsResult):
                verdict = alone.outcomes([email])[email]
                if verdict.outcome != UNCONFIRMED:
                    found[email] = verdict
    return found


def look_up(work: SequenceWork, email: str) -> FoundLead | None:
    try:
        return ask(work, work.client.find_lead, email)
    except SmartleadError:
        return None


def record_pushed(work: SequenceWork, items: list[Claimed], counts: dict[str, Any]) -> None:
    """Ledger `pushed` and enrollments moved on together, one statement per step they are on."""
    by_step: dict[int, list[uuid.UUID]] = defaultdict(list)
    for item in items:
        by_step[item.current_step].append(item.id)
    work.tally.pushed += len(items)
    work.sdr.took_leads()
    for from_step, ids in by_step.items():
        move = work.steps.move_from(from_step, timezone.now())
        moved = Enrollment.objects.advance_pushed(
            campaign_id=work.campaign_id, ids=ids, counts=counts, move=move, now=timezone.now()
        )
        work.tally.moved(move, moved)


# What a lead Smartlead turned away does to its enrollment (none of them moves on).
TURNED_AWAY = {
    LeadOutcome.UNSUBSCRIBED: EnrollmentStatus.UNSUBSCRIBED,
    LeadOutcome.BOUNCED: EnrollmentStatus.BOUNCED,
    LeadOutcome.INVALID: EnrollmentStatus.FAILED,
    LeadOutcome.BLOCKED: EnrollmentStatus.FAILED,
    LeadOutcome.IN_OTHER_CAMPAIGN: EnrollmentStatus.FAILED,
}


def turned_away(
    work: SequenceWork,
    by_outcome: dict[LeadOutcome, list[Claimed]],
    verdicts: dict[str, LeadVerdict],
    result: AddLeadsResult,
) -> None:
    """Leads Smartlead did not take, each with its reason in Smartlead's words: ledger
    `rejected` with the outcome, the enrollment ended (failed ones with a step record that
    explain and the admin show), counted per reason on the run record."""
    if not by_outcome:
        return
    now = timezone.now()
    with transaction.atomic():
        for outcome, items in by_outcome.items():
            Push.objects.mark(
                campaign_id=work.campaign_id,
                ids=[item.id for item in items],
                state=PushState.REJECTED,
                outcome=outcome,
                counts=result.counts,
                now=now,
            )
            work.tally.skipped[outcome] += len(items)
            status = TURNED_AWAY[outcome]
            if status == EnrollmentStatus.FAILED:
                reasons = {item.lead.email: verdicts[item.lead.email].reason for item in items}
                fail(work, items, reasons, now)
            else:
                Enrollment.objects.end([item.id for item in items], status, now)


def rejected(work: SequenceWork, batch: list[Claimed], message: str) -> None:
    """Smartlead refused this lead for good: the enrollment fails with Smartlead's reason."""
    now = timezone.now()
    with transaction.atomic():
        Push.objects.mark(
            campaign_id=work.campaign_id,
            ids=[item.id for item in batch],
            state=PushState.REJECTED,
            outcome="rejected",
            counts={"message": message[:500]},
            now=now,
        )
        fail(work, batch, f"Smartlead rejected the lead: {message}", now)


def fail(
    work: SequenceWork, items: list[Claimed], reason: str | dict[str, str], now: datetime
) -> None:
    """The enrollments fail with `reason` (one for all, or one per lead's email)."""
    by_step: dict[int, dict[uuid.UUID, str]] = defaultdict(dict)
    for item in items:
        why = reason if isinstance(reason, str) else reason[item.lead.email]
        by_step[item.current_step][item.id] = why
    for step, reasons in by_step.items():
        work.tally.failed += Enrollment.objects.fail(reasons, step=step, now=now)


def not_sent(work: SequenceWork, batch: list[Claimed], exc: SmartleadError) -> None:
    """No verdict on these leads: they wait for the next run. A 401/403 ends the SDR's turn; a
    missing campaign is forgotten, so the next run sets one up."""
    # A timeout or a 5xx may have reached Smartlead: the ledger keeps those rows `pending`, and
    # the next run's re-send shows as a second attempt.
    defer(work, batch, maybe_sent=not (exc.permanent or exc.safe_to_repeat))
    work.tally.error(
        f"{len(batch)} leads for campaign {work.campaign_id} wait for the next run: {exc}"
    )
    if isinstance(exc, NotFound):
        campaign_missing(work)
    work.sdr.refused_by(exc)


def campaign_missing(work: SequenceWork) -> None:
    """A 404 naming the campaign. Smartlead is asked whether it still has it: a campaign that is
    gone stops the sequence (needs attention) rather than being replaced blindly, which would
    start every lead over at email 1 while the old campaign, if it still sends, goes on."""
    if work.lost:
        return
    mailbox = work.sdr.credentials.email_account_id
    try:
        reason = ask(work, campaign_gone, work.client, work.campaign_id, mailbox)
    except SmartleadError as exc:
        work.tally.error(f"Campaign {work.campaign_id} could not be looked up after a 404: {exc}")
        return
    if reason is None:
        work.tally.error(f"Smartlead still has campaign {work.campaign_id} after a 404 on leads.")
        return
    work.lost = True
    needs_attention(work.sequence_id, reason)
    work.tally.error(f"Sequence {work.sequence_id} needs attention: {reason}")


def defer(work: SequenceWork, items: list[Claimed], *, maybe_sent: bool = False) -> None:
    """Claimed enrollments ready again, for the next run (not this one: it only takes those
    due before it started)."""
    ids = [item.id for item in items]
    with transaction.atomic():
        Enrollment.objects.release(ids, max(timezone.now(), work.run.started))
        if not maybe_sent:
            Push.objects.forget_pending(campaign_id=work.campaign_id, ids=ids)
    work.tally.deferred += len(ids)
