"""Which workers are dead, and what happens to their shares (sequences/shares.py, workers.py),
on the database: the end-to-end kills are in tests/test_scale_out.py."""

from __future__ import annotations

import socket
import subprocess
import sys
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from sequences import workers
from sequences.choices import Job, ShareState
from sequences.models import Share, Worker

pytestmark = pytest.mark.django_db(transaction=True)
HERE = socket.gethostname()[:80]


def gone_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(done.stdout)


def held(worker_id: str, *, taken_ago: float = 0) -> Share:
    now = timezone.now()
    return Share.objects.create(
        job=Job.EXECUTE,
        run_id=str(uuid.uuid4()),
        profile_id=uuid.uuid4(),
        state=ShareState.WORKING,
        worker_id=worker_id,
        run_started=now,
        deadline=now + timedelta(minutes=10),
        shared=False,  # a command's run: taken over, it is left for the next run
        taken_at=now - timedelta(seconds=taken_ago),
        lease_until=now + timedelta(minutes=5),
    )


def test_a_holder_that_died_before_its_first_beat_is_taken_over_at_once():
    share = held(f"{HERE}:{gone_pid()}:1234")
    assert not Worker.objects.exists()
    assert workers.take_over() == 1
    share.refresh_from_db()
    assert share.state == ShareState.LEFT and share.worker_id == ""
    assert any("Taken over" in e for e in share.errors)


def test_a_holder_on_another_host_with_no_beat_is_dead_only_after_the_timeout(settings):
    settings.WORKER_TIMEOUT_SECONDS = 30
    fresh = held("elsewhere:41:99")
    assert Worker.objects.dead() == []
    Share.objects.filter(pk=fresh.pk).update(taken_at=timezone.now() - timedelta(seconds=31))
    assert Worker.objects.dead() == ["elsewhere:41:99"]


def test_a_beating_worker_and_this_process_are_alive():
    me = workers.heartbeat().worker_id
    held(me, taken_ago=3600)
    assert Worker.objects.filter(pk=me).exists()  # on record before it takes anything
    Worker.objects.beat("elsewhere:42:1", host="elsewhere", pid=42)
    assert Worker.objects.dead() == []
    assert workers.take_over() == 0


def test_a_worker_silent_past_the_timeout_is_dead_and_its_row_goes(settings):
    settings.WORKER_TIMEOUT_SECONDS = 30
    Worker.objects.beat("elsewhere:43:1", host="elsewhere", pid=43)
    Worker.objects.filter(pk="elsewhere:43:1").update(
        beat_at=timezone.now() - timedelta(seconds=31)
    )
    share = held("elsewhere:43:1")
    assert workers.take_over() == 1
    assert not Worker.objects.filter(pk="elsewhere:43:1").exists()
    share.refresh_from_db()
    assert share.state == ShareState.LEFT


def test_it_removes_its_row_when_its_heartbeat_is_stopped_on_purpose():
    beating = workers.heartbeat()
    assert Worker.objects.filter(pk=beating.worker_id).exists()
    workers.stop_heartbeat()
    assert not Worker.objects.filter(pk=beating.worker_id).exists()
