"""`manage.py run_demo`: the demo's steps in one process (scripts/demo runs it once the sandbox
and the receiver are up). Development only: DEBUG on and SMARTLEAD_BASE_URL a local sandbox.

1. start over: the demo's rows from any earlier run removed (outboundhq/demo.py: reset), then
   seeded again (seed_demo);
2. the executor, once (execute_sequences);
3. Smartlead's side in the sandbox, delivered to us as webhooks (outboundhq/demo.py: activity);
4. the next run, which carries the lead paused in the app to Smartlead (the outbox);
5. the reconcile pass, which finds the reply whose webhook never came;
6. what happened, and every job's verdict (send_alerts --dry-run).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from outboundhq import demo
from sequences.management.commands.seed_demo import demo_id, demo_sdrs
from smartlead.sandbox.control import SandboxUnavailable, sandbox_root


class Command(BaseCommand):
    help = "Run the demo's steps against the local Smartlead sandbox (scripts/demo). DEBUG only."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--admin-password", help="The 'admin' login's password.")

    def handle(self, *args: Any, admin_password: str | None, **options: Any) -> None:
        if not settings.DEBUG:
            raise CommandError("run_demo runs only with DJANGO_DEBUG=true (it deletes rows).")
        try:
            sandbox_root(settings.SMARTLEAD_BASE_URL)
        except SandboxUnavailable as exc:
            raise CommandError(str(exc)) from None
        sdrs = [demo_id("profile", sdr["email"]) for sdr in demo_sdrs()]
        self.step("Starting over: the demo's rows from any earlier run removed, then seeded")
        self.say(self.reset(sdrs))
        call_command("seed_demo", admin_password=admin_password, stdout=self.stdout)
        self.step("Running the sequence executor (the 15-minute job) once")
        call_command("execute_sequences", stdout=self.stdout)
        self.step(
            "Smartlead's side: emails sent, opened, replied to, bounced, sent to us as webhooks"
        )
        try:
            for line in demo.activity(sdrs):
                self.say(line)
        except SandboxUnavailable as exc:
            raise CommandError(str(exc)) from None
        self.step(
            "The next run: the lead paused in the app is paused in Smartlead too (the outbox)"
        )
        call_command("execute_sequences", stdout=self.stdout)
        self.step("The hourly reconcile pass: what Smartlead knows that no webhook brought")
        call_command("reconcile_smartlead", stdout=self.stdout)
        self.step("What happened")
        for line in demo.summary(sdrs):
            self.say(line)
        self.step("Every job's verdict (the top of the dashboard; GET /status serves the same)")
        call_command("send_alerts", dry_run=True, stdout=self.stdout)
        self.say(
            "No worker runs in this demo, so the schedules read late, as they would in production "
            "with the worker down; `manage.py qcluster` runs them."
        )

    def reset(self, sdrs: list[Any]) -> str:
        counts = demo.reset(sdrs)
        if not counts:
            return "Nothing to reset: no earlier demo rows."
        return "Removed: " + ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items())) + "."

    def step(self, title: str) -> None:
        self.stdout.write(f"== {title}")

    def say(self, line: str) -> None:
        self.stdout.write(f"   {line}")
