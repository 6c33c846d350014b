"""`manage.py reconcile_smartlead`: what Smartlead knows that no webhook brought, applied now
(smartlead/reconcile.py). The hourly schedule runs the same."""

from __future__ import annotations

import json
import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from outboundhq.progress import Progress, wanted
from sequences.management.commands.execute_sequences import scope_problem
from smartlead.management.commands.reprocess_webhooks import since as parse_since
from smartlead.reconcile import reconcile, summary


class Command(BaseCommand):
    help = (
        "Read each campaign's replies, bounces and unsubscribes from Smartlead; apply missed ones."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--user", type=uuid.UUID, help="Only this SDR's campaigns.")
        parser.add_argument("--sequence", type=uuid.UUID, help="Only this sequence's campaign.")
        parser.add_argument("--since", help="Only events from this ISO date or date-time on.")
        parser.add_argument("--json", action="store_true", help="The run record as JSON.")
        parser.add_argument(
            "--progress",
            action="store_true",
            help="Progress on stderr even when it is not a terminal (never with --json).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if problem := scope_problem(options["user"], options["sequence"]):
            raise CommandError(problem)
        since = None
        if options["since"]:
            try:
                since = parse_since(options["since"])
            except ValueError:
                raise CommandError(
                    f"--since {options['since']!r} is not an ISO date or date-time "
                    "(e.g. 2026-12-01 or 2026-12-01T09:00)."
                ) from None
        try:
            run = reconcile(
                trigger="command",
                user_id=options["user"],
                sequence_id=options["sequence"],
                since=since,
                progress=Progress(self.stderr).campaigns if wanted(self.stderr, options) else None,
            )
        except DatabaseError as exc:
            raise CommandError(
                f"The reconcile pass could not run: the database is unreachable ({exc})."
            ) from None
        if options["json"]:
            data = {
                "id": run.pk,
                "campaigns": run.campaigns,
                "repaired": run.repaired,
                "completed": run.completed,
                "smartlead_requests": run.smartlead_requests,
                "errors": run.errors,
            }
            self.stdout.write(json.dumps(data))
        else:
            self.stdout.write(f"Reconcile run {run.pk}: {summary(run)}")
            for error in run.errors:
                self.stdout.write(f"  {error}")
