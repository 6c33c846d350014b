"""What the workers of one executor run hold, in types that import nothing above them.

One run (`Run`: its record, deadline and `--limit` quota) covers a `Scope`; each SDR's share is
an `Sdr` (credentials and sequences), counted on a `Tally`. A worker sending one sequence holds a
`SequenceWork`, and its sending thread is a `Sender`, with the batch it still has out
(`InFlight`). Requests leave a worker only by `start_sending` (add-leads) and `ask` (a lookup),
on the sending thread; everything else stays on the worker's (sequences/sending.py).
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from django.db.models import QuerySet
from django.utils import timezone

from profiles.credentials import SmartleadCredentials, SmartleadStatus, refusal_status
from profiles.models import CredentialCheck, Profile
from sequences.claimed import Claimed, Move
from sequences.models import ExecutorRun, Sequence, SequenceStatus
from sequences.steps import Steps
from smartlead.api import AddLeadsResult, SmartleadClient, SmartleadError

# The executor's own lines, whichever module writes them (operators filter on this name).
log = logging.getLogger("sequences.executor")


@dataclass(frozen=True)
class Scope:
    """What a run may touch: everything, or one SDR's sequences, or one sequence."""

    user_id: uuid.UUID | None = None
    sequence_id: uuid.UUID | None = None

    @classmethod
    def of(cls, record: ExecutorRun) -> Scope:
        """The scope a run was started with (kept on its record for its other workers)."""
        saved = record.scope or {}
        return cls(
            *(uuid.UUID(saved[k]) if saved.get(k) else None for k in ("user_id", "sequence_id"))
        )

    def as_dict(self) -> dict[str, str]:
        return {k: str(v) for k, v in vars(self).items() if v}

    def sequences(self) -> QuerySet[Sequence]:
        found = Sequence.objects.filter(status=SequenceStatus.ACTIVE)
        if self.user_id:
            found = found.filter(created_by_id=self.user_id)
        if self.sequence_id:
            found = found.filter(pk=self.sequence_id)
        return found


@dataclass
class Run:
    """What the workers of one run share in this process: its record, scope, start and
    deadline, the `--limit` quota, and who is told of progress (SDRs done of all, leads pushed).
    Other processes working on the same run have their own (`Run.of`)."""

    record: ExecutorRun
    scope: Scope
    deadline: float
    quota: int | None = None
    progress: Callable[[int, int, int], None] | None = None
    shares: int = 0  # SDRs in the run
    # This process's view of every SDR of the run, loaded once (executor.planned).
    plan: dict[uuid.UUID, Any] | None = None
    sdrs_done: int = 0
    pushed: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def of(cls, record: ExecutorRun) -> Run:
        """A run started elsewhere, as a worker of it sees it: the same deadline."""
        left = (record.deadline - timezone.now()).total_seconds() if record.deadline else 0.0
        return cls(record, Scope.of(record), time.monotonic() + left)

    @property
    def id(self) -> uuid.UUID:
        return self.record.id

    @property
    def started(self) -> datetime:
        return self.record.started_at

    @property
    def out_of_time(self) -> bool:
        return time.monotonic() >= self.deadline

    def take(self, wanted: int) -> int:
        """How many enrollments a worker may claim now (all it wants without --limit)."""
        if self.quota is None:
            return wanted
        with self.lock:
            granted = min(wanted, self.quota)
            self.quota -= granted
            return granted

    def return_unused(self, unused: int) -> None:
        if self.quota is not None and unused:
            with self.lock:
                self.quota += unused

    def sdr_finished(self, tally: Tally) -> None:
        """Reports progress after each SDR done in this process (pushes of a batch still in
        flight show in the next report)."""
        with self.lock:
            self.sdrs_done += 1
            self.pushed += tally.pushed
            if self.progress is not None:
                self.progress(self.sdrs_done, self.shares, self.pushed)


@dataclass
class Sdr:
    """One SDR's share of a run: their credentials and their sequences with ready work."""

    profile: Profile
    credentials: SmartleadCredentials
    sequences: list[Sequence]
    # What this SDR's claims write on their enrollments: the share's own lease (shares.py).
    lease_until: datetime | None = None
    refused: bool = False  # Smartlead refused the key during this run: stop asking
    accepted: bool = False  # Smartlead took leads from the key during this run

    def refused_by(self, exc: SmartleadError) -> bool:
        """A 401/403 is recorded as the SDR's credential status (once) and ends their turn."""
        verdict = refusal_status(exc)
        if verdict is not None and not self.refused:
            self.profile.record_smartlead_refusal(exc)
            log.warning(
                "SDR %s: Smartlead refused their key (%s)", self.profile.label, verdict.label
            )
            self.refused = True
        return verdict is not None

    def took_leads(self) -> None:
        """Smartlead took leads from the key: the first time in a run, a key not judged yet is
        recorded as connected, so a key that works never shows as "Unchecked"."""
        if not self.accepted:
            self.accepted = True
            if self.profile.smartlead_status() == SmartleadStatus.UNCHECKED:
                CredentialCheck.objects.record(
                    profile=self.profile,
                    status=SmartleadStatus.CONNECTED,
                    detail="Smartlead accepted leads sent with this key and mailbox.",
                )


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

    def as_counts(self) -> dict[str, Any]:
        """What a share keeps of it (its errors are kept beside)."""
        return {name: getattr(self, name) for name in self.COUNTERS} | {
            "skipped": dict(self.skipped)
        }

    @classmethod
    def of(cls, counts: dict[str, Any], errors: list[str]) -> Tally:
        known = {name: int(counts.get(name) or 0) for name in cls.COUNTERS}
        return cls(**known, errors=list(errors), skipped=Counter(counts.get("skipped") or {}))

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
