"""Progress of a long command, for a person watching a terminal.

Written to stderr, so stdout stays what scripts read; shown only when stderr is a terminal or
`--progress` asks for it, and never with `--json` (a machine is reading) or from the schedule
(django-q2 calls the functions, not the commands, and passes no callback).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from django.core.management.base import OutputWrapper


def wanted(stderr: OutputWrapper, options: dict[str, Any]) -> bool:
    if options.get("json"):
        return False
    return bool(options.get("progress")) or stderr.isatty()


class Progress:
    """One line per step, e.g. `3/10 SDRs done, 420 leads pushed, 12.3 s elapsed`."""

    def __init__(self, stderr: OutputWrapper) -> None:
        self.stderr = stderr
        self.started = time.monotonic()
        self.lock = threading.Lock()  # the executor reports from its worker threads
        self.done = self.total = 0

    def line(self, text: str) -> None:
        elapsed = time.monotonic() - self.started
        with self.lock:
            # Django styles stderr as errors (red on a terminal): progress is not an error.
            self.stderr.write(f"{text}, {elapsed:.1f} s elapsed", style_func=str)

    def sdrs(self, done: int, total: int, pushed: int) -> None:
        self.done, self.total = done, total
        self.line(f"{done}/{total} SDRs done, {pushed} leads pushed")

    def sdrs_finished(self, pushed: int) -> None:
        """The last line, with the run's own count: a worker's last batch is recorded after
        its last SDR is reported."""
        self.line(f"Finished: {self.done}/{self.total} SDRs done, {pushed} leads pushed")

    def campaigns(self, done: int, total: int, repaired: int) -> None:
        """For the reconcile pass: `4/12 campaigns read, 3 events repaired`."""
        self.line(f"{done}/{total} campaigns read, {repaired} events found")

    def events(self, total: int) -> Callable[[Counter[str]], None]:
        """For `applying.apply`: `200/1500 events done (190 applied, 10 unmatched)`."""

        def report(counts: Counter[str]) -> None:
            outcomes = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items()))
            self.line(f"{sum(counts.values())}/{total} events done ({outcomes or 'none yet'})")

        return report
