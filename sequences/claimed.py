"""An enrollment as the executor holds it once claimed (`Claimed`), for how long
(`lease_length`), and where a step takes it (`Move`): plain values, shared by the claim
statements (managers.py), the step rule (steps.py) and the sending of a sequence (sending.py)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings

from smartlead.api import Lead


def lease_length() -> timedelta:
    """How long a claim holds an enrollment, and provisioning a sequence: as long as a run may
    last, plus a margin. A lease that ran out while its run still worked would let a second run
    take the same work; a worker that dies gives its leases up sooner (sequences/workers.py)."""
    return timedelta(seconds=settings.EXECUTOR_TIME_BUDGET_SECONDS + 120)


@dataclass
class Claimed:
    """An enrollment as the executor holds it: its step, its contact, and whether the ledger
    already has it in the sequence's campaign. Field order is the claim statement's columns."""

    id: uuid.UUID
    contact_id: uuid.UUID
    current_step: int
    email: str | None
    first_name: str | None
    last_name: str | None
    company: str | None
    phone: str | None
    title: str | None
    unsubscribed_at: datetime | None
    # In the sequence's campaign already. A claim does not read the ledger (reserving the leads
    # tells), so the executor learns it late; the dry run and explain read it up front.
    pushed: bool = False
    _lead: Lead | None = field(default=None, repr=False, compare=False)

    @property
    def lead(self) -> Lead:
        # Built once, on first use. Not functools.cached_property: on Python 3.11 it takes one
        # lock shared by every instance, which the executor's threads then queue on.
        if self._lead is None:
            self._lead = Lead(
                email=(self.email or "").strip().lower(),
                first_name=self.first_name,
                last_name=self.last_name,
                company_name=self.company,
                phone_number=self.phone,
                custom_fields={"title": self.title} if self.title else {},
            )
        return self._lead


@dataclass(frozen=True)
class Move:
    """From one step to the next (`to_step` None: the enrollment completes)."""

    from_step: int
    to_step: int | None
    next_send_at: datetime | None
