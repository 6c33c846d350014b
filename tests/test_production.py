"""Production: Railway processes, `check --deploy`, gunicorn from the Procfile, JSON logs, Sentry.

Everything here runs the service the way Railway does: in subprocesses, with production settings
from the environment. The helpers are shared with tests/test_pgbouncer.py.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import environ
import psycopg
import pytest
import requests
from cryptography.fernet import Fernet
from psycopg import sql

from outboundhq.logs import TextFormatter, redact

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
DEMO_KEYS = [
    a["api_key"] for a in json.loads((ROOT / "smartlead/sandbox/demo.json").read_text())["accounts"]
]
# Variables a developer's shell may carry that would change what "production" means here.
_INHERITED_PREFIXES = ("DJANGO_", "DATABASE_", "SENTRY_", "LOG_", "RAILWAY_", "SMARTLEAD_")
# X-Forwarded-Proto is what Railway's edge sends; without it SECURE_SSL_REDIRECT answers 301.
HTTPS = {"X-Forwarded-Proto": "https"}


# --- helpers -------------------------------------------------------------------------------------
def production_env(**extra: str) -> dict[str, str]:
    """The environment of a Railway process: DEBUG off, a real secret key, JSON logs."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(_INHERITED_PREFIXES)}
    return (
        base
        | {
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONUNBUFFERED": "1",
            "DJANGO_DEBUG": "false",
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
            "SMARTLEAD_KEY_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "LOG_FORMAT": "json",
        }
        | extra
    )


def python(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    """`python ARGS` in the project, output captured; the caller checks the exit status."""
    return subprocess.run(  # noqa: S603 - our own manage.py and fixed scripts
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def manage(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    """`python manage.py ARGS`; fails the test with its output if it fails."""
    result = python("manage.py", *args, env=env, timeout=timeout)
    assert result.returncode == 0, f"manage.py {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line.strip() and not line.startswith("#"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the server exited ({proc.returncode}) before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise AssertionError(f"nothing listened on 127.0.0.1:{port} within {timeout}s")


@contextlib.contextmanager
def background(
    command: str, *, env: dict[str, str], logs: Path, port: int | None = None
) -> Iterator[subprocess.Popen]:
    """Run a shell command line (as Railway does), wait for its port if it has one, and SIGTERM
    it at the end.

    stdout and stderr go to files, not pipes, so a chatty server can never block on a full pipe.
    """
    with (logs / "stdout").open("w") as out, (logs / "stderr").open("w") as err:
        proc = subprocess.Popen(  # noqa: S603 - the Procfile's own command lines
            ["/bin/sh", "-c", f"exec {command}"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
        try:
            if port is not None:
                wait_for_port(port, proc)
            yield proc
        finally:
            stop(proc, timeout=60)


def stop(proc: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM, as Railway sends on redeploy; SIGKILL the whole group only if that hangs."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def log_lines(*paths: Path) -> list[str]:
    return [line for path in paths for line in path.read_text().splitlines() if line.strip()]


def assert_json_lines_without_secrets(lines: list[str], secrets_: list[str]) -> list[dict]:
    """Every line is one JSON object with level/logger/message, and no secret appears."""
    assert lines, "no log lines at all"
    entries = []
    for line in lines:
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            raise AssertionError(f"not a JSON log line: {line!r}") from None
        assert {"level", "logger", "message"} <= entry.keys(), line
        entries.append(entry)
    for secret in secrets_:
        leaked = [line for line in lines if secret in line]
        assert not leaked, f"{secret} reached the logs: {leaked[:3]}"
    return entries


def server_config() -> dict[str, object]:
    """Host, port and credentials of the Postgres server the test run uses (DATABASE_URL)."""
    return environ.Env.db_url_config(os.environ["DATABASE_URL"])


def database_url(name: str, *, port: int | None = None) -> str:
    """A postgres:// URL for database NAME on the test server (optionally another port)."""
    cfg = server_config()
    auth = str(cfg["USER"]) + (f":{cfg['PASSWORD']}" if cfg.get("PASSWORD") else "")
    return f"postgres://{auth}@{cfg['HOST']}:{port or cfg['PORT'] or 5432}/{name}"


@contextlib.contextmanager
def scratch_database(prefix: str = "outboundhq_ci") -> Iterator[str]:
    """A new, empty database for one test, dropped afterwards; yields its name."""
    cfg = server_config()
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = psycopg.connect(
        host=cfg["HOST"],
        port=cfg["PORT"] or 5432,
        user=cfg["USER"],
        password=cfg.get("PASSWORD") or None,
        dbname="postgres",
        autocommit=True,
    )
    try:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        yield name
    finally:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        admin.close()


def static_asset(page: str) -> str:
    """The admin stylesheet a page links to (its hashed, manifest name)."""
    found = re.search(r'href="(/static/admin/css/base\.[0-9a-f]{12}\.css)"', page)
    assert found, "the page links no hashed admin stylesheet"
    return found.group(1)


# --- the Railway configuration -------------------------------------------------------------------
def test_the_railway_config_declares_web_worker_and_release():
    processes = procfile()
    web_config = json.loads((ROOT / "railway.json").read_text())["deploy"]
    worker_config = json.loads((ROOT / "railway.worker.json").read_text())["deploy"]

    assert processes["web"].startswith("gunicorn outboundhq.wsgi")
    assert "$PORT" in processes["web"] or "${PORT" in processes["web"]
    assert processes["worker"] == "python manage.py qcluster"
    assert processes["release"] == "python manage.py migrate --no-input"
    # One command line per process: what the tests start is what Railway starts.
    assert web_config["startCommand"] == processes["web"]
    assert web_config["preDeployCommand"] == [processes["release"]]
    assert web_config["healthcheckPath"] == "/health"
    assert worker_config["startCommand"] == processes["worker"]
    assert "healthcheckPath" not in worker_config


def test_the_build_installs_the_hashed_lock_and_collects_static_files():
    build = json.loads((ROOT / "railpack.json").read_text())["steps"]
    install = " ".join(c for c in build["install"]["commands"] if isinstance(c, str))
    assert "--require-hashes -r requirements.lock" in install
    assert "manage.py collectstatic --no-input" in " ".join(build["build"]["commands"])


# --- check --deploy ------------------------------------------------------------------------------
def test_check_deploy_is_clean_with_production_settings():
    env = production_env(DJANGO_ALLOWED_HOSTS="outboundhq.up.railway.app")
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=env)
    assert "no issues" in result.stdout


def test_development_settings_turn_the_hardening_off():
    script = (
        "from django.conf import settings as s; "
        "print(s.SECURE_SSL_REDIRECT, s.SESSION_COOKIE_SECURE, s.SECURE_HSTS_SECONDS)"
    )
    env = production_env(DJANGO_DEBUG="true", DJANGO_SETTINGS_MODULE="outboundhq.settings")
    result = python("-c", script, env=env)
    assert result.stdout.split() == ["False", "False", "0"], result.stderr


# --- gunicorn from the Procfile, on Postgres -----------------------------------------------------
def collect_static(root: Path) -> Path:
    """collectstatic with production settings (the build step), into a temporary STATIC_ROOT."""
    manage("collectstatic", "--no-input", env=production_env(DJANGO_STATIC_ROOT=str(root)))
    assert (root / "staticfiles.json").is_file()
    return root


@pytest.fixture(scope="module")
def static_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return collect_static(tmp_path_factory.mktemp("staticfiles"))


@pytest.fixture(scope="module")
def web(static_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """gunicorn started from the Procfile's `web` line against a migrated scratch database."""
    logs = tmp_path_factory.mktemp("gunicorn")
    with scratch_database() as name:
        port = free_port()
        env = production_env(
            DATABASE_URL=database_url(name), DJANGO_STATIC_ROOT=str(static_root), PORT=str(port)
        )
        manage("migrate", "--no-input", env=env, timeout=300)
        with background(
            procfile()["web"], env=env | {"WEB_CONCURRENCY": "2"}, logs=logs, port=port
        ) as proc:
            yield {"url": f"http://127.0.0.1:{port}", "proc": proc, "logs": logs}


@pytest.mark.postgres
def test_gunicorn_from_the_procfile_answers_health(web):
    response = requests.get(f"{web['url']}/health", timeout=10, allow_redirects=False)
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}


@pytest.mark.postgres
def test_health_answers_railways_plain_http_check_but_other_paths_redirect_to_https(web):
    # Railway's deploy check: plain HTTP, no X-Forwarded-Proto. It must not be bounced to https.
    assert requests.get(f"{web['url']}/health", timeout=10).status_code == 200
    redirected = requests.get(f"{web['url']}/admin/login/", timeout=10, allow_redirects=False)
    assert redirected.status_code == 301
    assert redirected.headers["Location"].startswith("https://")


@pytest.mark.postgres
def test_the_admin_login_page_and_its_static_files_are_served(web):
    page = requests.get(f"{web['url']}/admin/login/", headers=HTTPS, timeout=10)
    assert page.status_code == 200
    assert 'name="username"' in page.text and 'name="password"' in page.text
    assert "Strict-Transport-Security" in page.headers
    assert page.headers["X-Frame-Options"] == "DENY"

    css = requests.get(web["url"] + static_asset(page.text), headers=HTTPS, timeout=10)
    assert css.status_code == 200
    assert css.headers["Content-Type"].startswith("text/css")
    # WhiteNoise marks hashed files immutable; Django itself serves no static files without DEBUG.
    assert "immutable" in css.headers["Cache-Control"]


@pytest.mark.postgres
def test_gunicorn_logs_are_json_lines_with_request_ids_and_no_secrets(web):
    leaky = f"/health?api_key={DEMO_KEYS[0]}&secret=webhook-secret-value-123"
    response = requests.get(
        web["url"] + leaky, headers={"X-Request-ID": "ci-request-0001"}, timeout=10
    )
    assert response.headers["X-Request-ID"] == "ci-request-0001"
    requests.get(f"{web['url']}/no-such-page?token=tok-value-987654321", headers=HTTPS, timeout=10)
    time.sleep(0.5)  # the access line is written after the response

    lines = log_lines(web["logs"] / "stdout", web["logs"] / "stderr")
    entries = assert_json_lines_without_secrets(
        lines, [DEMO_KEYS[0], "webhook-secret-value-123", "tok-value-987654321"]
    )
    access = [e for e in entries if e["logger"] == "gunicorn.access" and "/health?" in e["message"]]
    assert access and access[-1]["request_id"] == "ci-request-0001"
    assert "api_key=…" in access[-1]["message"]
    assert any(e["logger"] == "django.request" and "/no-such-page" in e["message"] for e in entries)


@pytest.mark.postgres
def test_gunicorn_stops_cleanly_on_sigterm(web):
    # Runs last in this module: Railway stops a deployment with SIGTERM.
    stop(web["proc"])
    assert web["proc"].returncode == 0
    assert "Traceback" not in (web["logs"] / "stderr").read_text()


# --- log formats ---------------------------------------------------------------------------------
def test_development_lines_are_readable_text_with_the_request_id():
    record = logging.LogRecord(
        "smartlead.client", logging.INFO, __file__, 1, "GET %s", ("/x",), None
    )
    record.request_id, record.run_id = "req-42", None
    assert (
        TextFormatter().format(record).endswith("INFO smartlead.client [request_id=req-42]: GET /x")
    )


def test_a_line_redacted_twice_keeps_the_last_four_characters():
    once = redact("GET /campaigns?api_key=sandbox-key-alice-7f3a9c2e5b1d")
    assert once == "GET /campaigns?api_key=…5b1d"
    assert redact(once) == once


# --- logs from the executor in production mode ---------------------------------------------------
@contextlib.contextmanager
def sandbox_server(env: dict[str, str], logs: Path) -> Iterator[str]:
    """The Smartlead sandbox over real HTTP; yields its SMARTLEAD_BASE_URL. It is a development
    tool and refuses to run without DEBUG, so only this process gets DJANGO_DEBUG=true."""
    port = free_port()
    command = f"python manage.py smartlead_sandbox --port {port}"
    with background(command, env=env | {"DJANGO_DEBUG": "true"}, logs=logs, port=port):
        yield f"http://127.0.0.1:{port}/api/v1"


@pytest.mark.postgres
def test_a_production_executor_run_logs_json_lines_without_api_keys(tmp_path: Path):
    with scratch_database() as name:
        env = production_env(DATABASE_URL=database_url(name), LOG_LEVEL="DEBUG")
        manage("migrate", "--no-input", env=env, timeout=300)
        with sandbox_server(env, tmp_path) as base_url:
            env["SMARTLEAD_BASE_URL"] = base_url
            seeded = manage("seed_demo", env=env)
            run = manage("execute_sequences", "--json", env=env, timeout=300)

    assert json.loads(run.stdout)["pushed"] > 0
    lines = log_lines_from(seeded.stderr, run.stderr)
    entries = assert_json_lines_without_secrets(lines, DEMO_KEYS)
    # LOG_LEVEL=DEBUG lets urllib3 log every URL it requests: the keys were in those URLs.
    assert any(e["logger"] == "urllib3.connectionpool" for e in entries)
    assert any(e.get("run_id") for e in entries)


def log_lines_from(*outputs: str) -> list[str]:
    return [line for output in outputs for line in output.splitlines() if line.strip()]


# --- Sentry --------------------------------------------------------------------------------------
SENTRY_PROBE = textwrap.dedent(
    """
    import json, logging, django
    django.setup()
    import sentry_sdk
    client = sentry_sdk.get_client()
    print(json.dumps({"active": client.is_active()}))
    if client.is_active():
        from sentry_sdk.transport import Transport
        sent = []

        class Capture(Transport):
            def capture_envelope(self, envelope):
                sent.append(envelope.serialize().decode("utf-8", "replace"))

        client.transport = Capture(client.options)
        from wsgiref.util import setup_testing_defaults
        from django.core.wsgi import get_wsgi_application
        from outboundhq import views

        class Broken:
            def cursor(self):
                raise RuntimeError("boom calling /campaigns?api_key=SECRETVALUE1234")

        views.connection = Broken()  # /health now fails with the key in the error
        # Through the WSGI entry point, as gunicorn calls it: Sentry adds the URL there.
        environ = {"PATH_INFO": "/health", "QUERY_STRING": "api_key=SECRETVALUE1234",
                   "HTTP_HOST": "testserver", "HTTP_X_FORWARDED_PROTO": "https"}
        setup_testing_defaults(environ)
        status = []
        get_wsgi_application()(environ, lambda s, h, e=None: status.append(s))
        logging.getLogger("smartlead.client").error(
            "GET https://server.smartlead.ai/api/v1/campaigns?api_key=SECRETVALUE1234 failed"
        )
        sentry_sdk.capture_exception(ValueError("token=SECRETVALUE1234 rejected"))
        sentry_sdk.flush()
        print(json.dumps({"status": int(status[0][:3]), "events": sent}))
    """
)


def sentry_probe(**env: str) -> list[dict]:
    env = production_env(
        DJANGO_SETTINGS_MODULE="outboundhq.settings", DJANGO_ALLOWED_HOSTS="testserver", **env
    )
    result = python("-c", SENTRY_PROBE, env=env)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def test_without_a_dsn_sentry_is_not_initialised():
    assert sentry_probe() == [{"active": False}]


def test_sentry_events_arrive_with_secrets_scrubbed():
    started, outcome = sentry_probe(SENTRY_DSN="https://publickey@sentry.example.invalid/42")
    assert started == {"active": True}
    assert outcome["status"] == 500
    events = "\n".join(outcome["events"])
    # The failed request (URL + exception), the error log line and the captured exception.
    assert events.count('"type":"event"') >= 3, events[:2000]
    assert "SECRETVALUE1234" not in events
    # The redaction keeps the exception itself: the logged error still has its stack trace.
    assert '"type":"RuntimeError"' in events and '"stacktrace"' in events
    assert "api_key=\\u20261234" in events  # "…1234", as Sentry's JSON escapes it
    assert '"query_string":"api_key=\\u20261234"' in events and "/health" in events
