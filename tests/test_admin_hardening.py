"""The admin's doors: password rules, login throttling, its path, schedules, the docs' assets."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission, User
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.test import RequestFactory
from django.urls import clear_url_caches, reverse
from django.utils import timezone
from django_q.conf import Conf
from django_q.models import OrmQ, Schedule, Success

import outboundhq.urls
from outboundhq import health
from outboundhq.admin import client_ip
from tests.factories import make_profile

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "a-long-and-unusual-passphrase-42"


# --- passwords -----------------------------------------------------------------------------------
@pytest.mark.parametrize("weak", ["short1", "password1234", "12345678901234", "adminadmin12"])
def test_it_refuses_weak_admin_passwords(weak):
    with pytest.raises(ValidationError):
        validate_password(weak, User(username="adminadmin12"))


def test_it_accepts_a_long_unusual_password():
    validate_password(PASSWORD, User(username="ops"))


# --- login throttling ----------------------------------------------------------------------------
def log_in(client, password: str, ip: str = "203.0.113.7"):  # noqa: ANN001, ANN201
    return client.post(
        reverse("admin:login"), {"username": "ops", "password": password}, REMOTE_ADDR=ip
    )


def test_it_locks_an_address_out_after_the_configured_failures(client, settings):
    settings.AXES_FAILURE_LIMIT = 3
    User.objects.create_superuser("ops", "ops@example.test", PASSWORD)
    for _ in range(2):
        assert log_in(client, "wrong").status_code == 200  # the form again, with an error
    assert log_in(client, "wrong").status_code == 429
    locked = log_in(client, PASSWORD)  # even the right password, until the cool-off ends
    assert locked.status_code == 429 and "_auth_user_id" not in client.session
    # The account is locked from everywhere now (per username); another one is not.
    assert log_in(client, PASSWORD, ip="198.51.100.9").status_code == 429
    User.objects.create_superuser("ops2", "ops2@example.test", PASSWORD)
    other = client.post(
        reverse("admin:login"),
        {"username": "ops2", "password": PASSWORD},
        REMOTE_ADDR="198.51.100.9",
    )
    assert other.status_code == 302 and "_auth_user_id" in client.session


def test_a_successful_login_resets_the_count(client, settings):
    settings.AXES_FAILURE_LIMIT = 3
    User.objects.create_superuser("ops", "ops@example.test", PASSWORD)
    for _ in range(2):
        log_in(client, "wrong")
    assert log_in(client, PASSWORD).status_code == 302
    client.logout()
    for _ in range(2):
        assert log_in(client, "wrong").status_code == 200


def test_behind_the_proxy_it_counts_the_address_the_proxy_saw(settings):
    request = RequestFactory().get(
        "/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="1.2.3.4, 203.0.113.7"
    )
    assert client_ip(request) == "203.0.113.7"  # the proxy's network is trusted by default
    settings.TRUSTED_PROXIES = []  # DJANGO_TRUSTED_PROXIES= : no proxy to trust
    assert client_ip(request) == "10.0.0.2"


def test_it_believes_x_forwarded_for_only_from_a_trusted_proxy():
    """Issue 24, point 6: the header a client sends straight to gunicorn counts for nothing;
    behind the proxy, entries it did not write itself neither."""
    direct = RequestFactory().get("/", REMOTE_ADDR="198.51.100.20", HTTP_X_FORWARDED_FOR="9.9.9.9")
    assert client_ip(direct) == "198.51.100.20"
    chained = RequestFactory().get(
        "/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="9.9.9.9, 203.0.113.7, 10.0.0.9"
    )
    assert client_ip(chained) == "203.0.113.7"  # the first entry from the right no proxy made
    garbage = RequestFactory().get("/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="not-an-ip")
    assert client_ip(garbage) == "10.0.0.2"


def test_it_locks_out_a_client_that_rotates_x_forwarded_for_straight_to_gunicorn(client, settings):
    settings.AXES_FAILURE_LIMIT = 3
    User.objects.create_superuser("ops", "ops@example.test", PASSWORD)
    answers = [
        client.post(
            reverse("admin:login"),
            {"username": f"guess{n}", "password": "wrong"},
            REMOTE_ADDR="198.51.100.20",
            HTTP_X_FORWARDED_FOR=f"203.0.113.{n}",
        ).status_code
        for n in range(4)
    ]
    assert answers == [200, 200, 429, 429]


def test_it_locks_out_a_username_guessed_from_many_addresses(client, settings):
    settings.AXES_FAILURE_LIMIT = 3
    User.objects.create_superuser("ops", "ops@example.test", PASSWORD)

    def attempt(password: str, n: int) -> int:
        return client.post(
            reverse("admin:login"),
            {"username": "ops", "password": password},
            REMOTE_ADDR="10.0.0.2",  # Railway's proxy
            HTTP_X_FORWARDED_FOR=f"203.0.113.{n}",
        ).status_code

    assert [attempt("wrong", n) for n in range(3)] == [200, 200, 429]
    assert attempt(PASSWORD, 50) == 429 and "_auth_user_id" not in client.session
    User.objects.create_superuser("ops2", "ops2@example.test", PASSWORD)
    colleague = client.post(
        reverse("admin:login"),
        {"username": "ops2", "password": PASSWORD},
        REMOTE_ADDR="10.0.0.2",
        HTTP_X_FORWARDED_FOR="203.0.113.60",
    )
    assert colleague.status_code == 302  # another account, from a fresh address, is not locked


def settings_with(
    show: str = "s.AXES_FAILURE_LIMIT, s.AXES_COOLOFF_TIME.total_seconds(), s.ADMIN_PATH",
    **env: str,
) -> str:
    """What `show` (settings as `s`) prints in a fresh process with this environment."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "SMARTLEAD_"))}
    script = f"import django; django.setup(); from django.conf import settings as s; print({show})"
    result = subprocess.run(  # noqa: S603 - this interpreter, a fixed script
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=base | {"DJANGO_SETTINGS_MODULE": "outboundhq.settings", "DJANGO_DEBUG": "true"} | env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr


def test_the_limit_cooloff_and_path_come_from_the_environment():
    assert settings_with() == "5 900.0 admin/"
    configured = settings_with(
        DJANGO_ADMIN_LOGIN_FAILURE_LIMIT="7",
        DJANGO_ADMIN_LOGIN_COOLOFF_MINUTES="30",
        DJANGO_ADMIN_PATH="/ops-7f3",
    )
    assert configured == f"7 {timedelta(minutes=30).total_seconds()} ops-7f3/"


# --- the admin's path ----------------------------------------------------------------------------
@pytest.fixture
def admin_at(settings) -> Iterator[None]:  # noqa: ANN001
    """The URLconf rebuilt with DJANGO_ADMIN_PATH=ops-7f3/, restored afterwards."""
    settings.ADMIN_PATH = "ops-7f3/"
    importlib.reload(outboundhq.urls)
    clear_url_caches()
    yield
    settings.ADMIN_PATH = "admin/"
    importlib.reload(outboundhq.urls)
    clear_url_caches()


def test_the_admin_and_its_dashboard_move_to_the_configured_path(admin_at, admin_client):
    assert reverse("admin:index") == "/ops-7f3/"
    assert reverse("ops-dashboard") == "/ops-7f3/dashboard/"
    assert reverse("admin:profiles_profile_changelist") == "/ops-7f3/profiles/profile/"
    assert admin_client.get("/ops-7f3/").status_code == 200
    assert admin_client.get("/ops-7f3/dashboard/").status_code == 200
    assert admin_client.get("/admin/").status_code == 404


# --- django-q2's schedules -----------------------------------------------------------------------
def staff_with_every_schedule_permission(client):  # noqa: ANN001, ANN201
    staff = User.objects.create_user("staff", "staff@example.test", PASSWORD, is_staff=True)
    staff.user_permissions.set(Permission.objects.filter(content_type__app_label="django_q"))
    client.force_login(staff)
    return client


def test_staff_without_superuser_can_see_but_not_create_or_edit_schedules(client):
    schedule = Schedule.objects.create(name="s", func="sequences.tasks.run_scheduled")
    staff = staff_with_every_schedule_permission(client)
    assert staff.get(reverse("admin:django_q_schedule_changelist")).status_code == 200
    assert staff.get(reverse("admin:django_q_schedule_add")).status_code == 403
    created = staff.post(
        reverse("admin:django_q_schedule_add"), {"func": "os.system", "args": "'id'"}
    )
    assert created.status_code == 403 and not Schedule.objects.filter(func="os.system").exists()
    change = reverse("admin:django_q_schedule_change", args=[schedule.pk])
    page = staff.get(change)
    assert page.status_code == 200 and 'name="func"' not in page.content.decode()  # view only
    assert staff.post(change, {"func": "os.system"}).status_code == 403
    schedule.refresh_from_db()
    assert schedule.func == "sequences.tasks.run_scheduled"


def test_a_superuser_can_still_manage_schedules(admin_client):
    assert admin_client.get(reverse("admin:django_q_schedule_add")).status_code == 200


# --- the API docs --------------------------------------------------------------------------------
@pytest.mark.parametrize("page", ["api-docs", "api-redoc"])
def test_the_api_docs_load_their_assets_from_the_app_not_a_cdn(client, page):
    html = client.get(reverse(page), HTTP_X_FORWARDED_PROTO="https").content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+)"', html) + re.findall(r"https?://[^\s'\"]+", html)
    assert any("/static/drf_spectacular_sidecar/" in a for a in assets), assets
    external = [a for a in assets if re.match(r"(https?:)?//", a)]
    assert external == [], external
    assert not re.search(r"cdn|jsdelivr|unpkg|cdnjs", html, re.IGNORECASE)


# --- Content-Security-Policy (issue 24, point 11) -------------------------------------------------
PAGES = ["admin:index", "admin:login", "ops-dashboard", "api-docs", "api-redoc"]


@pytest.mark.parametrize("page", PAGES)
def test_it_sends_a_content_security_policy_the_page_needs_no_exception_from(
    client, admin_client, page
):
    visitor = client if page == "admin:login" else admin_client
    response = visitor.get(reverse(page), HTTP_X_FORWARDED_PROTO="https")
    assert response.status_code == 200
    policy = dict(
        part.strip().split(" ", 1) for part in response["Content-Security-Policy"].split(";")
    )
    assert policy["script-src"] == "'self'" and policy["object-src"] == "'none'"
    assert policy["frame-ancestors"] == "'none'" and policy["base-uri"] == "'none'"
    # Nothing the policy would block: no inline script, no event-handler attribute.
    html = response.content.decode()
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), page
    assert not re.search(r"\son[a-z]+=", html), page


def test_it_serves_swagger_uis_set_up_script_as_a_file(client):
    page = client.get(reverse("api-docs")).content.decode()
    (script,) = re.findall(r'<script src="([^"]*script=[^"]*)"', page)
    response = client.get(script.replace("&amp;", "&"))
    assert response.status_code == 200 and "SwaggerUIBundle(" in response.content.decode()
    assert response["Content-Type"].startswith("application/javascript")


# --- Permissions beyond staff status (issue 24, point 5) ----------------------------------------
def staff_with(client, *codenames: str):  # noqa: ANN001, ANN201
    staff = User.objects.create_user("viewer", "viewer@example.test", PASSWORD, is_staff=True)
    staff.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    client.force_login(staff)
    return client


def test_it_shows_the_ops_pages_only_with_view_permission_on_what_they_summarise(client):
    sdr = make_profile()
    pages = [reverse("ops-dashboard"), reverse("ops-sdr", args=[sdr.pk]), reverse("ops-status")]
    staff = staff_with(client)
    assert [staff.get(page).status_code for page in pages] == [403, 403, 403]
    viewer = User.objects.get(username="viewer")
    viewer.user_permissions.set(
        Permission.objects.filter(codename__in=[p.split(".")[1] for p in health.OPS_PERMISSIONS])
    )
    # /status answers 200 or 503 by the verdicts; either way it let the viewer in.
    assert [client.get(page).status_code for page in pages] in ([200, 200, 200], [200, 200, 503])


def test_it_lets_only_superusers_resubmit_django_q2_tasks(client, admin_client, monkeypatch):
    monkeypatch.setattr(Conf, "SYNC", False)  # queued for a worker, as in production
    done = Success.objects.create(
        id="a" * 32,
        name="run",
        func="sequences.tasks.run_scheduled",
        started=timezone.now(),
        stopped=timezone.now(),
        success=True,
    )
    every = Permission.objects.filter(content_type__app_label="django_q")
    staff = staff_with(client, *every.values_list("codename", flat=True))
    listing = reverse("admin:django_q_success_changelist")
    assert "resubmit_task" not in staff.get(listing).content.decode()
    staff.post(listing, {"action": "resubmit_task", "_selected_action": [done.pk]})
    assert OrmQ.objects.count() == 0  # nothing queued
    admin_client.post(listing, {"action": "resubmit_task", "_selected_action": [done.pk]})
    assert OrmQ.objects.count() == 1
