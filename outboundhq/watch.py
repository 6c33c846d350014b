"""The watchdog: every minute, work that a stopped worker held is taken over (its SDRs back to
waiting, its claims and leases given back), and runs left open are closed or continued, so a
crashed process costs the executor and the reconcile pass a minute, not a run's time budget."""

from __future__ import annotations

from typing import Any

from sequences import tasks as executor_tasks
from smartlead import tasks as reconcile_tasks
from smartlead.api import limits
from smartlead.budget import PostgresStore


def run_scheduled() -> dict[str, Any]:
    """What the `watch-workers` schedule runs (defined with the executor's, sequences/tasks.py).
    Every live worker's heartbeat takes over a stopped one's work within seconds as well; this
    also covers a run whose every worker stopped, and tasks the broker lost."""
    pruned = PostgresStore.prune() if isinstance(limits.store(), PostgresStore) else 0
    return {
        "executor": executor_tasks.watch(),
        "reconcile": reconcile_tasks.watch(),
        "idle_budgets_pruned": pruned,
    }
