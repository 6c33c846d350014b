"""What a verdict is (outboundhq/verdicts.py judges): a job's status, why, and when it last
succeeded against its period and grace; and durations as people read them. Imports no app."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from outboundhq.models import Status

SEVERITY = {Status.FAILING: 0, Status.LATE: 1, Status.OK: 2}

# The dashboard, an SDR's page and /status summarise these models' rows: a staff member who may
# not see them may not see their figures or verdicts either (staff status alone opens the admin).
OPS_PERMISSIONS = (
    "profiles.view_profile",
    "sequences.view_enrollment",
    "sequences.view_executorrun",
    "sequences.view_syncchange",
    "sequences.view_campaignprovisioning",
    "smartlead.view_webhookevent",
)


def sees_ops(user: Any) -> bool:
    return bool(getattr(user, "is_staff", False)) and user.has_perms(OPS_PERMISSIONS)


@dataclass(frozen=True)
class Verdict:
    key: str
    name: str
    status: Status
    detail: str
    last_success: datetime | None = None
    every: timedelta | None = None
    grace: timedelta | None = None
    href: str = ""

    @property
    def ok(self) -> bool:
        return self.status == Status.OK

    @property
    def expected(self) -> str:
        """ "every 15 min, grace 10 min" (the templates show `last_success` beside it)."""
        if self.every is None:
            return ""
        return f"every {span(self.every)}, grace {span(self.grace or timedelta())}"

    def as_dict(self, now: datetime) -> dict[str, Any]:
        since = (now - self.last_success) if self.last_success else None

        def minutes(delta: timedelta | None) -> int | None:
            return round(delta.total_seconds() / 60) if delta is not None else None

        return {
            "key": self.key,
            "name": self.name,
            "status": self.status.value,
            "detail": self.detail,
            "last_success_at": self.last_success.isoformat() if self.last_success else None,
            "minutes_since_success": minutes(since),
            "expected_every_minutes": minutes(self.every),
            "grace_minutes": minutes(self.grace),
        }


def span(delta: timedelta) -> str:
    """A duration people read at a glance: 45 s, 12 min, 3 h 5 min, 2 days."""
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    if minutes < 48 * 60:
        hours, rest = divmod(minutes, 60)
        return f"{hours} h {rest} min" if rest else f"{hours} h"
    return f"{minutes // (24 * 60)} days"


def ago(delta: timedelta) -> str:
    return f"{span(delta)} ago"


def worst(verdicts: Iterable[Verdict]) -> Status:
    return min((v.status for v in verdicts), key=SEVERITY.__getitem__, default=Status.OK)
