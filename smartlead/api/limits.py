"""Smartlead's rate limits, kept on our side: one request budget per API key, shared by every
process that uses the key (the executor, the outbox, the reconcile pass, the connect API, the
admin) when the store is shared (Redis or Postgres, smartlead/budget.py), else per process.

Smartlead limits each key across all its callers (its current guide: Standard 60 a minute and
1,000 an hour, bursts of 10 a second; the older page, 60 per 60 s; the legacy help centre, 10
per 2 s). A budget therefore counts every request in sliding windows of a minute, an hour and
2 s (`Limits`), and a request goes only when all three have room. Work that can wait leaves
room for work that cannot (`Priority`): new pushes and reads stop at 60 % of each window and a
person waiting at 80 %, so what changes in the app (an unsubscribe, a pause) still goes through
when the budget is short. A 429's Retry-After, or headers saying the key is spent (another
integration such as Zapier or Clay uses it too), hold the whole key back for everyone.

The clock, sleep and randomness are module attributes the tests replace with a fake clock, so
no test sleeps for real; the client's retry waits use the same ones.
"""

from __future__ import annotations

import enum
import hashlib
import math
import random
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from smartlead.api.errors import RateLimited

BURST, BURST_WINDOW = 10, 2.0  # the legacy "10 requests every 2 s" rule, which fits every doc
WINDOW_MARGIN = 0.25  # seconds added to each window: our send time is not Smartlead's receipt time
MINUTE, HOUR = 60.0, 3600.0
MAX_KEYS_IN_MEMORY = 5000  # a process's budgets are forgotten oldest first beyond this

_clock: Callable[[], float] = time.monotonic
_sleep: Callable[[float], None] = time.sleep
_random: Callable[[], float] = random.random


def clock() -> float:
    return _clock()


def sleep(seconds: float) -> None:
    _sleep(seconds)


def jitter() -> float:
    return _random()


class Priority(enum.IntEnum):
    """Who is asking; a higher one may use more of each window."""

    BULK = 0  # new pushes, reconcile reads, campaign setup: they can wait for the next run
    INTERACTIVE = 1  # a person waits: the connect API, the admin
    CHANGE = 2  # what changed in the app must reach Smartlead: unsubscribes, pauses (the outbox)


# The share of each window a priority may use: the rest is kept for the ones above it.
SHARE = {Priority.BULK: 0.6, Priority.INTERACTIVE: 0.8, Priority.CHANGE: 1.0}


@dataclass(frozen=True)
class Limits:
    """One key's limits: per minute, per hour and per burst window."""

    per_minute: int = 60
    per_hour: int = 1000
    burst: int = BURST
    minute: float = MINUTE
    hour: float = HOUR
    burst_window: float = BURST_WINDOW
    margin: float = WINDOW_MARGIN

    def windows(self, priority: Priority) -> list[tuple[int, float]]:
        """(requests, seconds) pairs a request of this priority must fit in."""
        share = SHARE[priority]
        return [
            (max(1, math.floor(self.per_minute * share)), self.minute + self.margin),
            (max(1, math.floor(self.per_hour * share)), self.hour + self.margin),
            (self.burst, self.burst_window + self.margin),
        ]

    @property
    def kept(self) -> int:
        """How many past requests a store keeps per key: enough for every window."""
        return max(self.per_minute, self.per_hour, self.burst)


class Store(Protocol):
    """Where budgets live. Every method is atomic for one key across all its callers."""

    def take(
        self, key: str, windows: list[tuple[int, float]], kept: int, *, record: bool = True
    ) -> float:
        """Records a request now if every window has room and the key is not paused; returns 0
        then, else the seconds until it could (nothing recorded). `record=False` only asks."""

    def pause(self, key: str, seconds: float) -> None:
        """Nothing goes for the key for `seconds` (a longer pause already set stays)."""

    def used(self, key: str, windows: list[float]) -> list[int]:
        """Requests of the key in each of these windows (seconds back from now)."""


def earliest(times: list[float], now: float, paused: float, windows: list[tuple[int, float]]):
    """Seconds from `now` until a request fits every window (0: now), by the sorted request
    times of a key. Shared by every store, so they all decide alike."""
    wait = max(0.0, paused - now)
    for limit, window in windows:
        if len(times) >= limit:
            wait = max(wait, times[-limit] + window - now)
    return wait


class MemoryStore:
    """Budgets of this process only (the embedded SQLite default, one process, and tests)."""

    def __init__(self) -> None:
        self._times: OrderedDict[str, deque[float]] = OrderedDict()
        self._paused: dict[str, float] = {}
        self._lock = threading.Lock()

    def _of(self, key: str, kept: int) -> deque[float]:
        times = self._times.get(key)
        if times is None or times.maxlen != kept:
            times = self._times[key] = deque(times or (), maxlen=kept)
        self._times.move_to_end(key)
        while len(self._times) > MAX_KEYS_IN_MEMORY:  # junk keys tried at the connect API
            old, _ = self._times.popitem(last=False)
            self._paused.pop(old, None)
        return times

    def take(
        self, key: str, windows: list[tuple[int, float]], kept: int, *, record: bool = True
    ) -> float:
        with self._lock:
            times, now = self._of(key, kept), clock()
            wait = earliest(list(times), now, self._paused.get(key, 0.0), windows)
            if wait <= 0 and record:
                times.append(now)
            return wait

    def pause(self, key: str, seconds: float) -> None:
        with self._lock:
            self._paused[key] = max(self._paused.get(key, 0.0), clock() + seconds)

    def used(self, key: str, windows: list[float]) -> list[int]:
        with self._lock:
            now, times = clock(), list(self._times.get(key, ()))
        return [sum(1 for t in times if t > now - w) for w in windows]


class Budget:
    """One key's request budget, in whichever store holds it."""

    def __init__(self, key: str, store: Store, limits: Limits) -> None:
        self.key = key  # a digest, never the API key itself
        self.store = store
        self.limits = limits

    def acquire(self, max_wait: float | None = None, priority: Priority = Priority.BULK) -> float:
        """Waits until a request fits and records it; returns when (the local clock). Raises
        RateLimited, recording nothing, when the wait would exceed `max_wait`."""
        windows, started = self.limits.windows(priority), clock()
        while (wait := self.store.take(self.key, windows, self.limits.kept)) > 0:
            waited = clock() - started
            if max_wait is not None and waited + wait > max_wait:
                raise RateLimited(
                    f"The request budget of this Smartlead key needs a wait of {wait:.1f} s "
                    f"({self.describe(priority)}), past this run's deadline; try again later.",
                    retry_after=wait,
                    status=None,
                )
            sleep(wait)
        return clock()

    def pause(self, seconds: float) -> None:
        if seconds > 0:
            self.store.pause(self.key, seconds)

    def observe(self, headers: Mapping[str, str]) -> None:
        """Smartlead's X-RateLimit-* headers, when it sends them (the docs' guide names them; no
        integrator has confirmed them live). A key Smartlead says is spent is held back until
        its window resets; when it has less left than we used of it, another integration (the
        SDR's Zapier or Clay) uses it too, and its last requests are spread out."""
        remaining = _number(headers, "X-RateLimit-Remaining")
        reset = _number(headers, "X-RateLimit-Reset")
        if remaining is None or reset is None:
            return
        # The guide says a Unix timestamp (whole seconds: a second more, not to wake before it);
        # a small number can only be seconds from now.
        seconds = min((reset - time.time() if reset > 1e9 else reset) + 1, self.limits.hour)
        if remaining <= 0:
            self.pause(seconds)
        elif remaining < self.limits.burst:
            limit = _number(headers, "X-RateLimit-Limit") or self.limits.per_minute
            (ours,) = self.store.used(self.key, [self.limits.minute + self.limits.margin])
            if limit - remaining > ours:
                self.pause(min(seconds / (remaining + 1), self.limits.minute))

    def usage(self) -> dict[str, float]:
        """What the key has used: requests in the last minute and hour, and the seconds until a
        new push may go (0: now)."""
        bulk = self.limits.windows(Priority.BULK)
        minute, hour = self.store.used(self.key, [bulk[0][1], bulk[1][1]])
        wait = self.store.take(self.key, bulk, self.limits.kept, record=False)
        return {"minute": minute, "hour": hour, "wait": wait}

    def describe(self, priority: Priority = Priority.BULK) -> str:
        minute, hour, burst = self.limits.windows(priority)
        return f"{minute[0]} a minute, {hour[0]} an hour, {burst[0]} per {burst[1]:.0f} s"


def _number(headers: Mapping[str, str], name: str) -> float | None:
    try:
        return float(headers.get(name, ""))
    except ValueError:
        return None


_store: Store = MemoryStore()
_store_lock = threading.Lock()


def use_store(store: Store) -> None:
    """Where every budget lives from now on (smartlead/budget.py chooses at start-up)."""
    global _store
    with _store_lock:
        _store = store


def store() -> Store:
    return _store


def digest(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def budget_for(api_key: str, limits: Limits) -> Budget:
    """The budget of one key, shared by every client, thread and (with a shared store) process
    using that key."""
    return Budget(digest(api_key), _store, limits)


def reset_rate_limiters() -> None:
    """A fresh, empty in-process store (tests; a fresh process starts this way anyway)."""
    use_store(MemoryStore())
