"""What one worker holds while it sends a sequence (sequences/pushing.py, sequences/recording.py):
the sequence's context (`SequenceWork`), the SDR's counts (`Tally`) and the sending thread
(`Sender`), with the only two ways a request leaves it: `start_sending` (add-leads) and `ask`
(a lookup). Requests go out on the sending thread; everything else stays on the worker's.
"""

from __future__ import annotations

import contextvars
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from sequences.models import ExecutorRun
from sequences.steps import Claimed, Move, Steps
from smartlead.api import AddLeadsResult, SmartleadClient, SmartleadError

if TYPE_CHECKING:
    from sequences.executor import Run, Sdr

T = TypeVar("T")
# What Smartlead answered for one batch: its result, or why there is none.
Answer = AddLeadsResult | SmartleadError


@dataclass
class Tally:
    """What one SDR's share of a run did; the run adds every tally to its record."""

    due: int = 0
    pushed: int = 0
    failed: int = 0
    call_tasks: int = 0
    completed: int = 0
    advanced: int = 0
    deferred: int = 0
    campaigns_provisioned: int = 0
    smartlead_requests: int = 0
    errors: list[str] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)  # leads Smartlead turned away, by why

    COUNTERS = (
        "due",
        "pushed",
        "failed",
        "call_tasks",
        "completed",
        "advanced",
        "deferred",
        "campaigns_provisioned",
        "smartlead_requests",
    )
    MAX_ERRORS = 200

    def error(self, message: str) -> None:
        if len(self.errors) < self.MAX_ERRORS:
            self.errors.append(message)

    def moved(self, move: Move, count: int) -> None:
        if move.to_step is None:
            self.completed += count
        else:
            self.advanced += count

    def add_to(self, record: ExecutorRun) -> None:
        for name in self.COUNTERS:
            setattr(record, name, getattr(record, name) + getattr(self, name))
        record.skipped = dict(Counter(record.skipped) + self.skipped)
        record.errors.extend(self.errors[: max(0, self.MAX_ERRORS - len(record.errors))])


@dataclass
class SequenceWork:
    """One sequence being sent by one worker: everything its steps need, in one place."""

    run: Run
    sdr: Sdr
    sequence_id: uuid.UUID
    campaign_id: int
    steps: Steps
    client: SmartleadClient
    tally: Tally
    sender: Sender
    lost: bool = False  # Smartlead no longer has the campaign (campaign_missing)

    @property
    def halted(self) -> bool:
        """Nothing more can be sent: the SDR's key was refused or the campaign is gone."""
        return self.sdr.refused or self.lost

    @property
    def stopped(self) -> bool:
        return self.run.out_of_time or self.halted


@dataclass
class Sender:
    """A worker's sending thread (Smartlead requests, no SQL) and the batch it still has out."""

    pool: ThreadPoolExecutor
    in_flight: InFlight | None = None


@dataclass
class InFlight:
    """A batch whose add-leads request is out on the sending thread, with the sequence it is for
    (the worker may be on the next sequence, or the next SDR, when it is settled)."""

    work: SequenceWork
    batch: list[Claimed]
    answer: Future[Answer]


def start_sending(work: SequenceWork, batch: list[Claimed]) -> Future[Answer]:
    work.tally.smartlead_requests += 1
    # The request's log lines keep this run's id (context variables do not cross threads).
    context = contextvars.copy_context()
    return work.sender.pool.submit(context.run, send, work.client, work.campaign_id, batch)


def send(client: SmartleadClient, campaign_id: int, batch: list[Claimed]) -> Answer:
    try:
        return client.add_leads(campaign_id, [item.lead for item in batch])
    except SmartleadError as exc:
        return exc


def ask(work: SequenceWork, call: Callable[..., T], *args: Any) -> T:
    """A Smartlead lookup, on the worker's sending thread like every request of the worker."""
    work.tally.smartlead_requests += 1
    context = contextvars.copy_context()
    return work.sender.pool.submit(context.run, call, *args).result()
