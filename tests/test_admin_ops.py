"""Ops in the admin: credential status and checks, connecting a profile, why-not-sent, and the
SQL that keeps the key away from the browser."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import responses
from django.contrib.auth.models import Permission, User
from django.contrib.messages import get_messages
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction
from django.db.utils import ProgrammingError
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from responses import matchers

from profiles.credentials import SQL_STATUSES, SmartleadStatus
from profiles.models import CredentialCheck, Profile
from sequences.explain import explain, for_explanation
from sequences.management.commands.explain_enrollment import Command as ExplainCommand
from sequences.models import (
    CampaignProvisioning,
    Enrollment,
    ProvisioningState,
    Push,
    PushState,
    StepRecord,
)
from tests.factories import make_contact, make_enrollment, make_profile, make_sequence

pytestmark = pytest.mark.django_db

BASE = "https://smartlead.test/api/v1"
GOOD, REVOKED, BASIC, FLAKY, NEW = (
    f"sl-admin-{name}-key-0123456789" for name in ("good", "revoked", "basic", "flaky", "new")
)
KEYS = (GOOD, REVOKED, BASIC, FLAKY, NEW)
HEALTHY = {"is_smtp_success": True, "is_imap_success": True}
ROWS = [
    {"id": 21, "from_email": "a@acme.test", "from_name": "Ann", "type": "GMAIL", **HEALTHY},
    {"id": 22, "from_email": "b@acme.test", "from_name": "Ben", "type": "SMTP", **HEALTHY},
]
REVOKE_SQL = (
    Path(__file__).resolve().parents[1] / "migrations" / ("REVOKE_API_KEY_FROM_BROWSER_ROLES.sql")
)


@pytest.fixture(autouse=True)
def _setup(settings: Any, smartlead_clock: Any, caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    settings.SMARTLEAD_BASE_URL = BASE
    caplog.set_level(logging.DEBUG)
    yield
    for key in KEYS:
        assert key not in caplog.text


def smartlead_answers(rsps: responses.RequestsMock, key: str, status: int = 200) -> None:
    rsps.get(
        f"{BASE}/email-accounts/",
        json=ROWS if status == 200 else {"error": "no"},
        status=status,
        match=[matchers.query_param_matcher({"api_key": key}, strict_match=False)],
    )


def page(admin_client: Any, url: str, data: dict | None = None) -> Any:
    """GET (or POST) an admin page; no page may ever hold a key."""
    response = admin_client.post(url, data) if data is not None else admin_client.get(url)
    for key in KEYS:
        assert key not in response.content.decode()
    return response


def status_of(profile: Profile) -> str:
    return Profile.objects.with_smartlead_status().get(pk=profile.pk).connection_status


# --- Profiles: status column and filter --------------------------------------------------
def make_one_of_each_status() -> dict[str, Profile]:
    """A profile in each of the seven credential states."""
    held = make_profile()
    held.record_mailbox_failure(held.mailbox_id, "Smartlead reports it disconnected.")
    profiles = {
        SmartleadStatus.NO_API_KEY: make_profile(connected=False),
        SmartleadStatus.NO_EMAIL_ACCOUNT: make_profile(smartlead_email_account_id=None),
        SmartleadStatus.NO_HEALTHY_MAILBOX: held,
        SmartleadStatus.UNCHECKED: make_profile(),
        SmartleadStatus.CONNECTED: make_profile(),
        SmartleadStatus.INVALID_KEY: make_profile(),
        SmartleadStatus.NO_API_ACCESS: make_profile(),
    }
    for status in (
        SmartleadStatus.CONNECTED,
        SmartleadStatus.INVALID_KEY,
        SmartleadStatus.NO_API_ACCESS,
    ):
        CredentialCheck.objects.record(profile=profiles[status], status=status, detail="test")
    return profiles


@pytest.mark.parametrize("status", SQL_STATUSES)
def test_the_profile_list_filters_by_each_of_the_seven_statuses(admin_client, status):
    profiles = make_one_of_each_status()
    listing = page(
        admin_client, reverse("admin:profiles_profile_changelist") + f"?smartlead={status}"
    )
    html = listing.content.decode()
    assert profiles[status].email in html
    others = [p for s, p in profiles.items() if s != status]
    assert not any(p.email in html for p in others)
    assert status.label in html


def test_the_change_page_shows_the_check_and_links_to_the_connect_pages(admin_client):
    profile = make_profile(smartlead_api_key=GOOD)
    CredentialCheck.objects.record(
        profile=profile, status=SmartleadStatus.INVALID_KEY, detail="Smartlead said no."
    )
    html = page(admin_client, reverse("admin:profiles_profile_change", args=[profile.pk]))
    html = html.content.decode()
    assert "Smartlead said no." in html and "Invalid key" in html
    assert reverse("admin:profiles_profile_smartlead_connect", args=[profile.pk]) in html


# --- The verify action -------------------------------------------------------------------
def test_verifying_credentials_records_each_verdict_and_reports_counts(admin_client, rsps):
    good = make_profile(smartlead_api_key=GOOD, smartlead_email_account_id="21")
    revoked = make_profile(smartlead_api_key=REVOKED)
    basic = make_profile(smartlead_api_key=BASIC)
    flaky = make_profile(smartlead_api_key=FLAKY)
    keyless = make_profile(connected=False)
    smartlead_answers(rsps, GOOD)
    smartlead_answers(rsps, REVOKED, 401)
    smartlead_answers(rsps, BASIC, 403)
    smartlead_answers(rsps, FLAKY, 503)
    response = admin_client.post(
        reverse("admin:profiles_profile_changelist"),
        {
            "action": "verify_credentials",
            "_selected_action": [p.pk for p in (good, revoked, basic, flaky, keyless)],
        },
        follow=True,
    )
    [message] = [str(m) for m in get_messages(response.wsgi_request)]
    assert message == (
        "Checked 3 profile(s) with Smartlead: 1 Connected, 1 Invalid key, 1 No API access. "
        "Not checked: 1 Smartlead unreachable or failing, 1 no API key."
    )
    assert status_of(good) == SmartleadStatus.CONNECTED
    assert status_of(revoked) == SmartleadStatus.INVALID_KEY
    assert status_of(basic) == SmartleadStatus.NO_API_ACCESS
    assert not CredentialCheck.objects.filter(profile_id__in=[flaky.pk, keyless.pk]).exists()
    for key in KEYS:
        assert key not in response.content.decode()


def test_verifying_a_key_that_lost_its_mailbox_says_no_healthy_mailbox(admin_client, rsps):
    profile = make_profile(smartlead_api_key=GOOD, smartlead_email_account_id="99")
    smartlead_answers(rsps, GOOD)
    admin_client.post(
        reverse("admin:profiles_profile_changelist"),
        {"action": "verify_credentials", "_selected_action": [profile.pk]},
    )
    assert status_of(profile) == SmartleadStatus.NO_HEALTHY_MAILBOX
    [mailbox] = Profile.objects.get(pk=profile.pk).mailbox_rows()
    assert mailbox.mailbox_id == 99 and "not in this Smartlead account" in mailbox.why_not


def test_verifying_stops_asking_once_its_time_is_up(admin_client, rsps, monkeypatch):
    from profiles import admin as profiles_admin

    monkeypatch.setattr(profiles_admin, "VERIFY_SECONDS", -1.0)
    profile = make_profile(smartlead_api_key=GOOD)
    response = admin_client.post(
        reverse("admin:profiles_profile_changelist"),
        {"action": "verify_credentials", "_selected_action": [profile.pk]},
        follow=True,
    )
    assert "1 time ran out" in str(list(get_messages(response.wsgi_request))[0])
    assert len(rsps.calls) == 0


def test_it_lets_only_staff_who_may_change_profiles_verify_credentials(client, rsps):
    """Issue 24, point 5: the action calls Smartlead and records a verdict for each profile."""
    profile = make_profile(smartlead_api_key=GOOD, smartlead_email_account_id="21")
    smartlead_answers(rsps, GOOD)
    viewer = User.objects.create_user("viewer", password="x" * 20, is_staff=True)
    viewer.user_permissions.set(Permission.objects.filter(codename="view_profile"))
    client.force_login(viewer)
    listing = reverse("admin:profiles_profile_changelist")
    assert "verify_credentials" not in client.get(listing).content.decode()

    client.post(listing, {"action": "verify_credentials", "_selected_action": [profile.pk]})

    assert len(rsps.calls) == 0 and not CredentialCheck.objects.exists()
    viewer.user_permissions.add(Permission.objects.get(codename="change_profile"))
    client.post(listing, {"action": "verify_credentials", "_selected_action": [profile.pk]})
    assert status_of(profile) == SmartleadStatus.CONNECTED


# --- Connecting a profile from the admin -------------------------------------------------
def connect_url(profile: Profile) -> str:
    return reverse("admin:profiles_profile_smartlead_connect", args=[profile.pk])


def account_url(profile: Profile) -> str:
    return reverse("admin:profiles_profile_smartlead_account", args=[profile.pk])


def test_connecting_a_profile_takes_a_key_then_a_mailbox_listed_live(admin_client, rsps):
    profile = make_profile(connected=False)
    smartlead_answers(rsps, NEW)
    form = page(admin_client, connect_url(profile))
    assert form.status_code == 200 and 'type="password"' in form.content.decode()
    saved = page(admin_client, connect_url(profile), {"api_key": f" {NEW} "})
    assert saved.status_code == 302 and saved["Location"] == account_url(profile)
    assert Profile.objects.get(pk=profile.pk).smartlead_key() == NEW
    offer = page(admin_client, account_url(profile)).content.decode()
    assert "List its email accounts" in offer and "Ann" not in offer  # a GET only offers
    choices = page(admin_client, account_url(profile), {}).content.decode()
    assert "Ann &lt;a@acme.test&gt;" in choices and "Ben &lt;b@acme.test&gt;" in choices
    chosen = page(
        admin_client, account_url(profile), {"choose": "1", "email_account_ids": ["22", "21"]}
    )
    assert chosen.status_code == 302
    saved = Profile.objects.get(pk=profile.pk)
    assert saved.smartlead_email_account_id == "21"  # the listing's order: 21 first
    assert [row.address for row in saved.mailbox_rows()] == ["a@acme.test", "b@acme.test"]
    assert status_of(profile) == SmartleadStatus.CONNECTED


@pytest.mark.parametrize(
    "status,words", [(401, "rejected this API key"), (403, "must include API access")]
)
def test_a_refused_key_is_shown_as_a_form_error_and_never_echoed(admin_client, rsps, status, words):
    profile = make_profile(smartlead_api_key=GOOD, smartlead_email_account_id="21")
    smartlead_answers(rsps, REVOKED, status)
    response = page(admin_client, connect_url(profile), {"api_key": REVOKED})
    assert response.status_code == 200 and words in response.content.decode()
    assert Profile.objects.get(pk=profile.pk).smartlead_key() == GOOD


def test_a_key_with_spaces_inside_is_refused_before_smartlead_is_asked(admin_client, rsps):
    profile = make_profile(connected=False)
    response = page(admin_client, connect_url(profile), {"api_key": "two words"})
    assert response.status_code == 200 and "must not contain spaces" in response.content.decode()
    assert len(rsps.calls) == 0


def test_a_mailbox_the_key_does_not_own_cannot_be_chosen(admin_client, rsps):
    profile = make_profile(smartlead_api_key=GOOD, smartlead_email_account_id=None)
    smartlead_answers(rsps, GOOD)
    response = page(
        admin_client, account_url(profile), {"choose": "1", "email_account_ids": ["77"]}
    )
    assert response.status_code == 200 and "Select a valid choice" in response.content.decode()
    assert Profile.objects.get(pk=profile.pk).smartlead_email_account_id is None


def test_it_neither_asks_smartlead_nor_writes_when_the_mailbox_page_is_only_opened(
    admin_client, rsps
):
    """Issue 24, point 5: any page can make an admin's browser GET this URL (an image)."""
    profile = make_profile(smartlead_api_key=GOOD, smartlead_email_account_id="21")
    smartlead_answers(rsps, GOOD)

    response = page(admin_client, account_url(profile))

    assert response.status_code == 200 and 'method="post"' in response.content.decode()
    assert len(rsps.calls) == 0 and not CredentialCheck.objects.exists()


def test_the_mailbox_page_without_a_key_sends_you_to_the_key_page(admin_client, rsps):
    profile = make_profile(connected=False)
    response = page(admin_client, account_url(profile))
    assert response.status_code == 302 and response["Location"] == connect_url(profile)


def test_the_mailbox_page_when_smartlead_is_down_says_so(admin_client, rsps):
    profile = make_profile(smartlead_api_key=GOOD)
    smartlead_answers(rsps, GOOD, 503)
    response = admin_client.post(account_url(profile), {}, follow=True)
    assert "could not be reached" in str(list(get_messages(response.wsgi_request))[0])


def test_the_connect_pages_404_for_an_unknown_profile(admin_client):
    missing = "00000000-0000-0000-0000-000000000000"
    for name in ("smartlead_connect", "smartlead_account"):
        url = reverse(f"admin:profiles_profile_{name}", args=[missing])
        assert admin_client.get(url).status_code == 404


def test_the_connect_pages_need_an_admin_login(client):
    profile = make_profile(connected=False)
    response = client.get(connect_url(profile))
    assert response.status_code == 302 and "/login/" in response["Location"]


# --- Why not sent ------------------------------------------------------------------------
EMAIL_THEN_OPENED = [
    {"step_type": "email", "subject": "Hi", "body": "Hello"},
    {"step_type": "email", "body": "Again", "condition_previous_opened": True},
]
Situation = Callable[[], Enrollment]


def _failed_with_record() -> Enrollment:
    enrollment = make_enrollment(sequence=make_sequence(creator=make_profile()), status="failed")
    StepRecord.objects.create(
        enrollment_id=enrollment.id, step_number=1, action="failed", detail="No email address."
    )
    return enrollment


def _failed_with_push() -> Enrollment:
    enrollment = make_enrollment(sequence=make_sequence(creator=make_profile()), status="failed")
    Push.objects.create(
        enrollment_id=enrollment.id,
        campaign_id=5,
        sequence_id=enrollment.sequence_id,
        profile_id=enrollment.sequence.created_by_id,
        email="x@y.test",
        state=PushState.REJECTED,
        outcome="invalid",
    )
    return enrollment


def _creator_with(status: SmartleadStatus) -> Enrollment:
    creator = make_profile()
    CredentialCheck.objects.record(profile=creator, status=status, detail="")
    return make_enrollment(sequence=make_sequence(creator=creator))


def _provisioning_failed() -> Enrollment:
    enrollment = make_enrollment(sequence=make_sequence(creator=make_profile()))
    CampaignProvisioning.objects.create(
        sequence_id=enrollment.sequence_id, state=ProvisioningState.FAILED, reason="HTTP 500"
    )
    return enrollment


def _pushed() -> Enrollment:
    sequence = make_sequence(creator=make_profile(), smartlead_campaign_id="777")
    enrollment = make_enrollment(sequence=sequence, current_step=2, due_in=timedelta(days=3))
    Push.objects.create(
        enrollment_id=enrollment.id,
        campaign_id=777,
        sequence_id=sequence.id,
        profile_id=sequence.created_by_id,
        email="x@y.test",
        state=PushState.PUSHED,
        pushed_at=timezone.now().replace(year=2030, month=1, day=2, hour=9, minute=5),
    )
    return enrollment


SITUATIONS: dict[str, tuple[Situation, str]] = {
    "completed": (
        lambda: make_enrollment(sequence=make_sequence(creator=make_profile()), status="completed"),
        "Completed",
    ),
    "failed, executor's reason": (_failed_with_record, "Failed because: No email address."),
    "failed, Smartlead's outcome": (_failed_with_push, "Smartlead rejected the lead (invalid)"),
    "sequence paused": (
        lambda: make_enrollment(sequence=make_sequence(creator=make_profile(), status="paused")),
        "the sequence is paused, not active",
    ),
    "creator not connected": (
        lambda: make_enrollment(sequence=make_sequence(creator=make_profile(connected=False))),
        "has not connected Smartlead (no API key)",
    ),
    "creator without mailbox": (
        lambda: make_enrollment(
            sequence=make_sequence(creator=make_profile(smartlead_email_account_id=None))
        ),
        "has not chosen a Smartlead email account",
    ),
    "credentials invalid": (
        lambda: _creator_with(SmartleadStatus.INVALID_KEY),
        "credentials that are invalid",
    ),
    "no API access": (lambda: _creator_with(SmartleadStatus.NO_API_ACCESS), "without API access"),
    "no creator": (
        lambda: make_enrollment(sequence=make_sequence(creator=None)),
        "has no creator",
    ),
    "cannot be provisioned": (
        lambda: make_enrollment(
            sequence=make_sequence(creator=make_profile(), steps=EMAIL_THEN_OPENED)
        ),
        "cannot be provisioned in Smartlead. Step 2 is an email that waits for the previous "
        "email to be opened",
    ),
    "provisioning failed": (_provisioning_failed, "campaign setup failed (retried next run)"),
    "scheduled": (
        lambda: make_enrollment(
            sequence=make_sequence(creator=make_profile()),
            due_in=timedelta(days=2),
        ),
        "Step 1 is scheduled for ",
    ),
    "pushed": (_pushed, "Pushed to campaign 777 at 2030-01-02 09:05 UTC."),
    "due now": (
        lambda: make_enrollment(sequence=make_sequence(creator=make_profile())),
        "Step 1 is due now",
    ),
    # What the due step does comes from the executor's own rule (steps.decide).
    "due now, to push": (
        lambda: make_enrollment(sequence=make_sequence(creator=make_profile())),
        "Step 1 becomes a lead in its campaign (to be set up); Smartlead sends the email.",
    ),
    "due now, bad address": (
        lambda: make_enrollment(
            sequence=make_sequence(creator=make_profile()),
            contact=make_contact(email="not an address"),
        ),
        "Step 1 fails: The contact's email address 'not an address' is not valid.",
    ),
    "due now, a call": (
        lambda: make_enrollment(sequence=make_sequence(creator=make_profile()), current_step=3),
        "Step 3 creates a call task for the SDR.",
    ),
}


@pytest.mark.parametrize("situation", list(SITUATIONS))
@pytest.mark.parametrize("loaded", ["for_explanation", "plainly"])
def test_why_not_sent_says_in_words_what_an_enrollment_waits_for(situation, loaded):
    build, words = SITUATIONS[situation]
    enrollment = build()
    queryset = Enrollment.objects.all()
    if loaded == "for_explanation":
        queryset = for_explanation(queryset)
    assert words in explain(queryset.get(pk=enrollment.pk))


def test_the_enrollment_list_shows_why_not_sent_at_a_fixed_query_cost(admin_client):
    url = reverse("admin:sequences_enrollment_changelist")

    def add_each_situation() -> None:
        for build, _ in SITUATIONS.values():
            build()

    add_each_situation()
    with CaptureQueriesContext(connection) as small:
        html = page(admin_client, url).content.decode()
    assert "Why not sent" in html and "Pushed to campaign 777" in html
    add_each_situation()
    add_each_situation()
    with CaptureQueriesContext(connection) as large:
        page(admin_client, url)
    assert len(large) == len(small)


def test_an_enrollment_page_shows_why_not_sent(admin_client):
    enrollment = make_enrollment(sequence=make_sequence(creator=make_profile(connected=False)))
    url = reverse("admin:sequences_enrollment_change", args=[enrollment.pk])
    assert "has not connected Smartlead" in page(admin_client, url).content.decode()


def test_explain_enrollment_prints_the_explanation(capsys):
    sdr = make_profile(connected=False)
    enrollment = make_enrollment(sequence=make_sequence(creator=sdr))
    call_command("explain_enrollment", str(enrollment.pk))
    out = capsys.readouterr().out
    assert str(enrollment.pk) in out and "has not connected Smartlead" in out
    assert f"(SDR {sdr.label})" in out and "next send 20" in out  # named, not by id


@pytest.mark.parametrize("status", ["completed", "replied", "paused", "failed"])
def test_explain_enrollment_prints_no_next_send_once_an_enrollment_has_ended(capsys, status):
    enrollment = make_enrollment(sequence=make_sequence(creator=make_profile()), status=status)
    call_command("explain_enrollment", str(enrollment.pk))
    out = capsys.readouterr().out
    assert "no next send" in out and "next send 20" not in out


@pytest.mark.parametrize(
    "argument,words",
    [
        ("not-a-uuid", "is not an enrollment id"),
        ("00000000-0000-0000-0000-000000000000", "No enrollment has the id"),
    ],
)
def test_explain_enrollment_exits_non_zero_for_a_bad_id(capsys, argument, words):
    with pytest.raises(CommandError, match=words):
        call_command("explain_enrollment", argument)
    with pytest.raises(SystemExit) as exited:
        ExplainCommand().run_from_argv(["manage.py", "explain_enrollment", argument])
    assert exited.value.code == 1
    assert words in capsys.readouterr().err


# --- The SQL that keeps the key from the browser -----------------------------------------
def run_sql(sql: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql)


def can(role: str, column: str, privilege: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT has_column_privilege(%s, 'public.profiles', %s, %s)", [role, column, privilege]
        )
        return cursor.fetchone()[0]


@pytest.fixture
def supabase_roles() -> None:
    """`anon` and `authenticated` as Supabase sets them up: everything on the table."""
    for role in ("anon", "authenticated"):
        run_sql(
            f"DO $$ BEGIN CREATE ROLE {role} NOLOGIN; "
            "EXCEPTION WHEN duplicate_object THEN NULL; END $$"
        )
    run_sql("GRANT ALL ON public.profiles TO anon, authenticated")


@pytest.mark.postgres
def test_a_column_revoke_alone_does_not_hide_the_key(supabase_roles):
    run_sql("REVOKE SELECT (smartlead_api_key) ON public.profiles FROM authenticated")
    assert can("authenticated", "smartlead_api_key", "SELECT")  # the trap the script avoids


@pytest.mark.postgres
def test_the_revoke_script_hides_the_key_from_browser_roles(supabase_roles):
    for _ in range(2):  # idempotent
        run_sql(REVOKE_SQL.read_text())
        for role in ("anon", "authenticated"):
            assert not can(role, "smartlead_api_key", "SELECT")
            assert not can(role, "smartlead_api_key", "UPDATE")
            assert not can(role, "smartlead_api_key", "INSERT")
            assert not can(role, "smartlead_email_account_id", "UPDATE")
            assert can(role, "email", "SELECT") and can(
                role, "smartlead_email_account_id", "SELECT"
            )
            assert can(role, "first_name", "UPDATE") and can(role, "email", "INSERT")


@pytest.mark.postgres
@pytest.mark.parametrize(
    "statement",
    [
        "SELECT smartlead_api_key FROM public.profiles",
        "SELECT * FROM public.profiles",
        "UPDATE public.profiles SET first_name = first_name RETURNING smartlead_api_key",
        "UPDATE public.profiles SET first_name = 'x' WHERE smartlead_api_key LIKE 'a%'",
        "UPDATE public.profiles SET smartlead_api_key = 'chosen-by-the-browser'",
    ],
)
def test_a_browser_role_cannot_read_or_write_the_key_any_way(supabase_roles, statement):
    make_profile(smartlead_api_key=GOOD)
    run_sql(REVOKE_SQL.read_text())
    with pytest.raises(ProgrammingError, match="permission denied"):
        with transaction.atomic():
            run_sql("SET LOCAL ROLE authenticated")
            run_sql(statement)
    run_sql("SELECT 1")  # the savepoint rolled back; the connection is usable


@pytest.mark.postgres
def test_the_revoke_script_refuses_to_pass_when_public_can_still_read_the_key(supabase_roles):
    run_sql("GRANT SELECT ON public.profiles TO PUBLIC")
    with pytest.raises(Exception, match="can still read profiles.smartlead_api_key"):
        with transaction.atomic():
            run_sql(REVOKE_SQL.read_text())
