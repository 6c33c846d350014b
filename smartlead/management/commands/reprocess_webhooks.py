"""`manage.py reprocess_webhooks`: apply again the Smartlead events that did not apply.

By default: failed events, and events stuck as received (stored, but the process applying them
died). Events already applied are never applied twice; ignored and rejected ones cannot change.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from outboundhq.progress import Progress, wanted
from smartlead import applying
from smartlead.models import WebhookEvent, WebhookEventQuerySet


def since(value: str) -> datetime:
    """ISO date or date-time; naive values are in the project's time zone."""
    parsed = parse_datetime(value)
    if parsed is None and (day := parse_date(value)) is not None:
        parsed = datetime(day.year, day.month, day.day)
    if parsed is None:
        raise ValueError(value)
    return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed)


class Command(BaseCommand):
    help = "Apply failed (and, with --unmatched, unmatched) Smartlead webhook events again."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--id", type=int, action="append", dest="ids", help="This event.")
        parser.add_argument("--failed", action="store_true", help="Failed events (default).")
        parser.add_argument(
            "--unmatched", action="store_true", help="Unmatched events (e.g. after importing)."
        )
        parser.add_argument("--since", type=since, help="Only events received since this time.")
        parser.add_argument("--limit", type=int, help="At most this many events.")
        parser.add_argument(
            "--progress",
            action="store_true",
            help="Progress on stderr even when it is not a terminal.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["limit"] is not None and options["limit"] < 1:
            raise CommandError("--limit must be a positive number of events.")
        events = self.select(options)
        selected = events.count()
        total = min(selected, options["limit"] or selected)
        progress = Progress(self.stderr).events(total) if wanted(self.stderr, options) else None
        try:
            counts = applying.apply(events, limit=options["limit"], progress=progress)
        except DatabaseError as exc:
            raise CommandError(f"The database is unreachable ({exc}).") from None
        skipped = total - sum(counts.values())
        self.stdout.write(applying.reprocess_summary(counts, skipped))

    def select(self, options: dict[str, Any]) -> WebhookEventQuerySet:
        chosen = options["failed"] or options["unmatched"]
        events = WebhookEvent.objects.all()
        if options["ids"]:
            events = events.filter(pk__in=options["ids"])
        if not (options["ids"] and not chosen):
            # --id alone means "these, whatever went wrong"; otherwise the outcome flags decide.
            events = events.reprocessable(
                failed=options["failed"] or not chosen,
                unmatched=options["unmatched"],
                stuck=not chosen,
            )
        if options["since"]:
            events = events.filter(received_at__gte=options["since"])
        return events
