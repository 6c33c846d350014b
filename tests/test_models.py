from __future__ import annotations

from datetime import timedelta

import pytest

from profiles.credentials import SmartleadStatus
from profiles.models import CredentialCheck, Profile
from sequences.models import Enrollment
from tests.factories import make_enrollment, make_profile, make_sequence

pytestmark = pytest.mark.django_db


def test_ready_enrollments_are_active_in_an_active_sequence_and_due():
    sdr = make_profile()
    active = make_sequence(creator=sdr)
    paused = make_sequence(creator=sdr, status="paused")
    due = make_enrollment(sequence=active)
    make_enrollment(sequence=active, due_in=timedelta(hours=1))
    make_enrollment(sequence=active, status="completed")
    make_enrollment(sequence=paused)
    assert list(Enrollment.objects.ready()) == [due]


def test_credentials_need_both_a_key_and_a_numeric_email_account():
    assert make_profile().smartlead_credentials() is not None
    assert make_profile(connected=False).smartlead_credentials() is None
    assert make_profile(smartlead_email_account_id=None).smartlead_credentials() is None
    assert make_profile(smartlead_email_account_id="abc").smartlead_credentials() is None


def test_credentials_repr_shows_only_the_last_four_characters_of_the_key():
    profile = make_profile(smartlead_api_key="secret-key-123456789wxyz")
    text = repr(profile.smartlead_credentials())
    assert "secret-key-123456789wxyz" not in text and "…wxyz" in text


def test_status_in_sql_matches_status_of_a_single_row():
    connected = make_profile()
    no_key = make_profile(connected=False)
    no_account = make_profile(smartlead_email_account_id=None)
    invalid = make_profile()
    CredentialCheck.objects.record(profile=connected, status=SmartleadStatus.CONNECTED)
    CredentialCheck.objects.record(profile=invalid, status=SmartleadStatus.INVALID_KEY)
    unchecked = make_profile()
    expected = {
        connected.id: SmartleadStatus.CONNECTED,
        no_key.id: SmartleadStatus.NO_API_KEY,
        no_account.id: SmartleadStatus.NO_EMAIL_ACCOUNT,
        invalid.id: SmartleadStatus.INVALID_KEY,
        unchecked.id: SmartleadStatus.UNCHECKED,
    }
    annotated = {p.id: p.connection_status for p in Profile.objects.with_smartlead_status()}
    assert annotated == expected
    assert {p.id: p.smartlead_status() for p in Profile.objects.all()} == expected


def test_saving_new_credentials_forgets_the_verdict_on_the_old_key():
    profile = make_profile()
    CredentialCheck.objects.record(profile=profile, status=SmartleadStatus.INVALID_KEY)
    profile.set_smartlead_credentials(api_key="a-brand-new-key-0000", email_account_id=42)
    profile.refresh_from_db()
    assert profile.smartlead_status() == SmartleadStatus.UNCHECKED
    assert profile.smartlead_email_account_id == "42"
