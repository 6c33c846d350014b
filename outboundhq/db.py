"""Surviving a database connection that died between requests.

Connections are kept between requests (CONN_MAX_AGE). Django can check each one with a
`SELECT 1` before a request's first query (CONN_HEALTH_CHECKS), which costs every request a
round trip; in a profile of the webhook receiver that was about a tenth of a worker's Python
time. The web processes turn the check off (gunicorn.conf.py): the few statements there that
must not fail because the server or pooler dropped an idle connection (storing a delivery,
/health, a pass of the background applier) retry once on a fresh one instead, which costs
nothing until it happens. Other API views answer 503 (outboundhq/views.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from django.db import InterfaceError, OperationalError, connection

T = TypeVar("T")


def once_more_if_disconnected(run: Callable[[], T]) -> T:
    """Run `run`; if it failed because the connection is dead, reconnect and run it again.

    Only outside a transaction (inside one, the work before the failure is lost too), and only
    when the connection really is unusable: a lock timeout or a constraint is raised as it is.
    `run` must be safe to repeat: the first attempt may have reached the database.
    """
    reused = connection.connection is not None  # a failed connect is not worth a second wait
    try:
        return run()
    except (InterfaceError, OperationalError):
        if not reused or connection.in_atomic_block or connection.is_usable():
            raise
        connection.close()
        return run()
