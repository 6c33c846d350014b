"""`manage.py send_alerts`: judge every job now and announce what changed (outboundhq/alerts.py);
the `send-alerts` schedule runs the same every 5 minutes."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError
from django.utils import timezone

from outboundhq.alerts import check


class Command(BaseCommand):
    help = "Judge every job (OK / late / failing) and alert on each change, once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Only print the verdicts; record and send nothing.",
        )
        parser.add_argument("--json", action="store_true", help="The verdicts and alerts as JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        now = timezone.now()
        try:
            report = check(now, announce=not options["dry_run"])
        except DatabaseError as exc:
            raise CommandError(
                f"The check could not run: the database is unreachable ({exc})."
            ) from None
        if options["json"]:
            self.stdout.write(json.dumps(report.as_dict(now), indent=2))
            return
        for verdict in report.verdicts:
            self.stdout.write(f"{verdict.status.label.upper():8} {verdict.name}: {verdict.detail}")
        if options["dry_run"]:
            return
        for change in report.changes:
            self.stdout.write(f"Announced: {change.line()}")
        if report.changes:
            self.stdout.write(f"Sent by: {', '.join(report.sent) or 'no channel configured'}")
        for error in report.errors:
            self.stderr.write(error)
        if report.errors:
            raise CommandError(f"{len(report.errors)} alert channel(s) failed; see above.")
