"""Step 3e of an executor run: what Smartlead said about one batch, written to the ledger and the
enrollments (see sequences/pushing.py for 3b-3d).

`record` reads the answer: a refusal of the lead (`rejected`), no answer (`not_sent`), or a reply
whose per-lead outcomes (`AddLeadsResult.outcomes`) say which leads are in the campaign
(`in_campaign`: ledger `pushed` and the enrollment moved on in one statement), which Smartlead
turned away (`turned_away`, each with Smartlead's reason) and which it did not prove (`confirm`:
looked up before any counts as sent). A 404 is checked with a campaign lookup
(`campaign_missing`) before anything is forgotten.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from sequences.models import Enrollment, EnrollmentStatus, Push, PushState
from sequences.provisioning import campaign_gone, needs_attention
from sequences.steps import Claimed
from sequences.work import Answer, SequenceWork, ask, start_sending
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
    in_campaign(work, [item for o in IN_CAMPAIGN for item in by_outcome.pop(o, [])], result.counts)
    not_now = by_outcome.pop(LeadOutcome.NOT_IMPORTED, [])
    still_unsure = by_outcome.pop(UNCONFIRMED, [])
    turned_away(work, by_outcome, verdicts, result)
    if not_now:
        give_back(work, not_now)
        work.tally.error(
            f"Smartlead's lead limit is exhausted for campaign {work.campaign_id}: "
            f"{len(not_now)} leads wait for the next run."
        )
    if still_unsure:
        # Maybe in the campaign: the ledger row stays `pending`, and the next run's re-send
        # gets Smartlead's answer for each (a lead already there is reported as such).
        give_back(work, still_unsure, maybe_sent=True)
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


def in_campaign(work: SequenceWork, items: list[Claimed], counts: dict[str, Any]) -> None:
    """Ledger `pushed` and enrollments moved on together, one statement per step they are on."""
    by_step: dict[int, list[uuid.UUID]] = defaultdict(list)
    for item in items:
        by_step[item.current_step].append(item.id)
    work.tally.pushed += len(items)
    for from_step, ids in by_step.items():
        move = work.steps.move_from(from_step, timezone.now())
        moved = Push.objects.mark_pushed(
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
                Enrollment.objects.finish([item.id for item in items], status, now)


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
    give_back(work, batch, maybe_sent=not (exc.permanent or exc.safe_to_repeat))
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


def give_back(work: SequenceWork, items: list[Claimed], *, maybe_sent: bool = False) -> None:
    """Claimed enrollments ready again, for the next run (not this one: it only takes those
    due before it started)."""
    ids = [item.id for item in items]
    with transaction.atomic():
        Enrollment.objects.give_back(ids, max(timezone.now(), work.run.started))
        if not maybe_sent:
            Push.objects.release(campaign_id=work.campaign_id, ids=ids)
    work.tally.deferred += len(ids)
