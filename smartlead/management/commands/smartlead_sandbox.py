"""`manage.py smartlead_sandbox`: serve the Smartlead sandbox on 127.0.0.1 until stopped."""

from __future__ import annotations

import signal
import threading
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from outboundhq.logs import mask
from smartlead.sandbox import DEMO_ACCOUNTS_FILE, SandboxServer, generated_accounts, load_accounts


class Command(BaseCommand):
    help = (
        "Run a local stand-in for Smartlead's v1 API on 127.0.0.1, for demos and development. "
        "Refused unless DEBUG is on."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=8765)
        parser.add_argument(
            "--accounts", default=str(DEMO_ACCOUNTS_FILE), help="JSON file of keys and mailboxes"
        )
        parser.add_argument("--latency-ms", type=float, default=0.0, help="added to every request")
        parser.add_argument("--fault-rate", type=float, default=0.0, help="share answered 5xx")
        parser.add_argument("--requests-per-minute", type=int, default=60, help="per key")
        parser.add_argument(
            "--generate-keys",
            type=int,
            default=0,
            help="also serve N generated keys sandbox-key-gen-00001… (2 mailboxes each)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        self.refuse_outside_debug()
        accounts = self.load(options["accounts"], options["generate_keys"])
        sandbox = self.start(accounts, options)
        try:
            self.wait_for_stop()
        finally:
            sandbox.stop()
            self.stdout.write("Smartlead sandbox stopped.")

    def refuse_outside_debug(self) -> None:
        if not settings.DEBUG:
            raise CommandError(
                "smartlead_sandbox is a development tool and runs only with DJANGO_DEBUG=true; "
                "it never runs with production settings."
            )

    def load(self, path: str, generate: int) -> list[dict]:
        try:
            accounts = load_accounts(path)
        except (OSError, ValueError) as exc:
            raise CommandError(f"Cannot read sandbox accounts from {path}: {exc}") from exc
        return accounts + generated_accounts(generate)

    def start(self, accounts: list[dict], options: dict[str, Any]) -> SandboxServer:
        if not 0.0 <= options["fault_rate"] <= 1.0 or options["latency_ms"] < 0:
            raise CommandError("--fault-rate must be within 0..1 and --latency-ms at least 0.")
        try:
            sandbox = SandboxServer(
                accounts,
                port=options["port"],
                latency=options["latency_ms"] / 1000,
                fault_rate=options["fault_rate"],
                requests_per_minute=options["requests_per_minute"],
            ).start()
        except OSError as exc:
            raise CommandError(f"Cannot listen on 127.0.0.1:{options['port']}: {exc}") from exc
        keys = ", ".join(mask(a["api_key"]) for a in accounts[:5])
        more = f" and {len(accounts) - 5} more" if len(accounts) > 5 else ""
        self.stdout.write(f"Smartlead sandbox serving {len(accounts)} keys ({keys}{more}).")
        self.stdout.write(f"SMARTLEAD_BASE_URL={sandbox.base_url}")
        self.stdout.write("Press Ctrl-C to stop.")
        return sandbox

    def wait_for_stop(self) -> None:
        stop = threading.Event()
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, lambda *_: stop.set())
        stop.wait()
