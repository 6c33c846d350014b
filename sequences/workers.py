"""This process as a worker of shared-out runs (sequences/shares.py has the rules over rows).

- `heartbeat()`: the process's identity (host, pid and start time) and a daemon thread that
  beats every WORKER_BEAT_SECONDS while the process holds leases. Mature job queues (Oban,
  good_job, Sidekiq's reliable fetch) hand a stopped process's work on the same way.
- `take_over()`: dead workers' work given back: their shares to waiting (or left for the next
  run once their run's time is up), the enrollments their claims held ready again, their
  campaign provisioning leases freed. Called when a run starts, by idle workers waiting for a
  suspect share, and every minute by the watchdog (outboundhq/watch.py).
- `taken(...)`: the shares one thread works on, until none is waiting.
- `in_threads(...)`: a body on N threads, each with its own database connection.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connections, transaction
from django.utils import timezone
from django_q.tasks import async_task

from outboundhq import logs
from sequences.models import CampaignProvisioning, Enrollment, Job, Share, Worker
from sequences.shares import process_start

log = logging.getLogger(__name__)
# The task that works on a run of each job, by name: django-q2 imports it when a process takes
# it (these modules are above this one).
WORK_TASKS = {
    Job.EXECUTE: "sequences.tasks.work_on_run",
    Job.RECONCILE: "smartlead.tasks.work_on_pass",
}


@dataclass
class Heartbeat:
    worker_id: str
    host: str
    pid: int
    thread: threading.Thread | None = None
    stopped: threading.Event = field(default_factory=threading.Event)
    first_beat: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        """Beat; and look for workers that stopped: their work is taken over from here, so a
        live process hands it on within seconds even when nothing else runs."""
        while True:
            try:
                Worker.objects.beat(self.worker_id, host=self.host, pid=self.pid)
                take_over()
            except Exception:  # noqa: BLE001 - a missed beat is retried; the thread never dies
                log.warning("Worker %s could not beat", self.worker_id, exc_info=True)
            finally:
                # Not a connection held for ever per process (nor through a test's teardown).
                connections.close_all()
                self.first_beat.set()
            if self.stopped.wait(settings.WORKER_BEAT_SECONDS):
                self.leave()
                return

    def leave(self) -> None:
        """Stopped on purpose: its row goes, so nobody waits out a timeout for it (whatever it
        still holds is taken over at once) and no beat of it outlives the stop."""
        try:
            Worker.objects.filter(pk=self.worker_id).delete()
        except Exception:  # noqa: BLE001 - the watchdog removes the row in time anyway
            log.warning("Worker %s could not remove its row", self.worker_id, exc_info=True)
        finally:
            connections.close_all()


_heartbeat: Heartbeat | None = None
_lock = threading.Lock()


def heartbeat() -> Heartbeat:
    """This process's heartbeat, started on first use. A forked process (django-q2's workers)
    is a new worker with a new beat: the identity is checked against the pid each time."""
    global _heartbeat
    with _lock:
        pid = os.getpid()
        if _heartbeat is None or _heartbeat.pid != pid:
            host = socket.gethostname()[:80]
            worker = Heartbeat(identity(), host, pid)
            worker.thread = threading.Thread(target=worker.run, name="heartbeat", daemon=True)
            worker.thread.start()
            # The first beat lands before any work is taken, so a holder of work is on record
            # (on the thread's own connection: committed whatever transaction the caller is in).
            worker.first_beat.wait(settings.WORKER_BEAT_SECONDS)
            _heartbeat = worker
        return _heartbeat


def stop_heartbeat() -> None:
    """Stops this process's heartbeat and removes its row (the test suite does after each test);
    the next use starts another. A worker process's simply ends with it."""
    global _heartbeat
    with _lock:
        beating, _heartbeat = _heartbeat, None
    if beating is not None and beating.thread is not None:
        beating.stopped.set()
        beating.thread.join()


def take_over() -> int:
    """Dead workers' work given back; returns how many shares. Each share in its own
    transaction: its enrollments released and the share handed back together."""
    dead = Worker.objects.dead()
    if not dead:
        return 0
    now, given, runs = timezone.now(), 0, set()
    for share in Share.objects.held_by(dead):
        why = f"Taken over from worker {share.worker_id}, which stopped."
        # A run of one process (a command) has no other worker to take it over: left, then.
        in_time = share.shared and share.deadline > now
        if give_back(share, in_time=in_time, why=why):
            given += 1
            if in_time:
                runs.add((share.job, share.run_id))
    CampaignProvisioning.objects.release_leases_of(dead)
    Worker.objects.filter(pk__in=dead).delete()
    for job, run_id in sorted(runs):
        # A task for any live process: its other workers may have finished already.
        async_task(WORK_TASKS[job], run_id, task_name=f"{job} {run_id}: take over")
    if given:
        log.warning("Took over %d shares of %d stopped workers", given, len(dead))
    return given


def identity() -> str:
    """This process's worker id, without starting its heartbeat."""
    host, pid = socket.gethostname()[:80], os.getpid()
    return f"{host}:{pid}:{process_start(pid) or ''}"


def give_back(share: Share, *, in_time: bool, why: str) -> bool:
    """A share no live thread works on: waiting again (`in_time`) or left for the next run,
    and the enrollments its claims held ready again, together."""
    with transaction.atomic():
        if not Share.objects.hand_back(share, in_time=in_time, why=why):
            return False  # finished or handed back meanwhile
        if share.lease_until is not None:
            Enrollment.objects.release_lease(share.lease_until, at=share.run_started)
    return True


def leave_mine(job: str, run_id: object) -> int:
    """Shares this process still holds though its threads have ended (one died): left for the
    next run, their enrollments ready for it."""
    mine = Share.objects.of_run(job, run_id).held_by([heartbeat().worker_id])
    why = "Its worker thread stopped; left for the next run."
    return sum(give_back(share, in_time=False, why=why) for share in mine)


def taken(job: str, run_id: object, *, deadline: float) -> Iterator[Share]:
    """The shares this thread works on, one at a time, until none is waiting or the deadline.
    Before giving up it waits while a share of the run is held by a worker that missed beats:
    if that worker is dead, its SDR is taken over here, within WORKER_TIMEOUT_SECONDS."""
    me = heartbeat().worker_id
    while time.monotonic() < deadline:
        share = Share.objects.take(job, run_id, me)
        if share is not None:
            yield share
        elif Share.objects.suspect(job, run_id, me):
            time.sleep(settings.WORKER_BEAT_SECONDS)
            take_over()
        else:
            return


def in_threads(count: int, body: Callable[[], None], *, name: str) -> None:
    """`body` on `count` threads, each with its own database connection, closed after (with a
    count of 1, on this thread). The run's id stays on every log line."""
    if count <= 1:
        body()
        return
    run_id = logs.run_id.get()

    def thread_body() -> None:
        token = logs.run_id.set(run_id)
        try:
            body()
        finally:
            connections.close_all()
            logs.run_id.reset(token)

    threads = [threading.Thread(target=thread_body, name=f"{name}-{n}") for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
