"""Misconfiguration fails at start-up, naming the variable, without a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_check(**env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_"))}
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=base | env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_missing_secret_key_in_production_names_the_variable():
    result = run_check(DJANGO_DEBUG="false")
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is required" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unparsable_database_url_names_the_variable():
    result = run_check(DJANGO_SECRET_KEY="x" * 50, DATABASE_URL="notadb://what")
    assert result.returncode != 0
    assert "DATABASE_URL is not a database URL" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_non_numeric_limit_names_the_variable():
    result = run_check(DJANGO_DEBUG="true", SMARTLEAD_REQUESTS_PER_MINUTE="lots")
    assert result.returncode != 0
    assert "SMARTLEAD_REQUESTS_PER_MINUTE cannot be parsed" in result.stderr


def test_a_batch_size_above_smartleads_maximum_is_refused():
    result = run_check(DJANGO_DEBUG="true", SMARTLEAD_LEADS_PER_REQUEST="400")
    assert result.returncode != 0
    assert "SMARTLEAD_LEADS_PER_REQUEST must be between 1 and 350" in result.stderr


def test_debug_mode_starts_without_a_secret_key():
    result = run_check(DJANGO_DEBUG="true")
    assert result.returncode == 0, result.stderr


def test_the_wsgi_server_stops_with_a_message_instead_of_a_traceback():
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_"))}
    result = subprocess.run(
        [sys.executable, "-c", "import outboundhq.wsgi"],
        cwd=ROOT,
        env=base | {"DJANGO_DEBUG": "0"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "OutboundHQ cannot start" in result.stderr and "DJANGO_SECRET_KEY" in result.stderr


def test_it_refuses_an_opt_out_scope_it_does_not_know_naming_the_variable():
    result = run_check(DJANGO_DEBUG="true", OPT_OUT_SCOPE="everyone")
    assert result.returncode != 0
    assert "OPT_OUT_SCOPE must be organisation or sdr" in result.stderr
    assert run_check(DJANGO_DEBUG="true", OPT_OUT_SCOPE="sdr").returncode == 0


def test_it_refuses_a_trusted_proxy_that_is_no_address_naming_the_variable():
    result = run_check(DJANGO_DEBUG="true", DJANGO_TRUSTED_PROXIES="10.0.0.0/8,railway")
    assert result.returncode != 0
    assert "DJANGO_TRUSTED_PROXIES has 'railway'" in result.stderr
