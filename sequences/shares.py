"""Runs shared out per SDR: the rules over shares and worker heartbeats, as querysets.

A run (the executor's or the reconcile pass's) writes one `Share` per SDR with work; every worker
thread of every process that takes the run's tasks takes shares one at a time (`take`: `SKIP
LOCKED`, so no two take the same SDR) until none is waiting. A taken share carries its own lease
time, written on every enrollment its claims hold, so a dead worker's enrollments are found by
it alone. Each process beats in `outboundhq_worker` (sequences/workers.py); one that stops
beating is dead and its shares go back to waiting.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection, models, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from sequences.choices import ShareState
from sequences.claimed import lease_length

OPEN = (ShareState.WAITING, ShareState.WORKING)
MAX_ERRORS = 200


def stale_before(now: datetime) -> datetime:
    return now - timedelta(seconds=settings.WORKER_TIMEOUT_SECONDS)


def process_start(pid: int) -> str | None:
    """When the process started, in clock ticks since boot (/proc, Linux): with the pid it names
    one process for good, since pids are reused. None when there is no such (live) process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return ""  # no /proc: the pid alone has to do
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else fields[19]  # a zombie is dead


def is_alive_here(worker_id: str) -> bool:
    """Whether a worker of this host is still running (its pid, started when its id says)."""
    _, pid, start = worker_id.rsplit(":", 2)
    now_start = process_start(int(pid))
    if now_start == "":
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return now_start is not None and now_start == start


class WorkerQuerySet(models.QuerySet):
    def beat(self, worker_id: str, *, host: str, pid: int) -> None:
        now = timezone.now()
        if not self.filter(pk=worker_id).update(beat_at=now):
            self.update_or_create(pk=worker_id, defaults={"host": host, "pid": pid, "beat_at": now})

    def is_gone(self, worker_id: str, *, since: datetime) -> bool:
        """Whether the worker that started a run `since` then has stopped: on this host, its
        process is gone; elsewhere, it beat no more for WORKER_TIMEOUT_SECONDS (or never beat)."""
        if not worker_id:
            return False
        if worker_id.rsplit(":", 2)[0] == socket.gethostname()[:80]:
            return not is_alive_here(worker_id)
        beat_at = self.filter(pk=worker_id).values_list("beat_at", flat=True).first()
        return (beat_at or since) < stale_before(timezone.now())

    def dead(self) -> list[str]:
        """Workers that stopped: no beat for WORKER_TIMEOUT_SECONDS, or, on this host, a process
        that is gone (a `kill -9` is seen at once). A holder of shares with no beat on record
        (its row taken over already, or it died before its first beat landed) counts from when
        it took them."""
        here, cutoff = socket.gethostname()[:80], stale_before(timezone.now())
        Share = self.model._meta.apps.get_model("sequences", "Share")  # noqa: N806
        rowless = (
            Share.objects.filter(state=ShareState.WORKING)
            .exclude(worker_id="")
            .exclude(worker_id__in=self.values("pk"))
            .values_list("worker_id", "taken_at")
        )
        seen = list(self.values_list("pk", "host", "beat_at"))
        seen += [(pk, pk.rsplit(":", 2)[0], taken_at) for pk, taken_at in rowless]
        return sorted(
            {
                pk
                for pk, host, when in seen
                if (when is not None and when < cutoff) or (host == here and not is_alive_here(pk))
            }
        )


class ShareQuerySet(models.QuerySet):
    def of_run(self, job: str, run_id: Any) -> ShareQuerySet:
        return self.filter(job=job, run_id=str(run_id))

    def share_out(
        self, job: str, run_id: Any, work: Mapping[uuid.UUID, list[Any]], **extra: Any
    ) -> int:
        """One waiting share per SDR of `work` (SDR → the sequences to work on, or [])."""
        run = str(run_id)
        shares = [
            self.model(job=job, run_id=run, profile_id=sdr, sequence_ids=[str(s) for s in ids])
            for sdr, ids in work.items()
        ]
        for share in shares:
            for name, value in extra.items():
                setattr(share, name, value)
        self.bulk_create(shares, ignore_conflicts=True)
        return len(shares)

    def take(self, job: str, run_id: Any, worker_id: str) -> Any:
        """The next waiting share of the run, now this worker's (None: none is waiting). Its
        lease time is its own: the second, plus the share's id in microseconds. One statement
        on Postgres: every worker thread of every process asks it once per SDR."""
        if connection.vendor == "postgresql":
            return self._take_in_one(job, str(run_id), worker_id)
        with transaction.atomic():
            share = (
                self.select_for_update(skip_locked=True)
                .of_run(job, run_id)
                .filter(state=ShareState.WAITING)
                .order_by("id")
                .first()
            )
            if share is None:
                return None
            now = timezone.now()
            share.state, share.worker_id, share.taken_at = ShareState.WORKING, worker_id, now
            share.attempts += 1
            share.lease_until = (
                now.replace(microsecond=0)
                + lease_length()
                + timedelta(microseconds=share.pk % 1_000_000)
            )
            share.save(update_fields=["state", "worker_id", "taken_at", "attempts", "lease_until"])
        return share

    def _take_in_one(self, job: str, run_id: str, worker_id: str) -> Any:
        fields = self.model._meta.concrete_fields
        table = connection.ops.quote_name(self.model._meta.db_table)
        columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} SET state = %s, worker_id = %s, taken_at = now(), "  # noqa: S608
                "attempts = attempts + 1, lease_until = date_trunc('second', now()) "
                "+ %s * interval '1 second' + (id %% 1000000) * interval '1 microsecond' "
                f"WHERE id = (SELECT id FROM {table} WHERE job = %s AND run_id = %s "
                "AND state = %s ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) "
                f"RETURNING {columns}",
                [
                    ShareState.WORKING,
                    worker_id,
                    lease_length().total_seconds(),
                    job,
                    run_id,
                    ShareState.WAITING,
                ],
            )
            row = cursor.fetchone()
        if row is None:
            return None
        values = [
            f.from_db_value(v, None, connection) if hasattr(f, "from_db_value") else v
            for f, v in zip(fields, row, strict=True)
        ]
        return self.model.from_db("default", [f.attname for f in fields], values)

    def finish(self, share: Any, *, counts: dict[str, Any], errors: list[str]) -> bool:
        """The share is done, with what it did; False when it was taken over meanwhile (this
        worker was thought dead), and the counts are not kept: the work was done again."""
        return bool(
            self.filter(pk=share.pk, state=ShareState.WORKING, worker_id=share.worker_id).update(
                state=ShareState.DONE,
                counts=counts,
                errors=[*share.errors, *errors][:MAX_ERRORS],  # a takeover's note stays
                finished_at=timezone.now(),
            )
        )

    def suspect(self, job: str, run_id: Any, worker_id: str) -> bool:
        """Whether a share of the run is held by a worker that missed a beat or two: it may be
        dead, and is worth waiting for rather than leaving its SDR for the next run."""
        Worker = self.model._meta.apps.get_model("sequences", "Worker")  # noqa: N806
        late = timezone.now() - timedelta(seconds=2 * settings.WORKER_BEAT_SECONDS)
        beating = Worker.objects.filter(pk=OuterRef("worker_id"), beat_at__gte=late)
        return (
            self.of_run(job, run_id)
            .filter(state=ShareState.WORKING)
            .exclude(worker_id=worker_id)
            .filter(~Exists(beating))
            .exists()
        )

    def leave_waiting(self, job: str, run_id: Any) -> int:
        """Shares no worker took before the run's time ran out: for the next run."""
        return (
            self.of_run(job, run_id)
            .filter(state=ShareState.WAITING)
            .update(state=ShareState.LEFT, finished_at=timezone.now())
        )

    def stranded(self, job: str, run_id: Any) -> int:
        """How many of a run's shares wait with no worker on the run (its tasks all stopped):
        they need tasks again."""
        shares = self.of_run(job, run_id)
        if shares.filter(state=ShareState.WORKING).exists():
            return 0
        return shares.filter(state=ShareState.WAITING).count()

    def still_open(self, job: str, run_id: Any) -> bool:
        return self.of_run(job, run_id).filter(state__in=OPEN).exists()

    def held_by(self, workers: list[str]) -> ShareQuerySet:
        return self.filter(state=ShareState.WORKING, worker_id__in=workers)

    def hand_back(self, share: Any, *, in_time: bool, why: str) -> bool:
        """A dead worker's share: waiting again (its run still has time) or left for the next
        run; False when it finished or was handed back meanwhile."""
        state = ShareState.WAITING if in_time else ShareState.LEFT
        return bool(
            self.filter(pk=share.pk, state=ShareState.WORKING, worker_id=share.worker_id).update(
                state=state,
                worker_id="",
                lease_until=None,
                errors=[*share.errors, why][-MAX_ERRORS:],
                finished_at=None if in_time else timezone.now(),
            )
        )

    def workers_of(self, job: str, run_id: Any) -> int:
        taken = self.of_run(job, run_id).exclude(Q(worker_id="") | Q(taken_at__isnull=True))
        return taken.values("worker_id").distinct().count()
