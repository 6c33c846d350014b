"""Start-up checks: misconfiguration fails with a message naming the variable."""

from __future__ import annotations

import logging
import zoneinfo
from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, register, run_checks

from smartlead.api import MAX_LEADS_PER_REQUEST

log = logging.getLogger(__name__)


@register(Tags.compatibility, deploy=False)
def configuration_check(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    errors = [
        Error(
            f"{variable} {problem}.",
            hint=f"Fix {variable} in the environment or .env.",
            id="outboundhq.E001",
        )
        for variable, problem in settings.CONFIG_ERRORS
    ]
    if not 1 <= settings.SMARTLEAD_LEADS_PER_REQUEST <= MAX_LEADS_PER_REQUEST:
        errors.append(
            Error(
                f"SMARTLEAD_LEADS_PER_REQUEST must be between 1 and {MAX_LEADS_PER_REQUEST} "
                "(Smartlead's lowest "
                "documented maximum per add-leads request).",
                id="outboundhq.E002",
            )
        )
    if settings.SMARTLEAD_REQUESTS_PER_MINUTE < 1:
        errors.append(
            Error("SMARTLEAD_REQUESTS_PER_MINUTE must be at least 1.", id="outboundhq.E003")
        )
    try:
        zoneinfo.ZoneInfo(settings.SMARTLEAD_SCHEDULE_TIMEZONE)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        errors.append(
            Error(
                f"SMARTLEAD_SCHEDULE_TIMEZONE {settings.SMARTLEAD_SCHEDULE_TIMEZONE!r} is not an "
                "IANA timezone name (e.g. America/New_York).",
                id="outboundhq.E006",
            )
        )
    floor = settings.SMARTLEAD_MIN_WARMUP_REPUTATION
    if floor is not None and not 0 <= floor <= 100:
        errors.append(
            Error(
                "SMARTLEAD_MIN_WARMUP_REPUTATION must be a percentage between 0 and 100 "
                "(or unset: reputation not checked).",
                id="outboundhq.E010",
            )
        )
    if not 5 <= settings.CRON_TIME_BUDGET_SECONDS <= 50:
        errors.append(
            Error(
                "CRON_TIME_BUDGET_SECONDS must be between 5 and 50: a run started by the cron "
                "endpoint has to answer within the web server's 60 s timeout.",
                id="outboundhq.E007",
            )
        )
    errors += alert_problems()
    if not 1 <= settings.EXECUTOR_CONCURRENCY <= 64:
        errors.append(Error("EXECUTOR_CONCURRENCY must be between 1 and 64.", id="outboundhq.E004"))
    if not 10 <= settings.EXECUTOR_TIME_BUDGET_SECONDS < 900:
        errors.append(
            Error(
                "EXECUTOR_TIME_BUDGET_SECONDS must be between 10 and 899: a run must end "
                "before the next 15-minute run starts.",
                id="outboundhq.E005",
            )
        )
    return errors


def alert_problems() -> list[Error]:
    """Alerts that could never arrive are found at start-up, not when a job goes late."""
    errors = []
    if settings.ALERT_EMAIL_TO and not settings.EMAIL_URL and not settings.DEBUG:
        errors.append(
            Error(
                "ALERT_EMAIL_TO is set but EMAIL_URL is not: alert emails have no mail server.",
                hint="Set EMAIL_URL, e.g. smtp+tls://user:password@smtp.example.com:587.",
                id="outboundhq.E008",
            )
        )
    url = settings.ALERT_WEBHOOK_URL
    if url and not url.startswith(("https://", "http://")):
        errors.append(
            Error(
                "ALERT_WEBHOOK_URL must be an http(s) URL (a Slack incoming webhook's).",
                id="outboundhq.E009",
            )
        )
    return errors


def fail_fast_on_bad_configuration() -> None:
    """For servers (gunicorn) that don't run system checks: stop with the messages, no trace.
    With the configuration sound, the database checks too (a lost key-encryption key)."""
    found = configuration_check() or run_checks(tags=[Tags.database], databases=["default"])
    for warning in (p for p in found if not p.is_serious()):
        log.warning("%s: %s", warning.id, warning.msg)  # e.g. what is left to switch over
    problems = [p for p in found if p.is_serious()]
    if problems:
        lines = "\n".join(f"  {p.id}: {p.msg}" for p in problems)
        raise SystemExit(f"OutboundHQ cannot start, configuration is wrong:\n{lines}")
