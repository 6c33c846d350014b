"""Smartlead keys are encrypted at rest, rotatable, and a lost encryption key stops start-up."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

import outboundhq.urls  # noqa: F401 - discovers the admin pages, as serving a request would
from outboundhq.checks import fail_fast_on_bad_configuration
from profiles import crypto
from profiles.checks import encryption_keys_check, stored_keys_check
from profiles.credentials import UNREADABLE, SmartleadStatus
from profiles.models import Profile
from sequences.executor import execute
from tests.factories import make_enrollment, make_profile, make_sequence
from tests.fake_smartlead import BASE, FakeSmartlead

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[1]
OLD, NEW, STRANGER = (Fernet.generate_key().decode() for _ in range(3))
KEY = "sl-live-key-never-stored-in-clear-7q8r"


@pytest.fixture
def keys(settings):  # noqa: ANN001, ANN201 - pytest-django's fixture
    """Sets SMARTLEAD_KEY_ENCRYPTION_KEYS for the test: keys(NEW, OLD)."""

    def use(*configured: str) -> None:
        settings.SMARTLEAD_KEY_ENCRYPTION_KEYS = list(configured)

    return use


def stored(profile: Profile) -> str:
    return Profile.objects.values_list("smartlead_api_key", flat=True).get(pk=profile.pk)


def saved_under(key: str, keys) -> Profile:  # noqa: ANN001
    """A profile whose key was saved while `key` was the encryption key."""
    keys(key)
    profile = make_profile()
    profile.set_smartlead_credentials(api_key=KEY, email_account_id=3101)
    return profile


# --- the cipher ----------------------------------------------------------------------------------
def test_it_round_trips_a_key_through_a_versioned_ciphertext(keys):
    keys(NEW)
    value = crypto.encrypt(KEY)
    assert value.startswith("enc:v1:") and KEY not in value
    assert crypto.decrypt(value) == KEY
    assert crypto.encrypt(KEY) != value  # fresh IV each time: equal keys don't look equal


def test_it_decrypts_with_any_configured_key_and_encrypts_with_the_first(keys):
    keys(OLD)
    old_token = crypto.encrypt(KEY)
    keys(NEW, OLD)
    assert crypto.decrypt(old_token) == KEY
    assert not crypto.is_current(old_token)
    rotated = crypto.reencrypted(old_token)
    keys(NEW)  # the old key removed after the rotation
    assert crypto.decrypt(rotated) == KEY and crypto.is_current(rotated)
    assert crypto.reencrypted(rotated) is None


def test_a_token_no_configured_key_opens_is_refused_clearly(keys):
    keys(STRANGER)
    token = crypto.encrypt(KEY)
    keys(NEW)
    with pytest.raises(crypto.UndecryptableKey, match="SMARTLEAD_KEY_ENCRYPTION_KEYS"):
        crypto.decrypt(token)


# --- the profile's one accessor ------------------------------------------------------------------
def test_it_stores_a_newly_connected_key_encrypted(keys):
    profile = saved_under(NEW, keys)
    assert stored(profile).startswith("enc:v1:") and KEY not in stored(profile)
    assert Profile.objects.get(pk=profile.pk).smartlead_key() == KEY


def test_a_plain_text_key_from_an_older_client_works_and_is_encrypted_on_first_use(keys):
    keys(NEW)
    profile = make_profile(smartlead_api_key=KEY, smartlead_email_account_id="3101")
    assert stored(profile) == KEY  # as the web app wrote it
    credentials = Profile.objects.get(pk=profile.pk).smartlead_credentials()
    assert credentials.api_key == KEY
    assert stored(profile).startswith("enc:v1:")
    assert Profile.objects.get(pk=profile.pk).smartlead_key() == KEY


def test_showing_the_hint_does_not_write(keys):
    keys(NEW)
    profile = make_profile(smartlead_api_key=KEY)
    assert profile.api_key_hint == "…" + KEY[-4:]
    assert stored(profile) == KEY


def test_an_unreadable_key_has_its_own_status_and_no_credentials(keys):
    profile = saved_under(STRANGER, keys)
    keys(NEW)
    profile = Profile.objects.get(pk=profile.pk)
    assert profile.smartlead_status() == SmartleadStatus.UNREADABLE_KEY
    assert profile.smartlead_credentials() is None
    assert profile.api_key_hint == ""


# --- manage.py encrypt_smartlead_keys ------------------------------------------------------------
def run_command() -> str:
    out = io.StringIO()
    call_command("encrypt_smartlead_keys", stdout=out)
    return out.getvalue()


def test_the_command_encrypts_rotates_and_is_idempotent(keys):
    rotated = saved_under(OLD, keys)
    current = saved_under(NEW, keys)
    keys(NEW, OLD)
    plain = make_profile(smartlead_api_key=KEY)
    make_profile(connected=False)
    before = stored(current)

    first = run_command()
    assert "1 encrypted, 1 rotated, 1 current, 0 unreadable" in first
    assert KEY not in first and KEY[-4:] not in first
    assert stored(current) == before  # already current: not rewritten
    keys(NEW)  # after the rotation the old key can go
    for profile in (rotated, current, plain):
        assert Profile.objects.get(pk=profile.pk).smartlead_key() == KEY
    assert "0 encrypted, 0 rotated, 3 current, 0 unreadable" in run_command()


def test_the_command_leaves_unreadable_keys_and_fails(keys):
    lost = saved_under(STRANGER, keys)
    keys(NEW)
    value = stored(lost)
    with pytest.raises(CommandError, match="1 key"):
        run_command()
    assert stored(lost) == value


# --- start-up checks -----------------------------------------------------------------------------
def test_a_lost_encryption_key_fails_the_database_check(keys):
    saved_under(STRANGER, keys)
    saved_under(STRANGER, keys)  # a lost key: every one of several keys fails
    keys(NEW)
    (error,) = stored_keys_check(databases=["default"])
    assert error.id == "profiles.E002" and error.is_serious()
    assert "SMARTLEAD_KEY_ENCRYPTION_KEYS" in error.msg and KEY not in error.msg
    assert stored_keys_check(databases=None) == []  # only where Django asks for database checks


def test_the_web_server_refuses_to_start_with_a_lost_key(keys):
    saved_under(STRANGER, keys)
    saved_under(STRANGER, keys)
    keys(NEW)
    with pytest.raises(SystemExit, match="profiles.E002"):
        fail_fast_on_bad_configuration()


def test_one_unreadable_key_among_readable_ones_is_a_warning(keys):
    saved_under(NEW, keys)
    saved_under(STRANGER, keys)
    keys(NEW)
    (warning,) = stored_keys_check(databases=["default"])
    assert warning.id == "profiles.W003" and not warning.is_serious()


def test_it_starts_and_reports_a_browser_written_value_during_the_switch_over(keys):
    """Issue 24, point 9: plain-text keys not encrypted yet, and one `enc:v1:` value the browser
    wrote; it was the only ciphertext, so "none opens" stopped migrate and the web server."""
    keys(NEW)
    make_profile(smartlead_api_key=KEY)
    make_profile(smartlead_api_key="plain-text-key-of-another-sdr-42")
    typed = make_profile(smartlead_api_key="enc:v1:pasted-in-the-web-app")

    (warning,) = stored_keys_check(databases=["default"])

    assert warning.id == "profiles.W003" and not warning.is_serious()
    assert str(typed.pk) in warning.msg and "not written by this service" in warning.msg
    fail_fast_on_bad_configuration()  # the web server starts
    call_command("check", "--database", "default", stdout=io.StringIO())  # and so does migrate


def test_it_starts_with_one_key_no_configured_key_opens(keys):
    lone = saved_under(STRANGER, keys)  # e.g. copied from another environment
    keys(NEW)
    (warning,) = stored_keys_check(databases=["default"])
    assert warning.id == "profiles.W003" and str(lone.pk) in warning.msg
    fail_fast_on_bad_configuration()


def test_readable_keys_and_plain_text_pass_the_check(keys):
    saved_under(OLD, keys)
    make_profile(smartlead_api_key=KEY)
    keys(NEW, OLD)
    assert stored_keys_check(databases=["default"]) == []


def test_a_malformed_encryption_key_is_an_error(keys):
    keys("not-a-fernet-key")
    (error,) = encryption_keys_check()
    assert error.id == "profiles.E001" and "not-a-fernet-key" not in error.msg


def in_subprocess(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """This interpreter with a fresh start-up, without the suite's Django/Smartlead variables."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "SMARTLEAD_"))}
    return subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
        [sys.executable, *args],
        cwd=ROOT,
        env=base | {"DJANGO_SETTINGS_MODULE": "outboundhq.settings"} | env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def settings_in_subprocess(**env: str) -> subprocess.CompletedProcess[str]:
    script = (
        "import django; django.setup(); from django.conf import settings; "
        "print(settings.SMARTLEAD_KEY_ENCRYPTION_KEYS)"
    )
    return in_subprocess("-c", script, **env)


def test_production_without_an_encryption_key_names_the_variable():
    result = in_subprocess("manage.py", "check", DJANGO_DEBUG="false", DJANGO_SECRET_KEY="x" * 50)
    assert result.returncode != 0
    assert "SMARTLEAD_KEY_ENCRYPTION_KEYS is required" in result.stderr


def test_debug_uses_the_documented_development_key_and_only_debug():
    result = settings_in_subprocess(DJANGO_DEBUG="true")
    assert "b3V0Ym91bmRocS1kZXZlbG9wbWVudC1vbmx5LWtleSE=" in result.stdout, result.stderr
    assert "b3V0Ym91bmRocS1kZXZlbG9wbWVudC1vbmx5LWtleSE=" in (ROOT / "README.md").read_text()
    production = settings_in_subprocess(DJANGO_DEBUG="false", DJANGO_SECRET_KEY="x" * 50)
    assert production.stdout.strip() == "[]", production.stderr


# --- the executor, the admin ---------------------------------------------------------------------
def test_an_sdr_whose_key_cannot_be_decrypted_is_skipped_and_the_others_send(keys, settings, rsps):
    settings.SMARTLEAD_BASE_URL = BASE
    settings.EXECUTOR_CONCURRENCY = 1
    smartlead = FakeSmartlead(rsps)
    lost = saved_under(STRANGER, keys)
    keys(NEW)
    fine = make_profile()
    for campaign, creator in enumerate((lost, fine), start=701):
        make_enrollment(sequence=make_sequence(creator=creator, smartlead_campaign_id=campaign))
    run = execute(trigger="command")
    assert run.pushed == 1 and smartlead.count("leads") == 1
    assert UNREADABLE % lost.label in run.errors


def test_the_admin_shows_at_most_the_last_four_characters_of_an_encrypted_key(keys, admin_client):
    profile = saved_under(NEW, keys)
    listing = admin_client.get(reverse("admin:profiles_profile_changelist")).content.decode()
    change = admin_client.get(
        reverse("admin:profiles_profile_change", args=[profile.pk])
    ).content.decode()
    for page in (listing, change):
        assert "…" + KEY[-4:] in page
        assert KEY[:-4] not in page and stored(profile) not in page and "enc:v1:" not in page


def test_the_admin_says_when_a_key_cannot_be_decrypted(keys, admin_client):
    profile = saved_under(STRANGER, keys)
    keys(NEW)
    change = admin_client.get(reverse("admin:profiles_profile_change", args=[profile.pk]))
    assert SmartleadStatus.UNREADABLE_KEY.label in change.content.decode()
