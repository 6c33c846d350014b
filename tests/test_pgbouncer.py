"""The web app and the executor through PgBouncer in transaction mode, as behind Supabase's pooler.

PgBouncer with `pool_mode = transaction` and `server_reset_query_always` behaves like Supavisor's
transaction mode: a client gets a server connection for one transaction only, the connection is
reset (DISCARD ALL) before the next client gets it, and prepared statements, server-side cursors
and session state do not survive. A tiny pool makes the processes share server connections.

Migrations go over the direct connection (as docs/DEPLOY.md says); everything else through the
pooler with DATABASE_TRANSACTION_POOLING=true. pgbouncer missing is a failure, not a skip.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
import requests

from smartlead.api import tokens
from tests.test_production import (
    DEMO_KEYS,
    HTTPS,
    ROOT,
    assert_json_lines_without_secrets,
    background,
    collect_static,
    database_url,
    free_port,
    log_lines,
    manage,
    procfile,
    production_env,
    sandbox_server,
    scratch_database,
    server_config,
    stop,
    wait_for_port,
)

pytestmark = pytest.mark.postgres

ADMIN_PASSWORD = "pooled-admin-password-4821"  # noqa: S105 - a throwaway test account
WEBHOOK_SECRET = "pooled-webhook-secret-5150"  # noqa: S105


def pgbouncer_binary() -> str:
    found = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/usr/bin")
    if not found:
        pytest.fail(
            "pgbouncer is not installed: `apt-get install pgbouncer` (.ci/run installs it). "
            "This test must run; it is how CI proves the service works behind Supabase's pooler."
        )
    return found


@contextlib.contextmanager
def pgbouncer(database: str, logs: Path) -> Iterator[int]:
    """Debian's pgbouncer in transaction mode in front of DATABASE; yields its port."""
    binary = pgbouncer_binary()
    server = server_config()
    port = free_port()
    # pgbouncer refuses to run as root: it drops to `postgres`, which must read these files.
    workdir = Path(tempfile.mkdtemp(prefix="outboundhq-pgbouncer-"))
    workdir.chmod(0o755)
    password = f" password={server['PASSWORD']}" if server.get("PASSWORD") else ""
    (workdir / "users.txt").write_text(f'"{server["USER"]}" ""\n')
    (workdir / "pgbouncer.ini").write_text(
        f"""[databases]
{database} = host={server["HOST"]} port={server["PORT"] or 5432} dbname={database} \
user={server["USER"]}{password}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {workdir / "users.txt"}
pool_mode = transaction
server_reset_query = DISCARD ALL
server_reset_query_always = 1
default_pool_size = 3
max_client_conn = 200
ignore_startup_parameters = extra_float_digits,options
"""
    )
    for path in workdir.iterdir():
        path.chmod(0o644)
    command = [binary, str(workdir / "pgbouncer.ini")]
    if os.geteuid() == 0:
        command[1:1] = ["-u", "postgres"]
    with (logs / "pgbouncer.log").open("w") as log:
        proc = subprocess.Popen(  # noqa: S603 - Debian's pgbouncer with our generated ini
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_for_port(port, proc, timeout=20)
        yield port
    finally:
        stop(proc)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def pooled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A scratch database migrated directly, then PgBouncer in front of it."""
    logs = tmp_path_factory.mktemp("pooled")
    static_root = collect_static(tmp_path_factory.mktemp("staticfiles"))
    with scratch_database("outboundhq_pgb") as name:
        direct = production_env(DATABASE_URL=database_url(name))
        # Migrations (DDL, the raw Supabase schema) over the direct connection, as on Supabase.
        manage("migrate", "--no-input", env=direct, timeout=300)
        manage(
            "createsuperuser",
            "--no-input",
            "--username",
            "ops",
            "--email",
            "ops@example.com",
            env=direct | {"DJANGO_SUPERUSER_PASSWORD": ADMIN_PASSWORD},
        )
        with pgbouncer(name, logs) as port:
            env = production_env(
                DATABASE_URL=database_url(name, port=port),
                DATABASE_TRANSACTION_POOLING="true",
                DJANGO_STATIC_ROOT=str(static_root),
                SMARTLEAD_WEBHOOK_SECRET=WEBHOOK_SECRET,
            )
            yield {"env": env, "direct": database_url(name), "logs": logs}


def test_the_release_step_migrates_a_new_database_through_the_transaction_pooler(
    tmp_path: Path,
) -> None:
    # Supabase advises DDL over the direct/session connection, and the fixture above does that;
    # but Railway's release step uses the service's DATABASE_URL, which may be the pooler.
    with scratch_database("outboundhq_pgb") as name, pgbouncer(name, tmp_path) as port:
        env = production_env(
            DATABASE_URL=database_url(name, port=port), DATABASE_TRANSACTION_POOLING="true"
        )
        manage(*procfile()["release"].split()[2:], env=env, timeout=300)
        pending = manage("migrate", "--check", env=env)
    assert pending.returncode == 0


def test_the_web_app_works_through_the_transaction_pooler(pooled: dict) -> None:
    port = free_port()
    env = pooled["env"] | {"PORT": str(port), "WEB_CONCURRENCY": "3"}
    logs = pooled["logs"] / "web"
    logs.mkdir()
    with background(procfile()["web"], env=env, logs=logs, port=port):
        base = f"http://127.0.0.1:{port}"
        # More concurrent requests than server connections: each must get one per transaction.
        with ThreadPoolExecutor(12) as pool:
            answers = list(
                pool.map(lambda _: requests.get(f"{base}/health", timeout=20), range(36))
            )
        assert {a.status_code for a in answers} == {200}

        session = admin_login(base)
        for page in ("/admin/", "/admin/sequences/enrollment/", "/admin/auth/user/"):
            answer = session.get(base + page, headers=HTTPS, timeout=20, allow_redirects=False)
            assert answer.status_code == 200, (page, answer.status_code)

        assert requests.get(f"{base}/api/schema/", headers=HTTPS, timeout=20).status_code == 200
        anonymous = requests.get(f"{base}/api/smartlead/connection", headers=HTTPS, timeout=20)
        assert anonymous.status_code == 401 and "error" in anonymous.json()
        webhook = post_webhook(base)
        assert webhook.status_code == 200, webhook.text

    assert_json_lines_without_secrets(
        log_lines(logs / "stdout", logs / "stderr"), [ADMIN_PASSWORD, WEBHOOK_SECRET]
    )
    with psycopg.connect(pooled["direct"]) as db:
        stored = db.execute("SELECT count(*) FROM django_session").fetchone()[0]
    assert stored >= 1  # the login's session was written through the pooler
    assert "login attempt" in (pooled["logs"] / "pgbouncer.log").read_text()


def admin_login(base: str) -> requests.Session:
    """Log in to the admin as a browser would. Cookies are Secure and the server sees https
    (X-Forwarded-Proto) while the test speaks plain HTTP, so cookies are passed by hand."""
    session = requests.Session()
    form = session.get(f"{base}/admin/login/", headers=HTTPS, timeout=20)
    assert form.status_code == 200
    csrf = form.cookies["csrftoken"]
    answer = session.post(
        f"{base}/admin/login/?next=/admin/",
        data={"username": "ops", "password": ADMIN_PASSWORD, "csrfmiddlewaretoken": csrf},
        headers=HTTPS
        | {"Origin": f"https://{base.split('://')[1]}", "Cookie": f"csrftoken={csrf}"},
        timeout=20,
        allow_redirects=False,
    )
    assert answer.status_code == 302, answer.text[:500]
    session.headers["Cookie"] = f"csrftoken={csrf}; sessionid={answer.cookies['sessionid']}"
    return session


def post_webhook(base: str) -> requests.Response:
    payload = (ROOT / "tests/fixtures/smartlead/email_sent.json").read_text()
    return requests.post(
        f"{base}/webhooks/smartlead?campaign=9181&token={tokens.token_for(9181, WEBHOOK_SECRET)}",
        data=payload,
        headers=HTTPS | {"Content-Type": "application/json"},
        timeout=20,
    )


def test_the_executor_runs_through_the_transaction_pooler(pooled: dict, tmp_path: Path) -> None:
    env = pooled["env"] | {"LOG_LEVEL": "DEBUG"}
    with sandbox_server(env, tmp_path) as base_url:
        env["SMARTLEAD_BASE_URL"] = base_url
        manage("seed_demo", env=env)
        # Two runs at once, as two worker replicas would: claiming must keep them apart.
        runs = [
            subprocess.Popen(  # noqa: S603 - our own manage.py
                [sys.executable, "manage.py", "execute_sequences", "--json"],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        try:
            outputs = [run.communicate(timeout=300) for run in runs]
        finally:
            for run in runs:
                if run.poll() is None:
                    run.kill()

    for run, (_, err) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, err[-3000:]
    pushed = sum(json.loads(out)["pushed"] for out, _ in outputs)
    assert pushed > 0
    with psycopg.connect(pooled["direct"]) as db:
        recorded = db.execute(
            "SELECT count(*) FROM outboundhq_push WHERE state = 'pushed'"
        ).fetchone()[0]
    # Every push is in the ledger once (it is unique per enrollment and campaign): none twice.
    assert recorded == pushed
    lines = [line for _, err in outputs for line in err.splitlines() if line.strip()]
    assert_json_lines_without_secrets(lines, DEMO_KEYS)


def test_the_worker_from_the_procfile_runs_tasks_through_the_transaction_pooler(
    pooled: dict,
) -> None:
    logs = pooled["logs"] / "worker"
    logs.mkdir()
    enqueue = "from django_q.tasks import async_task; print(async_task('math.sqrt', 16.0))"
    task_id = manage("shell", "-c", enqueue, env=pooled["env"]).stdout.split()[-1]
    with background(procfile()["worker"], env=pooled["env"], logs=logs) as worker:
        success = wait_for_task(pooled["direct"], task_id, worker)
    assert success is True
    assert worker.returncode == 0  # SIGTERM: the cluster stops cleanly
    assert_json_lines_without_secrets(log_lines(logs / "stdout", logs / "stderr"), [])


def wait_for_task(dsn: str, task_id: str, worker: subprocess.Popen, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    with psycopg.connect(dsn, autocommit=True) as db:
        while time.monotonic() < deadline:
            assert worker.poll() is None, "the worker exited"
            row = db.execute(
                "SELECT success FROM django_q_task WHERE id = %s", [task_id]
            ).fetchone()
            if row is not None:
                return row[0]
            time.sleep(0.3)
    raise AssertionError(f"task {task_id} did not run within {timeout}s")
