"""Smartlead's rate limits, kept on our side: one sliding-window limiter per API key.

The clock, sleep and randomness are module attributes the tests replace with a fake clock, so
no test sleeps for real; the client's retry waits use the same ones.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections import deque
from collections.abc import Callable

from smartlead.api.errors import RateLimited

BURST, BURST_WINDOW = 10, 2.0  # the legacy "10 requests every 2 s" rule, which fits every doc
WINDOW_MARGIN = 0.25  # seconds added to each window: our send time is not Smartlead's receipt time

_clock: Callable[[], float] = time.monotonic
_sleep: Callable[[float], None] = time.sleep
_random: Callable[[], float] = random.random


class RateLimiter:
    """Sliding-window limiter for one API key: at most `per_window` per `window` seconds and at
    most `burst` per `burst_window`. Callers reserve a send slot under the lock and sleep outside
    it, so one thread's wait never blocks another key (or the lock)."""

    def __init__(
        self,
        per_window: int,
        *,
        window: float = 60.0,
        burst: int = BURST,
        burst_window: float = BURST_WINDOW,
        margin: float = WINDOW_MARGIN,
    ):
        self.per_window = max(1, per_window)
        self.window = window + margin
        self.burst = max(1, burst)
        self.burst_window = burst_window + margin
        self._slots: deque[float] = deque(maxlen=max(self.per_window, self.burst))
        self._paused_until = 0.0
        self._lock = threading.Lock()

    def acquire(self, max_wait: float | None = None) -> float:
        """Reserve the earliest allowed send time, wait for it, and return it.

        Raises RateLimited, reserving nothing, when the wait would exceed `max_wait`.
        """
        with self._lock:
            now = clock()
            slot = self._earliest(now)
            if max_wait is not None and slot - now > max_wait:
                raise RateLimited(
                    f"The client-side limit for this Smartlead key needs a wait of "
                    f"{slot - now:.1f} s, past this run's deadline; try again later.",
                    retry_after=slot - now,
                    status=None,
                )
            self._slots.append(slot)
        if slot > now:
            sleep(slot - now)
        return slot

    def set_rate(self, per_window: int) -> None:
        """The latest client's setting wins: one key has one limit in the process."""
        with self._lock:
            self.per_window = max(1, per_window)
            self._slots = deque(self._slots, maxlen=max(self.per_window, self.burst))

    def pause_until(self, until: float) -> None:
        """After a real 429 (another integration may share the key), hold every thread back."""
        with self._lock:
            self._paused_until = max(self._paused_until, until)

    def _earliest(self, now: float) -> float:
        slots = self._slots
        slot = max(now, self._paused_until, slots[-1] if slots else now)
        if len(slots) >= self.per_window:
            slot = max(slot, slots[-self.per_window] + self.window)
        if len(slots) >= self.burst:
            slot = max(slot, slots[-self.burst] + self.burst_window)
        return slot


def clock() -> float:
    return _clock()


def sleep(seconds: float) -> None:
    _sleep(seconds)


def jitter() -> float:
    return _random()


_limiters: dict[str, RateLimiter] = {}
_limiters_lock = threading.Lock()


def limiter_for(api_key: str, requests_per_minute: int) -> RateLimiter:
    """The process-wide limiter for one key, shared by every client and thread using that key."""
    digest = hashlib.sha256(api_key.encode()).hexdigest()
    with _limiters_lock:
        limiter = _limiters.get(digest)
        if limiter is None:
            limiter = _limiters[digest] = RateLimiter(requests_per_minute)
        else:
            limiter.set_rate(requests_per_minute)
        return limiter


def reset_rate_limiters() -> None:
    """Forget every key's history (tests; a fresh process starts this way anyway)."""
    with _limiters_lock:
        _limiters.clear()
