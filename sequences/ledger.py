"""The push ledger's rules over many rows (`Push.objects`): reserving a lead before its request,
counting how often it was reserved, and what Smartlead said. Its hot statements are raw SQL on
PostgreSQL (sequences/statements.py); on SQLite each method is the ORM expression of the same
thing."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django.db import connection, models, transaction
from django.db.models import F

from sequences import statements
from sequences.choices import PushState
from sequences.claimed import Claimed


def on_postgres() -> bool:
    return connection.vendor == "postgresql"


class PushQuerySet(models.QuerySet):
    def reserve(
        self,
        *,
        campaign_id: int,
        sequence_id: uuid.UUID,
        profile_id: uuid.UUID,
        run_id: uuid.UUID,
        items: list[Claimed],
    ) -> set[uuid.UUID]:
        """Ledger first: a `pending` row per lead before its request. Returns the enrollments to
        send: new ones, and `pending` (interrupted) or `rejected` (fixed since) ones again; a
        row already `pushed` never comes back, so nobody is sent twice."""
        if not items:
            return set()
        if on_postgres():
            params = {
                "campaign": campaign_id,
                "sequence": sequence_id,
                "profile": profile_id,
                "run": run_id,
                "ids": statements.uuid_array([c.id for c in items]),
                "emails": statements.text_array([c.lead.email for c in items]),
            }
            with statements.server_bound_cursor() as cursor:
                cursor.execute(statements.reserve_statement(), params | statements.status_params())
                return {row[0] for row in cursor.fetchall()}
        known = dict(
            self.filter(
                enrollment_id__in=[c.id for c in items], campaign_id=campaign_id
            ).values_list("enrollment_id", "state")
        )
        again = [pk for pk, state in known.items() if state in self.model.RESENDABLE]
        fresh = [c for c in items if c.id not in known]
        with transaction.atomic():
            # Interrupted before: send again; Smartlead de-duplicates within a campaign.
            self.filter(enrollment_id__in=again, campaign_id=campaign_id).update(
                run_id=run_id, attempts=F("attempts") + 1
            )
            self.bulk_create(
                self.model(
                    enrollment_id=c.id,
                    campaign_id=campaign_id,
                    sequence_id=sequence_id,
                    profile_id=profile_id,
                    email=c.lead.email,
                    run_id=run_id,
                )
                for c in fresh
            )
        return {c.id for c in fresh} | set(again)

    def mark(
        self,
        *,
        campaign_id: int,
        ids: list[uuid.UUID],
        state: str,
        counts: dict[str, Any],
        now: datetime,
        outcome: str = "added_or_existing",
    ) -> None:
        if ids:
            self.filter(enrollment_id__in=ids, campaign_id=campaign_id).update(
                state=state, outcome=outcome, counts=counts, pushed_at=now
            )

    def pushed_of(self, *, campaign_id: int, ids: list[uuid.UUID]) -> set[uuid.UUID]:
        """Which of these enrollments the ledger has in the campaign."""
        pushed = self.filter(enrollment_id__in=ids, campaign_id=campaign_id)
        return set(pushed.filter(state=PushState.PUSHED).values_list("enrollment_id", flat=True))

    def forget_pending(self, *, campaign_id: int, ids: list[uuid.UUID]) -> None:
        """Forget `pending` rows of leads that were certainly not sent."""
        self.filter(
            enrollment_id__in=ids, campaign_id=campaign_id, state=PushState.PENDING
        ).delete()
