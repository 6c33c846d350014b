"""Why the backend paused an enrollment, and until when: the rules over `EnrollmentHold` rows.

The hosted `sequence_enrollments.status` has no value for "out of office", so such an
enrollment is `paused` there and its return date lives here, in the backend's own table. The
status itself is only ever written by `EnrollmentQuerySet` (sequences/managers.py), which calls
these methods in the same transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime

from django.db import models

from sequences.choices import HoldKind


class HoldQuerySet(models.QuerySet):
    def open(self) -> HoldQuerySet:
        return self.filter(released_at__isnull=True)

    def out_of_office(self) -> HoldQuerySet:
        return self.open().filter(kind=HoldKind.OUT_OF_OFFICE)

    def hold(
        self,
        kind: str,
        holds: Mapping[uuid.UUID, tuple[datetime | None, str, str]],
        now: datetime,
    ) -> None:
        """One open hold per enrollment: (until, message id, detail) each, written over any
        earlier one (a later auto-reply moves the date; a colleague's reply makes an absence
        a pause nobody ends by date)."""
        if not holds:
            return
        self.filter(enrollment_id__in=list(holds)).delete()
        self.bulk_create(
            self.model(
                enrollment_id=pk,
                kind=kind,
                until=until,
                message_id=message_id[:998],
                detail=detail[:1000],
                created_at=now,
            )
            for pk, (until, message_id, detail) in holds.items()
        )

    def message_ids(self, enrollment_ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
        """The reply each open absence was made for: that reply, seen again, is not a reply."""
        rows = self.out_of_office().filter(enrollment_id__in=enrollment_ids).exclude(message_id="")
        return dict(rows.values_list("enrollment_id", "message_id"))
