"""Progress of the long commands on a terminal: SDRs (or events) done of all, leads pushed and
time elapsed, on stderr; quiet when stderr is not a terminal, under --json and in the schedule."""

from __future__ import annotations

import json
import re
from io import StringIO

import pytest
from django.core.management import call_command

from sequences.executor import execute
from sequences.models import RunTrigger
from sequences.tasks import run_scheduled
from smartlead.models import Outcome, WebhookEvent
from tests.factories import make_enrollment, make_profile, make_sequence

pytestmark = pytest.mark.django_db

KEYS = ["progress-key-one-0123456789", "progress-key-two-0123456789"]
LINE = re.compile(r"^\d+/\d+ SDRs done, \d+ leads pushed, \d+\.\d s elapsed$")


class Terminal(StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def two_sdrs(make_sandbox):  # noqa: ANN001, ANN201
    """Two connected SDRs with 2 and 3 ready enrollments, and the sandbox for their keys."""
    accounts = [
        {
            "api_key": key,
            "plan": "pro",
            "email_accounts": [{"id": 4100 + n, "from_email": f"sdr{n}@demo.test"}],
        }
        for n, key in enumerate(KEYS)
    ]
    server = make_sandbox(accounts)
    for n, (key, leads) in enumerate(zip(KEYS, (2, 3), strict=True)):
        sdr = make_profile(smartlead_api_key=key, smartlead_email_account_id=str(4100 + n))
        sequence = make_sequence(creator=sdr)
        for _ in range(leads):
            make_enrollment(sequence=sequence)
    return server


def run_command(*args: str, stderr: StringIO | None = None) -> tuple[str, str]:
    out, err = StringIO(), stderr if stderr is not None else StringIO()
    call_command("execute_sequences", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_the_executor_reports_after_each_sdr_with_the_total_and_leads_pushed(two_sdrs):
    calls: list[tuple[int, int, int]] = []
    record = execute(trigger=RunTrigger.COMMAND, progress=lambda *a: calls.append(a))
    assert [(done, total) for done, total, _ in calls] == [(1, 2), (2, 2)]
    pushed = [p for _, _, p in calls]
    assert pushed == sorted(pushed) and pushed[-1] <= record.pushed == 5


def test_it_shows_sdrs_done_leads_pushed_and_elapsed_with_progress(two_sdrs):
    out, err = run_command("--progress")
    lines = err.splitlines()
    assert [line.split(" SDRs")[0] for line in lines] == ["1/2", "2/2", "Finished: 2/2"]
    assert all(LINE.match(line) for line in lines[:2]), lines
    assert lines[-1].startswith("Finished: 2/2 SDRs done, 5 leads pushed, ")
    assert "5 pushed" in out  # the summary still goes to stdout


def test_it_shows_progress_when_stderr_is_a_terminal(two_sdrs):
    _, err = run_command(stderr=Terminal())
    assert "Finished: 2/2 SDRs done, 5 leads pushed" in err


def test_it_is_quiet_when_stderr_is_not_a_terminal(two_sdrs):
    _, err = run_command()
    assert err == ""


def test_it_keeps_json_output_pure_json_even_when_asked_for_progress(two_sdrs):
    out, err = run_command("--json", "--progress", stderr=Terminal())
    assert json.loads(out)["pushed"] == 5
    assert err == ""


def test_the_schedule_reports_no_progress(two_sdrs, capsys):
    assert run_scheduled()["pushed"] == 5
    captured = capsys.readouterr()
    assert "SDRs done" not in captured.err + captured.out


def failed_events(n: int) -> None:
    """Events that failed before; with no such lead in our tables they now end unmatched."""
    WebhookEvent.objects.bulk_create(
        [
            WebhookEvent(
                dedupe_key=f"progress-{i}",
                event_type="EMAIL_OPEN",
                campaign_id=1,
                lead_email=f"nobody{i}@prospect.test",
                raw_body="{}",
                outcome=Outcome.FAILED,
            )
            for i in range(n)
        ]
    )


def test_reprocessing_shows_events_done_of_all_and_elapsed_with_progress():
    failed_events(3)
    out, err = StringIO(), StringIO()
    call_command("reprocess_webhooks", "--progress", stdout=out, stderr=err)
    assert re.fullmatch(r"3/3 events done \(3 unmatched\), \d+\.\d s elapsed\n", err.getvalue())
    assert out.getvalue().strip() == "Reprocessed 3 event(s): 3 unmatched."


def test_reprocessing_is_quiet_when_stderr_is_not_a_terminal():
    failed_events(2)
    err = StringIO()
    call_command("reprocess_webhooks", stdout=StringIO(), stderr=err)
    assert err.getvalue() == ""
