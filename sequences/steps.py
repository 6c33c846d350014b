"""The step rule: what an enrollment's due step does, decided in one pure function.

`decide()` is the only place that says what a step does. The executor acts on its decisions, the
dry run counts them and explain puts them in words, so the three never disagree. It reads
nothing from the database: everything it needs comes with the claimed row (`Claimed`) and the
sequence's steps (`Steps`), both plain values (sequences/claimed.py).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sequences.choices import EngagementType, StepType
from sequences.claimed import Claimed, Move
from sequences.models import SequenceStep

# Smartlead validates addresses itself and reports the ones it rejects; this catches what people
# mistype (no @, spaces, no domain) without Django's IDN-aware validator, whose regex costs more
# to compile than a whole run of checks.
PLAUSIBLE_EMAIL = re.compile(r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$")


def email_problem(email: str | None) -> str | None:
    """Why an address cannot be sent to, in words; None when it looks sendable."""
    email = (email or "").strip()
    if not email:
        return "The contact has no email address."
    if len(email) > 254 or not PLAUSIBLE_EMAIL.match(email):
        return f"The contact's email address {email!r} is not valid."
    return None


class Action(enum.StrEnum):
    PUSH = "push"  # the first email step it reaches: the contact becomes a lead in the campaign
    FOLLOW_UP = "follow_up"  # a later email of a lead already in the campaign: Smartlead sends it
    CALL = "call"  # a call task for the SDR, once
    SKIP = "skip"  # the step's conditions are not met
    COMPLETE = "complete"  # past the last step
    UNSUBSCRIBED = "unsubscribed"  # the contact opted out (sequences/optouts.py)
    FAIL = "fail"  # the address cannot be sent to


# After these the enrollment moves to its next step (or completes after the last one).
MOVES_ON = frozenset({Action.FOLLOW_UP, Action.CALL, Action.SKIP})
# These end the enrollment. A bad address only before it is a lead (for one that is a lead
# already, decide() says FOLLOW_UP instead); an opt-out whenever it comes.
ENDS = frozenset({Action.UNSUBSCRIBED, Action.FAIL})


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str = ""


# The decisions without a per-enrollment reason, built once: decide() runs for every claimed row.
PUSH = Decision(Action.PUSH)
FOLLOW_UP = Decision(Action.FOLLOW_UP)
CALL = Decision(Action.CALL)
SKIP = Decision(Action.SKIP, "Its conditions are not met.")
COMPLETE = Decision(Action.COMPLETE)
UNSUBSCRIBED = Decision(Action.UNSUBSCRIBED, "The contact unsubscribed.")


class Steps:
    """One sequence's steps, keyed by step number."""

    def __init__(self, steps: Iterable[SequenceStep]) -> None:
        self.by_number = {s.step_number: s for s in steps}
        self.numbers = sorted(self.by_number)
        self.has_conditions = any(_conditions(s) for s in self.by_number.values())

    def get(self, number: int) -> SequenceStep | None:
        return self.by_number.get(number)

    def first_email(self) -> int | None:
        return next((n for n in self.numbers if self.by_number[n].is_email), None)

    def move_from(self, number: int, now: datetime) -> Move:
        """Where an enrollment goes after step `number`: the next step, due after its delay."""
        later = next((n for n in self.numbers if n > number), None)
        if later is None:
            return Move(number, None, None)
        return Move(number, later, now + self.by_number[later].delay)


def decide(steps: Steps, item: Claimed, signals: frozenset[str] = frozenset()) -> Decision:
    """What the enrollment's due step does. `signals` are its engagement types (opened,
    clicked, replied); only needed when the sequence has conditions."""
    # An opted-out contact first: no step of any kind (a call task neither), pushed or not.
    if item.unsubscribed_at:
        return UNSUBSCRIBED
    step = steps.by_number.get(item.current_step)
    if step is None:
        return COMPLETE
    if steps.has_conditions and not conditions_met(step, signals):
        return SKIP
    if step.step_type == StepType.CALL:
        return CALL
    # Any email step pushes an enrollment that is not in the campaign yet (normally at the first
    # email step); for one already pushed, Smartlead sends the follow-ups and we only advance.
    if item.pushed:
        return FOLLOW_UP
    problem = email_problem(item.email)
    if problem:
        return Decision(Action.FAIL, problem)
    return PUSH


def conditions_met(step: SequenceStep, signals: frozenset[str]) -> bool:
    # Judged on the enrollment's own engagements: the contract ties opens and clicks to the
    # enrollment, not to a particular email.
    if step.condition_previous_opened and EngagementType.EMAIL_OPENED not in signals:
        return False
    if step.condition_previous_clicked and EngagementType.EMAIL_CLICKED not in signals:
        return False
    return not (step.condition_not_replied and EngagementType.EMAIL_REPLIED in signals)


def _conditions(step: SequenceStep) -> bool:
    return bool(
        step.condition_previous_opened
        or step.condition_previous_clicked
        or step.condition_not_replied
    )


def describe(decision: Decision, item_step: int, campaign_id: int | None) -> str:
    """A decision in words, for explain and the dry run."""
    campaign = f"campaign {campaign_id}" if campaign_id else "its campaign (to be set up)"
    words = {
        Action.PUSH: f"becomes a lead in {campaign}; Smartlead sends the email",
        Action.FOLLOW_UP: "is a follow-up email Smartlead sends itself; only the bookkeeping "
        "moves on",
        Action.CALL: "creates a call task for the SDR",
        Action.SKIP: "is skipped: its conditions are not met",
        Action.COMPLETE: "completes the enrollment (no steps left)",
        Action.UNSUBSCRIBED: "ends it: the contact unsubscribed",
        Action.FAIL: f"fails: {decision.reason}",
    }
    return f"Step {item_step} {words[decision.action]}."
