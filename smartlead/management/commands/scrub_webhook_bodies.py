"""`manage.py scrub_webhook_bodies`: removes secrets from webhook bodies stored before bodies were
redacted on arrival (Smartlead's `secret_key`, the URL's `secret=`/`token=`, our own secrets).

Idempotent: a scrubbed body is left as it is. Rows are read and written in batches by id, so it
can run on a live database and be stopped and run again. Prints counts only, never a body.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db.models import Q

from smartlead import webhooks
from smartlead.api import tokens
from smartlead.models import WebhookEvent

# Only bodies that can hold a secret are read at all.
MAY_HOLD_A_SECRET = (
    Q(raw_body__contains="secret_key")
    | Q(raw_body__icontains="secret=")
    | Q(raw_body__icontains="token=")
)


class Command(BaseCommand):
    help = "Remove secrets from stored Smartlead webhook bodies (idempotent)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch", type=int, default=500, help="Rows per batch (500).")

    def handle(self, *args: Any, batch: int, **options: Any) -> None:
        secrets = tokens.server_secrets()
        read = scrubbed = 0
        after = 0
        while True:
            rows = list(
                WebhookEvent.objects.filter(MAY_HOLD_A_SECRET, pk__gt=after)
                .order_by("pk")
                .values_list("pk", "raw_body")[: max(1, batch)]
            )
            if not rows:
                break
            for pk, body in rows:
                clean = webhooks.redact_body(body, secrets)
                if clean != body:
                    # Only if unchanged since read: a row being applied keeps its new body.
                    scrubbed += WebhookEvent.objects.filter(pk=pk, raw_body=body).update(
                        raw_body=clean
                    )
            read += len(rows)
            after = rows[-1][0]
        self.stdout.write(f"{read} bodies that could hold a secret read, {scrubbed} scrubbed.")
