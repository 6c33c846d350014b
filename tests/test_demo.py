"""scripts/demo, for real: run twice in a row in a copy of the repository (its own SQLite file,
its own .env, free ports), it ends in the same, consistent state; it keeps the sandbox running
and bare `manage.py` commands work against it afterwards (tests/test_client.py checks that a
sandbox key never reaches the real Smartlead)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
LEFT_OUT = (".venv", ".git", "*.sqlite3", ".env", ".demo.env", "__pycache__", "*.log", "*.pid")
SNAPSHOT = {
    "enrollments": "SELECT s.name, e.status, count(*) FROM sequence_enrollments e "
    "JOIN sequences s ON s.id = e.sequence_id GROUP BY 1, 2 ORDER BY 1, 2",
    "campaigns": "SELECT s.name, s.smartlead_campaign_id, p.state FROM sequences s "
    "LEFT JOIN outboundhq_campaign_provisioning p ON p.sequence_id = s.id ORDER BY 1",
    "pushes": "SELECT campaign_id, state, count(*) FROM outboundhq_push "
    "GROUP BY 1, 2 ORDER BY 1, 2",
    "events": "SELECT event_type, outcome, campaign_id, source, count(*) "
    "FROM smartlead_webhook_event GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4",
    "runs": "SELECT trigger, due, pushed, skipped_no_credentials, failed, propagated "
    "FROM outboundhq_executor_run ORDER BY started_at",
    "reconcile": "SELECT trigger, campaigns, repaired FROM smartlead_reconcile_run",
    "outbox": "SELECT action, state, count(*) FROM outboundhq_sync_change GROUP BY 1, 2",
    "credentials": "SELECT p.email, c.status FROM outboundhq_credential_check c "
    "JOIN profiles p ON p.id = c.profile_id ORDER BY 1",
    "profiles": "SELECT email FROM profiles ORDER BY 1",
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def copy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The repository as a fresh clone would have it, sharing this one's virtualenv; the
    sandbox the demo leaves running is stopped at the end (by the pid the demo wrote)."""
    target = tmp_path_factory.mktemp("demo") / "repo"
    shutil.copytree(ROOT, target, ignore=shutil.ignore_patterns(*LEFT_OUT))
    (target / ".venv").symlink_to(ROOT / ".venv")
    yield target
    pid_file = target / ".sandbox.pid"
    if pid_file.exists():
        try:
            os.kill(int(pid_file.read_text()), signal.SIGTERM)
        except ProcessLookupError:
            pass


def clean_env(**extra: str) -> dict[str, str]:
    """Nothing of the test run's own settings (its database, keys, debug) leaks in."""
    return {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), **extra}


def demo(copy: Path, ports: dict[str, str]) -> str:
    done = subprocess.run(  # noqa: S603 - our own script
        [str(copy / "scripts" / "demo")],
        cwd=copy,
        env=clean_env(DEMO_SERVE="0", **ports),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def snapshot(copy: Path) -> dict[str, list[Any]]:
    with sqlite3.connect(copy / "db.sqlite3") as db:
        return {name: db.execute(sql).fetchall() for name, sql in SNAPSHOT.items()}


@pytest.fixture(scope="module")
def two_runs(copy: Path) -> dict[str, Any]:
    ports = {"PORT": str(free_port()), "SANDBOX_PORT": str(free_port())}
    first = demo(copy, ports)
    after_first = snapshot(copy)
    second = demo(copy, ports)
    return {"first": first, "second": second, "before": after_first, "after": snapshot(copy)}


def test_running_the_demo_twice_ends_in_the_same_state(two_runs):
    assert two_runs["after"] == two_runs["before"]


def test_the_second_run_says_what_it_started_over_from(two_runs):
    assert "Nothing to reset" in two_runs["first"]
    second = two_runs["second"]
    assert "Stopping the sandbox the last demo left running" in second
    assert "Removed: 3 SDRs" in second and "14 pushes" in second
    assert second.count("Admin login: admin / ") == 1  # the login is printed every time


def test_the_state_is_consistent_and_every_part_of_the_dashboard_has_data(two_runs):
    state = two_runs["after"]
    assert [count for _, state_, count in state["pushes"] if state_ == "pushed"] == [7, 7]
    campaigns = {campaign for _, campaign, _ in state["campaigns"] if campaign}
    assert campaigns == {"3001", "3002"}  # what the sandbox, restarted empty, holds now
    events = {(kind, outcome): 0 for kind, outcome, *_ in state["events"]}
    for kind, outcome, _, _, n in state["events"]:
        events[(kind, outcome)] += n
    assert events[("EMAIL_SENT", "applied")] == 14
    assert events[("EMAIL_REPLY", "applied")] == 4  # 2 delivered, 2 found by reconcile
    assert events[("", "rejected")] == 1  # the webhook copied between campaigns
    assert [row[2] for row in state["reconcile"]] == ['{"EMAIL_REPLY": 2}']
    assert state["outbox"] == [("pause_lead", "done", 1)]
    assert [row[1] for row in state["credentials"]] == ["connected", "connected"]


def test_it_prints_the_verdicts_and_how_to_use_the_sandbox(two_runs):
    second = two_runs["second"]
    assert "LATE     Executor schedule" in second and "qcluster" in second
    assert "FAILING  SDR carla@outbound-demo.test (Carla Cruz)" in second
    assert "The Smartlead sandbox keeps running" in second
    assert "manage.py reconcile_smartlead" in second


def test_bare_commands_after_the_demo_work_against_the_kept_sandbox(copy, two_runs):
    env_file = (copy / ".env").read_text()
    assert (
        env_file.startswith("# Written by scripts/demo") and "SMARTLEAD_BASE_URL=http" in env_file
    )
    listed = subprocess.run(  # noqa: S603
        [
            shutil.which("git") or "/usr/bin/git",
            "check-ignore",
            ".env",
            ".sandbox.pid",
            "db.sqlite3",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert listed.stdout.split() == [".env", ".sandbox.pid", "db.sqlite3"]
    done = subprocess.run(  # noqa: S603
        [str(copy / ".venv" / "bin" / "python"), "manage.py", "reconcile_smartlead"],
        cwd=copy,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "2 campaigns read" in done.stdout and "0 errors" in done.stdout
