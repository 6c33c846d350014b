"""`manage.py execute_sequences`: one executor run, now.

By default the run is worked on in this process; with `--fan-out` it is shared out to
django-q2 tasks, as the schedule does, for every running qcluster process to take, and the
command waits until the run is closed. Exit 0 when the run completed (skips and per-SDR errors
included); non-zero when it could not run at all, such as an unreachable database, or when a
fanned-out run is not closed in time (no qcluster running).
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from django.conf import settings
from django.core.checks import Tags
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from outboundhq.progress import Progress, wanted
from profiles.models import Profile
from sequences.context import Scope
from sequences.executor import execute, start
from sequences.models import ExecutorRun, RunTrigger, Sequence
from sequences.runs import as_dict, shares_done, summary
from sequences.tasks import fan_out


def scope_problem(user: uuid.UUID | None, sequence: uuid.UUID | None) -> str | None:
    """A --user or --sequence that names nothing would silently do nothing: say so instead."""
    if user is not None and not Profile.objects.filter(pk=user).exists():
        return f"--user {user}: no SDR has this profile id (see the admin's SDR profiles)."
    if sequence is not None and not Sequence.objects.filter(pk=sequence).exists():
        return f"--sequence {sequence}: no sequence has this id."
    return None


class Command(BaseCommand):
    help = "Push ready enrollments to their Smartlead campaigns (the 15-minute job, run now)."
    # Only the configuration checks: the URL and admin checks would import every view at start.
    requires_system_checks = [Tags.compatibility]

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="Say what would happen; change nothing."
        )
        parser.add_argument(
            "--user", type=uuid.UUID, help="Only this SDR's sequences (profile id)."
        )
        parser.add_argument("--sequence", type=uuid.UUID, help="Only this sequence (id).")
        parser.add_argument("--limit", type=int, help="At most this many enrollments.")
        parser.add_argument(
            "--fan-out",
            action="store_true",
            help="Share the run out to django-q2 tasks (qcluster processes do the work) and wait.",
        )
        parser.add_argument("--json", action="store_true", help="Print the run record as JSON.")
        parser.add_argument(
            "--progress",
            action="store_true",
            help="Progress on stderr even when it is not a terminal (never with --json).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["limit"] is not None and options["limit"] < 1:
            raise CommandError("--limit must be a positive number of enrollments.")
        if options["fan_out"] and (options["limit"] is not None or options["dry_run"]):
            raise CommandError("--fan-out cannot be combined with --limit or --dry-run.")
        if problem := scope_problem(options["user"], options["sequence"]):
            raise CommandError(problem)
        progress = Progress(self.stderr) if wanted(self.stderr, options) else None
        record = self.run(options, progress)
        if progress is not None and not record.dry_run:
            progress.sdrs_finished(record.pushed)
        self.report(record, as_json=options["json"])

    def run(self, options: dict[str, Any], progress: Progress | None) -> ExecutorRun:
        try:
            if options["fan_out"]:
                return self.fan_out(options, progress)
            return execute(
                trigger=RunTrigger.COMMAND,
                dry_run=options["dry_run"],
                user_id=options["user"],
                sequence_id=options["sequence"],
                limit=options["limit"],
                progress=progress.sdrs if progress else None,
            )
        except DatabaseError as exc:
            raise CommandError(
                f"The executor could not run: the database is unreachable ({exc})."
            ) from None

    def fan_out(self, options: dict[str, Any], progress: Progress | None) -> ExecutorRun:
        """Steps 0-2 here, step 3 by the qcluster processes; waits until the run is closed."""
        scope = Scope(user_id=options["user"], sequence_id=options["sequence"])
        run = start(trigger=RunTrigger.COMMAND, scope=scope)
        fan_out(run)
        give_up = time.monotonic() + settings.EXECUTOR_TIME_BUDGET_SECONDS + 60
        while (record := ExecutorRun.objects.get(pk=run.id)).finished_at is None:
            if time.monotonic() > give_up:
                raise CommandError(
                    f"Run {run.id} is still open: is a qcluster process running "
                    "(`manage.py qcluster`)? Its tasks wait on the broker."
                )
            if progress is not None:
                done, pushed = shares_done(run.id)
                progress.sdrs(done, run.shares, pushed)
            time.sleep(0.2)
        return record

    def report(self, record: ExecutorRun, *, as_json: bool) -> None:
        if as_json:
            self.stdout.write(json.dumps(as_dict(record), indent=2))
            return
        prefix = "Dry run (nothing changed): " if record.dry_run else f"Run {record.id}: "
        self.stdout.write(prefix + summary(record))
        for line in getattr(record, "plan_lines", []) + list(record.errors):
            self.stdout.write(f"  - {line}")
