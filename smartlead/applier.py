"""The background applier: a thread of each web process that applies stored webhook events.

Applying in the request would cost every delivery a transaction of its own; here a burst of
deliveries becomes one batch. It is started and stopped in one visible place, gunicorn's worker
hooks (gunicorn.conf.py: `post_worker_init` starts it after the fork, `worker_exit` stops it).
The receiver calls `hand_off()` after storing an event: a nudge when this process runs the
applier, otherwise (tests, `runserver`, a one-off process) the event is applied right there.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time

from django.db import close_old_connections, connection

from outboundhq.db import once_more_if_disconnected
from smartlead.applying import Busy, apply, apply_pending
from smartlead.models import WebhookEvent

log = logging.getLogger(__name__)

# This thread shares the GIL with the worker's request thread. Python hands the GIL over every
# 5 ms by default; 1 ms caps what a batch adds to a request's latency (p99 at 200/s: about
# 30-60 ms -> 15 ms in bench/). A process-wide setting, so it is set only where the applier
# starts, in a web worker.
SWITCH_INTERVAL = 0.001


class Applier:
    """Waits `window` after a nudge for more events, then claims and applies everything waiting.

    The processes take turns (`exclusive`); one that finds another applying looks again after
    `window`. A nudge is never lost: the flag is cleared before claiming, so an event stored
    meanwhile sets it again. An idle thread still looks every `idle_poll` seconds, for events a
    dead process left behind.
    """

    window = 0.25
    idle_poll = 30.0

    def __init__(self) -> None:
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = 0

    @property
    def running(self) -> bool:
        # A forked child inherits the object but not the thread.
        alive = self._thread is not None and self._thread.is_alive()
        return alive and self._pid == os.getpid()

    def start(self) -> None:
        if self.running:
            return
        self._pid = os.getpid()
        self._stopping.clear()
        sys.setswitchinterval(SWITCH_INTERVAL)
        self._thread = threading.Thread(
            target=self._run, name="smartlead-webhook-applier", daemon=True
        )
        self._thread.start()

    def nudge(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the current pass, applying what is stored, and close the thread's connection."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(timeout=self.idle_poll)
            time.sleep(self.window)
            self._wake.clear()
            # The last pass before exiting cannot wait for its turn.
            self._pass(exclusive=not self._stopping.is_set())
        connection.close()

    def _pass(self, *, exclusive: bool) -> None:
        try:
            close_old_connections()
            # Web processes skip connection health checks: a dropped connection costs a retry.
            once_more_if_disconnected(
                lambda: apply(WebhookEvent.objects.pending(), exclusive=exclusive)
            )
        except Busy:
            self._wake.set()  # another process is applying: look again after the window
        except Exception:  # noqa: BLE001 - the events stay stored; the next pass retries
            log.exception("Applying Smartlead webhook events in the background failed")
            time.sleep(1.0)


applier = Applier()


def hand_off() -> None:
    """After a new event is stored: nudge this process's applier, or apply it now."""
    if applier.running:
        applier.nudge()
    else:
        apply_pending()
