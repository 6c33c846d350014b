"""Writes the demo's development settings and prints the file's name (scripts/demo sources it).

`.env` when there is none yet or it is the demo's own (its first line says so): then bare
`manage.py` commands after the demo use the demo's sandbox and database too. A `.env` of yours is
never touched: the settings go to `.demo.env`, which scripts/demo loads for its own commands.
Secrets are made once and kept across runs. Both files are gitignored. Standard library only.
"""

from __future__ import annotations

import secrets
import sys
from pathlib import Path

MARKER = "# Written by scripts/demo"
HEADER = f"""{MARKER}: development settings for the local demo (gitignored).
# Never used in production. Bare manage.py commands read them: they run against the demo's
# SQLite database and its Smartlead sandbox (started by scripts/demo). Delete this file to go back
# to your own settings.
"""
SECRETS = ("DJANGO_SECRET_KEY", "SMARTLEAD_WEBHOOK_SECRET", "HEALTH_STATUS_TOKEN")


def read(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            values[name.strip()] = value.strip()
    return values


def main(port: str, sandbox_port: str) -> str:
    root = Path(__file__).resolve().parent.parent
    target = root / ".env"
    if target.exists() and not target.read_text().startswith(MARKER):
        target = root / ".demo.env"
        print(
            "   Your .env is kept as it is: the demo's settings are in .demo.env. To run bare "
            "manage.py commands against the demo, load them first: set -a; . ./.demo.env; set +a",
            file=sys.stderr,
        )
    kept = read(target) if target.exists() else {}
    values = {
        "DJANGO_DEBUG": "true",
        **{name: kept.get(name) or secrets.token_urlsafe(32) for name in SECRETS},
        "SMARTLEAD_BASE_URL": f"http://127.0.0.1:{sandbox_port}/api/v1",
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        # One SDR at a time: campaign ids come out the same on every run (and SQLite has one
        # writer anyway).
        "EXECUTOR_CONCURRENCY": "1",
        "DEMO_ADMIN_PASSWORD": kept.get("DEMO_ADMIN_PASSWORD") or secrets.token_urlsafe(12),
    }
    body = HEADER + "".join(f"{name}={value}\n" for name, value in values.items())
    target.write_text(body)
    target.chmod(0o600)
    state = "kept its secrets" if kept else "new"
    print(
        f"   {target.name} ({state}): DEBUG on, Smartlead = the sandbox on port {sandbox_port}, "
        f"webhooks to 127.0.0.1:{port}",
        file=sys.stderr,
    )
    return target.name


if __name__ == "__main__":
    print(main(sys.argv[1], sys.argv[2]))
