"""Rules about many rows at once: the querysets behind `Enrollment.objects`, `Push.objects`, ...

Every write of an enrollment's status is a method of `EnrollmentQuerySet` below: the executor's
(`advance`, `advance_pushed`, `end`, `fail`), Smartlead's word by its ladder (`end_by_event`, for
webhooks and the reconcile pass), a prospect's opt-out (`opt_out`, `restore`), ops' (`pause`)
and the mailbox holds' (`pause`, `resume`).
The three statements the executor runs for every chunk or batch (claim, reserve, advance pushed)
are raw SQL on PostgreSQL (sequences/statements.py, built from the models' `db_table` and
choices). On SQLite (the embedded default) each of these methods is the ORM expression of the
same thing. Everything else is plain ORM. Other models are looked up by name (`_model`): the
models import these querysets. Replies that pause an enrollment rather than end it are status
writes here too (`hold_out_of_office`, `pause_same_company`), and so is that pause's end
(`resume_returned`).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

from django.apps import apps
from django.db import connection, models, transaction
from django.db.models import Count, Exists, F, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone
from psycopg.types.json import Jsonb

from profiles.models import Profile
from sequences import statements
from sequences.choices import SIGNALS, EnrollmentStatus, HoldKind, PushState, SequenceStatus
from sequences.claimed import Claimed, Move

# What a claim reads of each enrollment and its contact, in `Claimed`'s field order.
CLAIM_FIELDS = (
    "id",
    "contact_id",
    "current_step",
    "contact__email",
    "contact__first_name",
    "contact__last_name",
    "contact__company",
    "contact__phone",
    "contact__title",
    "contact__unsubscribed_at",
)


def _model(name: str) -> type[models.Model]:
    return apps.get_model("sequences", name)


def on_postgres() -> bool:
    return connection.vendor == "postgresql"


class EnrollmentQuerySet(models.QuerySet):
    def due_by(self, moment: datetime) -> EnrollmentQuerySet:
        """Ready at `moment`: the enrollment and its sequence active, `next_send_at` passed."""
        return self.filter(
            status=EnrollmentStatus.ACTIVE,
            sequence__status=SequenceStatus.ACTIVE,
            next_send_at__lte=moment,
        )

    def ready(self) -> EnrollmentQuerySet:
        return self.due_by(timezone.now())

    def waiting_for_credentials(self) -> list[tuple[uuid.UUID | None, int]]:
        """Ready enrollments whose sequence's creator is not connected: (creator, count)."""
        rows = (
            self.ready()
            .exclude(sequence__created_by__in=Profile.objects.connected())
            .values("sequence__created_by")
            .annotate(n=Count("id"))
            .order_by()
        )
        return [(row["sequence__created_by"], row["n"]) for row in rows]

    def claim(
        self,
        *,
        sequence_id: uuid.UUID,
        campaign_id: int,
        started: datetime,
        size: int,
        lease_until: datetime,
    ) -> list[Claimed]:
        """Lease up to `size` of a sequence's enrollments ready at `started`, by moving their
        `next_send_at` to `lease_until`; concurrent claims never share a row."""
        if on_postgres():
            params = {
                "sequence": sequence_id,
                "started": started,
                "size": size,
                "lease": lease_until,
            }
            with statements.server_bound_cursor() as cursor:
                cursor.execute(statements.claim_statement(), params | statements.status_params())
                return [Claimed(*row) for row in cursor.fetchall()]
        # SQLite has one writer at a time and no SKIP LOCKED: a transaction is the lock.
        with transaction.atomic():
            rows = self.peek(
                sequence_id=sequence_id, campaign_id=campaign_id, at=started, size=size
            )
            self.filter(id__in=[r.id for r in rows]).update(next_send_at=lease_until)
        return rows

    def peek(
        self,
        *,
        sequence_id: uuid.UUID,
        campaign_id: int | None,
        at: datetime,
        size: int | None = None,
    ) -> list[Claimed]:
        """What `claim` would take, without taking it (the dry run, and SQLite's claim)."""
        Push = _model("Push")  # noqa: N806
        pushed = Push.objects.filter(
            enrollment_id=OuterRef("pk"), campaign_id=campaign_id, state=PushState.PUSHED
        )
        rows = (
            self.due_by(at)
            .filter(sequence_id=sequence_id)
            .annotate(_pushed=Exists(pushed))
            .order_by()
            .values_list(*CLAIM_FIELDS, "_pushed")
        )
        return [Claimed(*row) for row in (rows[:size] if size is not None else rows)]

    def advance(self, move: Move, ids: list[uuid.UUID], now: datetime) -> int:
        """Move these enrollments on, only where they are still active on `move.from_step`: a
        change made elsewhere meanwhile (a reply, a pause, a step edited) is never overwritten."""
        still = self.filter(id__in=ids, status=EnrollmentStatus.ACTIVE, current_step=move.from_step)
        if move.to_step is None:
            return still.update(status=EnrollmentStatus.COMPLETED, completed_at=now, updated_at=now)
        return still.update(
            current_step=move.to_step, next_send_at=move.next_send_at, updated_at=now
        )

    def advance_pushed(
        self,
        *,
        campaign_id: int,
        ids: list[uuid.UUID],
        counts: dict[str, Any],
        move: Move,
        now: datetime,
    ) -> int:
        """Smartlead has these leads: their ledger rows become `pushed` and the enrollments move
        on together (all of it or none). Returns how many enrollments moved."""
        if on_postgres():
            params = {
                "campaign": campaign_id,
                "ids": statements.uuid_array(ids),
                "counts": Jsonb(counts),
                "from_step": move.from_step,
                "step": move.to_step,
                "next": move.next_send_at,
                "now": now,
            }
            with statements.server_bound_cursor() as cursor:
                cursor.execute(statements.pushed_statement(), params | statements.status_params())
                return cursor.rowcount
        with transaction.atomic():
            _model("Push").objects.mark(
                campaign_id=campaign_id, ids=ids, state=PushState.PUSHED, counts=counts, now=now
            )
            return self.advance(move, ids, now)

    def end(self, ids: list[uuid.UUID], status: str, now: datetime) -> int:
        """The executor's end of active enrollments: completed, unsubscribed, bounced, failed."""
        changes: dict[str, Any] = {"status": status, "updated_at": now}
        if status == EnrollmentStatus.COMPLETED:
            changes["completed_at"] = now
        return self.filter(id__in=ids, status=EnrollmentStatus.ACTIVE).update(**changes)

    def end_by_event(self, statuses: Mapping[uuid.UUID, str], now: datetime) -> int:
        """Smartlead's word about leads (webhooks, the reconcile pass): each enrollment moves up
        the ladder (`Enrollment.LADDER`) to its status, never down. Set-based, one statement per
        status, in the ladder's order. Returns how many changed."""
        changed = 0
        for status in self.model.LADDER:
            ids = sorted(pk for pk, wanted in statuses.items() if wanted == status)
            if ids:
                changed += self.filter(
                    pk__in=ids, status__in=self.model.replaced_by(status)
                ).update(status=status, updated_at=now)
        return changed

    def opt_out(self, ids: Any, now: datetime) -> dict[uuid.UUID, str]:
        """A prospect's opt-out (sequences/optouts.py) ends these enrollments `unsubscribed`
        where they are still going (active or paused): no further step, no call task. Locked
        in id order first (two batches at once queue instead of deadlocking). Returns the
        status each one had, which lifting a mistaken opt-out restores."""
        going = (EnrollmentStatus.ACTIVE, EnrollmentStatus.PAUSED)
        with transaction.atomic():
            rows = self.filter(pk__in=ids, status__in=going).order_by("pk").select_for_update()
            previous = dict(rows.values_list("pk", "status"))
            self.filter(pk__in=list(previous)).update(
                status=EnrollmentStatus.UNSUBSCRIBED, updated_at=now
            )
        return previous

    def restore(self, previous: Mapping[uuid.UUID, str], now: datetime) -> int:
        """Ops lifted a mistaken opt-out: the enrollments it ended go back to the status they
        had, where nothing else has changed them since."""
        restored = 0
        for status in sorted(set(previous.values())):
            ids = [pk for pk, was in previous.items() if was == status]
            restored += self.filter(pk__in=ids, status=EnrollmentStatus.UNSUBSCRIBED).update(
                status=status, updated_at=now
            )
        return restored

    def pause(self, ids: Any, now: datetime) -> int:
        """Active enrollments paused (ops re-provisioning a lost campaign; the web app pauses
        its own in the hosted table)."""
        active = self.filter(id__in=ids, status=EnrollmentStatus.ACTIVE)
        return active.update(status=EnrollmentStatus.PAUSED, updated_at=now)

    def resume(self, ids: Any, now: datetime) -> int:
        """Paused enrollments active again (the backend's own pauses, for want of a healthy
        mailbox, once one is healthy: sequences/mailboxes.py)."""
        paused = self.filter(id__in=ids, status=EnrollmentStatus.PAUSED)
        return paused.update(status=EnrollmentStatus.ACTIVE, updated_at=now)

    def _pausable(self, ids: Collection[uuid.UUID], also: Q | None = None) -> list[uuid.UUID]:
        """Of these, the active ones and those an absence holds (or `also`), locked."""
        away = _model("EnrollmentHold").objects.out_of_office().values("enrollment_id")
        may = Q(status=EnrollmentStatus.ACTIVE) | Q(status=EnrollmentStatus.PAUSED, pk__in=away)
        rows = self.filter(may | (also or Q()), pk__in=list(ids)).order_by("pk")
        rows = rows.select_for_update(of=("self",))  # enrollments only: contacts come first
        return list(rows.values_list("pk", flat=True))

    def _hold(self, kind: str, holds: Mapping[uuid.UUID, tuple], now: datetime) -> None:
        self.filter(pk__in=list(holds)).update(status=EnrollmentStatus.PAUSED, updated_at=now)
        _model("EnrollmentHold").objects.hold(kind, holds, now)

    def hold_out_of_office(
        self, holds: Mapping[uuid.UUID, tuple], now: datetime, *, misread: Collection = ()
    ) -> list[uuid.UUID]:
        """An out-of-office reply pauses each enrollment until its return date ((until, reply's
        message id, detail) each, kept on `EnrollmentHold`). Off the ladder: it holds an active
        enrollment or one already away, and every rung replaces it. `misread`: `replied` ones
        whose only reply Smartlead later categorised as out-of-office (never a real reply)."""
        also = Q(status=EnrollmentStatus.REPLIED, pk__in=list(misread)) if misread else None
        held = self._pausable(holds, also)
        self._hold(HoldKind.OUT_OF_OFFICE, {pk: holds[pk] for pk in held}, now)
        return held

    def pause_same_company(self, replies: Mapping[uuid.UUID, tuple], now: datetime) -> int:
        """A reply (replied enrollment → (its SDR, the company's email domain, why)) pauses the
        SDR's other enrollments there, active or away (no date ends it now), as Smartlead's
        `auto_pause_domain_leads_on_reply` does its leads."""
        paused = 0
        for replied, (sdr, domain, why) in replies.items():
            colleagues = self.filter(
                sequence__created_by_id=sdr, contact__email__iendswith=f"@{domain}"
            ).exclude(pk=replied)
            ids = self._pausable(list(colleagues.values_list("pk", flat=True)))
            self._hold(HoldKind.SAME_COMPANY, dict.fromkeys(ids, (None, "", why)), now)
            paused += len(ids)
        return paused

    def resume_returned(self, now: datetime) -> int:
        """Of these, the enrollments an absence paused whose date has come are active again, due
        no earlier than that date, each once (its hold released in the same transaction); holds
        of enrollments no longer paused (resumed by someone, or ended) are released."""
        Hold = _model("EnrollmentHold")  # noqa: N806
        with transaction.atomic():
            held = self.filter(pk__in=Hold.objects.open().values("enrollment_id"))
            statuses = dict(held.values_list("pk", "status"))
            paused = [pk for pk, status in statuses.items() if status == EnrollmentStatus.PAUSED]
            Hold.objects.open().filter(enrollment_id__in=set(statuses) - set(paused)).update(
                released_at=now
            )
            due = Hold.objects.out_of_office().filter(enrollment_id__in=paused, until__lte=now)
            ids = list(due.select_for_update().values_list("enrollment_id", flat=True))
            mine = Hold.objects.out_of_office().filter(enrollment_id=OuterRef("pk"))
            back = Subquery(mine.values("until")[:1])
            resumed = self.filter(pk__in=ids, status=EnrollmentStatus.PAUSED).update(
                status=EnrollmentStatus.ACTIVE,
                next_send_at=Greatest(Coalesce("next_send_at", back), back),
                updated_at=now,
            )
            Hold.objects.filter(enrollment_id__in=ids).update(released_at=now)
        return resumed

    def fail(self, reasons: dict[uuid.UUID, str], *, step: int, now: datetime) -> int:
        """Active enrollments fail, each with its reason kept as a step record (for explain)."""
        StepRecord = _model("StepRecord")  # noqa: N806
        failed = self.end(list(reasons), EnrollmentStatus.FAILED, now)
        StepRecord.objects.bulk_create(
            [
                StepRecord(enrollment_id=pk, step_number=step, action="failed", detail=why[:1000])
                for pk, why in reasons.items()
            ],
            ignore_conflicts=True,
        )
        return failed

    def release_lease(self, lease_until: datetime, at: datetime) -> int:
        """A dead worker's claims ready again from `at` (its run's start): every active
        enrollment still holding that worker's own lease time (sequences/shares.py)."""
        held = self.filter(status=EnrollmentStatus.ACTIVE, next_send_at=lease_until)
        return held.update(next_send_at=at)

    def release(self, ids: list[uuid.UUID], at: datetime) -> None:
        """Claimed but not done: ready again from `at` (after the run's start, so the run that
        releases them does not take them again)."""
        self.filter(id__in=ids, status=EnrollmentStatus.ACTIVE).update(next_send_at=at)


class CampaignProvisioningQuerySet(models.QuerySet):
    def release_leases_of(self, workers: list[str]) -> int:
        """Provisioning leases of workers that stopped: the next run resumes the setup (its
        recorded stages and the campaign's name tag keep it to one campaign)."""
        held = self.filter(lease_holder__in=workers, lease_until__isnull=False)
        return held.update(lease_until=None, lease_holder="")

    def owners(self, campaign_ids: set[int]) -> dict[int, uuid.UUID | None]:
        """Which sequence each Smartlead campaign belongs to, by the link the backend wrote when
        it provisioned the campaign, never by `sequences.smartlead_campaign_id` alone, which the
        browser can change. A sequence without our record (a campaign set up before this backend,
        adopted) is found by that column, only if no record claims the campaign.

        Of several claims the record of the sequence we created the campaign for wins; claims
        that are all adopted count only if they are one SDR's (the newest wins), since a
        campaign id typed into another SDR's sequence must not take their events. A campaign
        whose owner cannot be told maps to None."""
        claims: defaultdict[int, list[tuple[uuid.UUID, Any, bool]]] = defaultdict(list)
        records = (
            self.filter(campaign_id__in=campaign_ids)
            .order_by("updated_at")
            .values_list("campaign_id", "sequence_id", "sequence__created_by", "completed_stages")
        )
        for campaign, pk, sdr, stages in records:
            claims[campaign].append((pk, sdr, "created" in (stages or [])))
        rest = [str(c) for c in campaign_ids if c not in claims]
        if rest:
            adopted = (
                _model("Sequence")
                .objects.filter(smartlead_campaign_id__in=rest)
                .exclude(pk__in=self.model.objects.values("sequence_id"))
                .order_by(F("created_at").asc(nulls_first=True))
                .values_list("smartlead_campaign_id", "id", "created_by")
            )
            for campaign, pk, sdr in adopted:
                if campaign.isdigit():
                    claims[int(campaign)].append((pk, sdr, False))
        return {campaign: _sole_owner(found) for campaign, found in claims.items()}

    def campaigns_of(self, profile_id: Any) -> set[int]:
        """One SDR's Smartlead campaign ids (the admin's SDR filter on webhook events): those we
        provisioned for their sequences, and those their sequences name without our record
        (set up before this backend); one query."""
        rows = (
            _model("Sequence")
            .objects.filter(created_by_id=profile_id)
            .values_list("smartlead_campaign_id", "provisioning__campaign_id")
        )
        found = set()
        for named, ours in rows:
            if ours is not None:
                found.add(ours)
            elif named and named.strip().isdigit():
                found.add(int(named.strip()))
        return found


def _sole_owner(claims: list[tuple[uuid.UUID, Any, bool]]) -> uuid.UUID | None:
    """The newest of the claims that count (see `owners`), None when they are several SDRs'."""
    counted = [claim for claim in claims if claim[2]] or claims
    return counted[-1][0] if len({sdr for _, sdr, _ in counted}) == 1 else None


class EngagementQuerySet(models.QuerySet):
    def signals_for(
        self, sequence_id: uuid.UUID, items: list[Claimed]
    ) -> dict[uuid.UUID, frozenset[str]]:
        """Each enrollment's opened/clicked/replied engagements, for step conditions: its own,
        and its contact's in the same sequence (older rows carry no enrollment id)."""
        by_contact = {c.contact_id: c.id for c in items}
        rows = self.filter(
            Q(enrollment_id__in=[c.id for c in items])
            | Q(contact_id__in=list(by_contact), sequence_id=sequence_id),
            engagement_type__in=SIGNALS,
        ).values_list("enrollment_id", "contact_id", "engagement_type")
        found: dict[uuid.UUID, set[str]] = defaultdict(set)
        for enrollment_id, contact_id, kind in rows:
            found[enrollment_id or by_contact.get(contact_id)].add(kind)
        return {pk: frozenset(kinds) for pk, kinds in found.items()}


class CallTaskQuerySet(models.QuerySet):
    def schedule_once(
        self, *, sequence_id: uuid.UUID, due: list[tuple[Claimed, Any]], now: datetime
    ) -> int:
        """A call task and a `call_scheduled` engagement per (enrollment, call step), however
        often the step is walked: a step record remembers the ones already made."""
        StepRecord, Engagement = _model("StepRecord"), _model("Engagement")  # noqa: N806
        done = set(
            StepRecord.objects.filter(
                enrollment_id__in=[c.id for c, _ in due], action="call"
            ).values_list("enrollment_id", "step_number")
        )
        new = [(c, step) for c, step in due if (c.id, step.step_number) not in done]
        calls = [
            self.model(
                contact_id=c.contact_id,
                sequence_id=sequence_id,
                enrollment_id=c.id,
                call_objective=step.call_objective,
                call_script=step.call_script,
                scheduled_at=now,
            )
            for c, step in new
        ]
        StepRecord.objects.bulk_create(
            StepRecord(enrollment_id=c.id, step_number=step.step_number, action="call")
            for c, step in new
        )
        self.bulk_create(calls)
        Engagement.objects.bulk_create(
            Engagement(
                contact_id=c.contact_id,
                sequence_id=sequence_id,
                enrollment_id=c.id,
                engagement_type=Engagement.Type.CALL_SCHEDULED,
                engaged_at=now,
                metadata={"step_number": step.step_number, "call_id": str(call.id)},
            )
            for (c, step), call in zip(new, calls, strict=True)
        )
        return len(new)
