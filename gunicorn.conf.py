"""gunicorn settings that cannot go on the Procfile's command line.

The process shape (bind, workers, timeouts, recycling) is on the `web` line of the Procfile, where
Railway and readers see it. Here: gunicorn's own error and access logs go through the app's JSON
formatter and secret redaction, so an access line for `/x?secret=…` never shows the secret.
"""

from __future__ import annotations

import os

from outboundhq.logs import gunicorn_logconfig

# Same choice as settings.LOG_FORMAT, read from the environment alone: importing the settings
# here would start Sentry in the master process, before gunicorn forks its workers.
_debug = os.environ.get("DJANGO_DEBUG", "").strip().lower() in {"1", "true", "yes", "on", "y"}
_format = os.environ.get("LOG_FORMAT") or ("text" if _debug else "json")

# The web processes skip Django's per-request connection health check (a `SELECT 1` round trip
# before every webhook delivery's insert); the statements that matter there retry once on a
# dropped connection instead (outboundhq/db.py). The worker and commands keep the check.
os.environ.setdefault("DATABASE_CONN_HEALTH_CHECKS", "false")

logconfig_dict = gunicorn_logconfig(level=os.environ.get("LOG_LEVEL", "INFO").upper(), fmt=_format)
# The request id joins an access line to the app's lines for the same request; %(M)s is in ms.
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms "%(a)s" request_id=%({x-request-id}o)s'


def post_worker_init(worker: object) -> None:
    """Each web worker, after the fork, applies stored webhook events on a thread of its own
    (smartlead/applier.py); the app is loaded by now."""
    from smartlead.applier import applier

    applier.start()


def worker_exit(server: object, worker: object) -> None:
    """A recycled or stopped worker applies what it stored before it goes."""
    from smartlead.applier import applier

    applier.stop(timeout=5.0)
