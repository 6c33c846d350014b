"""Team scale (issue 21), end to end in real processes: a run shared out to several qcluster
processes on Redis, and crashed work taken over at once, by the next run or by another worker.
Every lead arrives once, each sequence has one campaign, and what is sent again is at most the
batches that were in flight when a process was killed."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from smartlead.sandbox import SandboxServer
from tests.test_production import (
    ROOT,
    database_url,
    manage,
    production_env,
    scratch_database,
    stop,
)

pytestmark = pytest.mark.postgres

SDRS, PER_SDR, BATCH, THREADS = 12, 200, 50, 3
# A worker thread has at most two batches out: one sent, and the one before it whose answer it
# is recording (sequences/sending.py); only those may be sent again after a kill.
IN_FLIGHT = 2 * THREADS
LEADS_ROUTE = "POST /campaigns/{campaign_id}/leads"
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def keys() -> list[str]:
    return [f"scale-key-{n:03d}-abcdef" for n in range(SDRS)]


def accounts() -> list[dict]:
    return [
        {"api_key": key, "plan": "pro", "email_accounts": [{"id": 700 + n}]}
        for n, key in enumerate(keys())
    ]


def seed(url: str) -> None:
    """One unprovisioned, active two-email sequence per SDR, PER_SDR ready enrollments each."""
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        for n, key in enumerate(keys()):
            profile, sequence = uuid.uuid4(), uuid.uuid4()
            cur.execute(
                "INSERT INTO profiles (id, email, smartlead_api_key, smartlead_email_account_id) "
                "VALUES (%s, %s, %s, %s)",
                (profile, f"sdr{n}@scale.test", key, str(700 + n)),
            )
            cur.execute(
                "INSERT INTO sequences (id, name, status, created_by) "
                "VALUES (%s, %s, 'active', %s)",
                (sequence, f"Scale {n}", profile),
            )
            cur.execute(
                "INSERT INTO sequence_steps (sequence_id, step_number, step_type, subject, body, "
                "delay_days) VALUES (%s, 1, 'email', 'Hi', 'Hello', 0), "
                "(%s, 2, 'email', '', 'Again', 3)",
                (sequence, sequence),
            )
            cur.execute(
                "WITH c AS (INSERT INTO contacts (email, first_name, created_by) "
                "SELECT 'lead' || g || '.' || %s || '@prospect.test', 'Lead', %s "
                "FROM generate_series(1, %s) g RETURNING id) "
                "INSERT INTO sequence_enrollments (sequence_id, contact_id, next_send_at) "
                "SELECT %s, c.id, now() - interval '1 minute' FROM c",
                (n, profile, PER_SDR, sequence),
            )


def ledger(url: str) -> dict[str, int]:
    """What the database says: enrollments moved past step 1, ledger rows, rows pushed."""
    with psycopg.connect(url) as conn:
        moved = conn.execute(
            "SELECT count(*) FROM sequence_enrollments WHERE current_step = 2"
        ).fetchone()[0]
        rows, pushed = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE state = 'pushed') FROM outboundhq_push"
        ).fetchone()
    return {"moved": moved, "rows": rows, "pushed": pushed}


@contextlib.contextmanager
def service(tmp_path: Path, **extra: str) -> Iterator[tuple[dict[str, str], SandboxServer, str]]:
    """A migrated scratch database with the seeded SDRs, the sandbox (each request 30 ms), and
    the environment of the service's processes."""
    sandbox = SandboxServer(accounts(), latency=0.03, requests_per_minute=600, burst=100)
    with scratch_database("outboundhq_scale") as name, sandbox:
        url = database_url(name)
        env = production_env(
            DATABASE_URL=url,
            SMARTLEAD_BASE_URL=sandbox.base_url,
            SMARTLEAD_LEADS_PER_REQUEST=str(BATCH),
            EXECUTOR_CONCURRENCY=str(THREADS),
            LOG_LEVEL="INFO",
            **extra,
        )
        manage("migrate", "--no-input", env=env, timeout=300)
        seed(url)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DELETE FROM django_q_schedule")  # only the runs a test starts
        yield env, sandbox, url


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """`manage.py ARGS` in the background: stdout to LOG.out, the log lines to LOG."""
    with log.open("w") as err, log.with_suffix(".out").open("w") as out:
        return subprocess.Popen(  # noqa: S603 - our own manage.py
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )


def wait_for(what: str, check: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout} s"
        time.sleep(0.05)


def kill_9(proc: subprocess.Popen) -> None:
    """SIGKILL the whole process group (a qcluster's sentinel and workers), as a deploy or an
    out-of-memory kill does, and reap it, so its pid is gone."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


def assert_every_lead_arrived_once(url: str, sandbox: SandboxServer, in_flight: int) -> None:
    got = ledger(url)
    total = SDRS * PER_SDR
    assert (got["moved"], got["rows"], got["pushed"]) == (total, total, total)
    # Counted where it matters, at Smartlead: leads delivered to a campaign that had them.
    assert sandbox.arrived_again() <= in_flight * BATCH, (sandbox.arrived_again(), got)
    for key in keys():
        (campaign,) = sandbox.campaigns(key)  # one campaign per sequence, crash or not
        assert len(campaign["leads"]) == PER_SDR
    assert sandbox.request_count(status=429) == 0


def test_it_takes_over_a_killed_run_at_once_and_sends_every_lead_once(tmp_path: Path):
    with service(tmp_path) as (env, sandbox, url):
        killed = spawn(["execute_sequences"], env, tmp_path / "killed.log")
        wait_for("some pushes", lambda: sandbox.request_count(route=LEADS_ROUTE) >= 8)
        kill_9(killed)
        before = ledger(url)
        assert 0 < before["pushed"] < SDRS * PER_SDR

        again = manage("execute_sequences", "--json", env=env, timeout=300)

        record = json.loads(again.stdout)
        assert record["errors"] == [] and record["pushed"] == SDRS * PER_SDR - before["pushed"]
        assert_every_lead_arrived_once(url, sandbox, in_flight=IN_FLIGHT)
        with psycopg.connect(url) as conn:
            open_runs = conn.execute(
                "SELECT count(*) FROM outboundhq_executor_run WHERE finished_at IS NULL"
            ).fetchone()[0]
        assert open_runs == 0  # the killed run was closed by the next one


def qclusters(count: int, env: dict[str, str], tmp_path: Path) -> list[subprocess.Popen]:
    """`count` qcluster processes of one worker each, all ready before anything is enqueued."""
    procs = [spawn(["qcluster"], env, tmp_path / f"qcluster-{n}.log") for n in range(count)]
    logs = [tmp_path / f"qcluster-{n}.log" for n in range(count)]
    wait_for("the qclusters to start", lambda: all("ready for work" in p.read_text() for p in logs))
    return procs


def redis_env() -> dict[str, str]:
    return {
        "REDIS_URL": REDIS_URL,
        "Q_CLUSTER_NAME": f"test-{uuid.uuid4().hex[:8]}",  # its own queue on a shared Redis
        "Q_WORKERS": "1",
        "EXECUTOR_SDRS_PER_TASK": "2",
    }


def test_it_spreads_a_run_over_two_qcluster_processes_on_redis(tmp_path: Path):
    with service(tmp_path, **redis_env()) as (env, sandbox, url):
        procs = qclusters(2, env, tmp_path)
        try:
            result = manage("execute_sequences", "--fan-out", "--json", env=env, timeout=300)
        finally:
            for proc in procs:
                stop(proc)
        record = json.loads(result.stdout)
        assert record["tasks"] == SDRS // 2 and record["workers"] == 2, record
        assert record["pushed"] == SDRS * PER_SDR and record["errors"] == []
        assert_every_lead_arrived_once(url, sandbox, in_flight=0)


def holds_a_share(url: str, qcluster: subprocess.Popen) -> bool:
    """Whether a worker process of this qcluster (its process group) is working on an SDR."""
    with psycopg.connect(url) as conn:
        workers = conn.execute(
            "SELECT worker_id FROM outboundhq_run_share WHERE state = 'working'"
        ).fetchall()
    pids = {int(worker.rsplit(":", 2)[1]) for (worker,) in workers}
    return any(os.getpgid(pid) == qcluster.pid for pid in pids if Path(f"/proc/{pid}").exists())


def diagnosis(url: str, tmp_path: Path) -> str:
    with psycopg.connect(url) as conn:
        shares = conn.execute(
            "SELECT state, worker_id, errors::text FROM outboundhq_run_share ORDER BY id"
        ).fetchall()
        workers = conn.execute("SELECT id, beat_at FROM outboundhq_worker").fetchall()
    logs = "\n".join(p.read_text()[-4000:] for p in sorted(tmp_path.glob("*.log")))
    return f"shares {shares}\nworkers {workers}\n{logs}"


def test_another_worker_takes_over_a_killed_qclusters_share_of_the_run(tmp_path: Path):
    with service(tmp_path, **redis_env()) as (env, sandbox, url):
        doomed, survivor = qclusters(2, env, tmp_path)
        try:
            fanned = spawn(["execute_sequences", "--fan-out", "--json"], env, tmp_path / "run.log")
            wait_for("the doomed qcluster to hold an SDR", lambda: holds_a_share(url, doomed))
            kill_9(doomed)
            try:
                fanned.wait(120)
            except subprocess.TimeoutExpired:
                pytest.fail(f"the run did not close: {diagnosis(url, tmp_path)}")
        finally:
            stop(survivor)
        assert fanned.returncode == 0, (tmp_path / "run.log").read_text()[-3000:]
        record = json.loads((tmp_path / "run.out").read_text())
        assert record["finished_at"] and record["pushed"] > 0, record
        assert_every_lead_arrived_once(url, sandbox, in_flight=IN_FLIGHT)
        with psycopg.connect(url) as conn:
            taken = conn.execute(
                "SELECT count(*) FROM outboundhq_run_share WHERE errors::text LIKE %s",
                ["%Taken over from worker%"],
            ).fetchone()[0]
        assert taken >= 1
