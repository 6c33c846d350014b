from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from profiles.credentials import NOT_CONNECTED, UNREADABLE, SmartleadStatus
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


# --- The status ladder and the one place statuses are written ---------------------------
def test_it_moves_an_enrollment_up_the_ladder_by_events_and_never_down():
    sequence = make_sequence(creator=make_profile())
    replied = make_enrollment(sequence=sequence, status="replied")
    active = make_enrollment(sequence=sequence)
    completed = make_enrollment(sequence=sequence, status="completed")
    gone = make_enrollment(sequence=sequence, status="unsubscribed")
    changed = Enrollment.objects.end_by_event(
        {replied.pk: "bounced", active.pk: "replied", completed.pk: "bounced", gone.pk: "replied"},
        timezone.now(),
    )
    statuses = dict(Enrollment.objects.values_list("pk", "status"))
    assert changed == 2
    assert statuses == {
        replied.pk: "replied",  # a late bounce does not undo a reply
        active.pk: "replied",
        completed.pk: "bounced",  # a bounce of the last email, after it completed
        gone.pk: "unsubscribed",  # nothing undoes an unsubscribe
    }


def test_it_says_which_statuses_an_event_may_still_change():
    assert Enrollment.rung("active") == 0 < Enrollment.rung("bounced") < Enrollment.rung("replied")
    assert set(Enrollment.replaced_by("replied")) == {
        "active",
        "paused",
        "completed",
        "failed",
        "bounced",
    }
    assert "unsubscribed" not in Enrollment.open_to_events()
    assert "completed" in Enrollment.open_to_events()


def test_it_ends_and_pauses_only_active_enrollments():
    sequence = make_sequence(creator=make_profile())
    active, paused = make_enrollment(sequence=sequence), make_enrollment(sequence=sequence)
    Enrollment.objects.filter(pk=paused.pk).update(status="paused")
    assert Enrollment.objects.end([active.pk, paused.pk], "completed", timezone.now()) == 1
    assert Enrollment.objects.pause([active.pk, paused.pk], timezone.now()) == 0
    active.refresh_from_db()
    assert active.status == "completed" and active.completed_at is not None


# --- Acting for one SDR: Profile.objects.senders ------------------------------------------
def test_it_yields_each_sdrs_credentials_or_why_they_cannot_send_in_one_wording():
    ready, keyless = make_profile(), make_profile(connected=False)
    unreadable = make_profile(smartlead_api_key="enc:v1:gAAAAAB-no-key-opens-this")
    missing = uuid.uuid4()
    senders = list(Profile.objects.senders([ready.pk, keyless.pk, unreadable.pk, missing]))
    assert [s.profile_id for s in senders] == [ready.pk, keyless.pk, unreadable.pk, missing]
    assert senders[0].credentials is not None and senders[0].why_not == ""
    # SDRs are named as people know them (email, name); an id only when there is no profile.
    assert senders[1].why_not == NOT_CONNECTED % f"{keyless.email} ({keyless.first_name})"
    assert senders[2].unreadable and senders[2].why_not == UNREADABLE % unreadable.label
    assert senders[3].profile is None
    assert senders[3].why_not == NOT_CONNECTED % f"{missing} (no profile)"
