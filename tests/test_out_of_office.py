"""Out-of-office auto-replies read from their text (smartlead/out_of_office.py): which replies
are auto-replies, and the day their sender is back."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from smartlead import out_of_office

REPLIED = date(2025, 3, 28)  # a Friday


@pytest.mark.parametrize(
    "subject,body",
    [
        ("Automatic reply: Some more conversions?", "Thanks for your email."),
        ("Out of Office: Re: Hello", ""),
        ("Re: Hello", "I am out of the office until Monday, April 7 with limited access to email."),
        ("Re: Hello", "<p>I'm currently away until 7 April.</p><p>For urgent matters call Jo.</p>"),
        ("Re: Hello", "I am on parental leave and will return in June."),
        ("Abwesenheitsnotiz: Hallo", "Ich bin bis zum 7. April nicht im Büro."),
        ("Re: Hello", "This is an automatic reply. I will be back on 2025-04-07."),
    ],
)
def test_it_tells_an_auto_reply_by_its_subject_or_stock_phrases(subject, body):
    assert out_of_office.looks_out_of_office(subject, body)


@pytest.mark.parametrize(
    "body",
    [
        "Sure, send me some times for Thursday.",
        "I'm travelling next week, call me after that.",
        "Not interested, please remove me.",
        # Only the quoted email (ours) says "out of office": the reply itself does not.
        "Sounds good!\n\nOn Mon, Mar 24, 2025 at 10:00 Sam wrote:\n> Are you out of office soon?",
    ],
)
def test_it_leaves_a_person_s_reply_a_reply(body):
    assert not out_of_office.looks_out_of_office("Re: Hello", body)


@pytest.mark.parametrize(
    "body,back",
    [
        # "until" names the last day away; "back"/"return" the first day back.
        ("I am out of the office until April 7.", date(2025, 4, 8)),
        ("I'm on vacation and will be back on Monday, April 7th.", date(2025, 4, 7)),
        ("Away from 31 March until 4th of April 2025.", date(2025, 4, 5)),
        ("Returning 2025-04-14.", date(2025, 4, 14)),
        ("Out of office until 04/09/2025.", date(2025, 4, 10)),
        ("Abwesend bis 09.04.2025.", date(2025, 4, 10)),
        ("I'm out of office until Tuesday.", date(2025, 4, 2)),  # the next Tuesday, then back
        ("I'm out, back Monday.", date(2025, 3, 31)),
    ],
)
def test_it_reads_the_day_the_sender_is_back(body, back):
    assert out_of_office.return_day(body, REPLIED) == back


def test_a_date_without_a_year_is_its_next_occurrence():
    december = date(2025, 12, 19)
    assert out_of_office.return_day("Back on January 5.", december) == date(2026, 1, 5)


@pytest.mark.parametrize(
    "body",
    [
        "I am out of the office with limited access to email.",  # no date at all
        "Out of office until March 2.",  # before the reply: next year is too far
        "Out of office since March 20.",  # before the reply
        "On sabbatical until 2026-12-01.",  # past LONGEST_ABSENCE: not believed
        "Thanks!\n> Shall we meet on April 15?",  # only in the quoted thread
    ],
)
def test_it_finds_no_return_day_where_there_is_none_to_believe(body):
    assert out_of_office.return_day(body, REPLIED) is None


def test_it_resumes_at_the_start_of_the_day_back_in_the_schedule_timezone(settings):
    settings.SMARTLEAD_SCHEDULE_TIMEZONE = "America/New_York"
    replied = datetime(2025, 3, 28, 14, 0, tzinfo=UTC)
    until, stated = out_of_office.resume_at("Automatic reply", "Back on April 7.", replied)
    assert stated and until.isoformat() == "2025-04-07T00:00:00-04:00"


def test_without_a_date_it_resumes_after_the_default_delay(settings):
    settings.SMARTLEAD_OUT_OF_OFFICE_DAYS = 5
    replied = datetime(2025, 3, 28, 14, 0, tzinfo=UTC)
    until, stated = out_of_office.resume_at("Automatic reply", "I am away.", replied)
    assert not stated and until == replied + timedelta(days=5)
