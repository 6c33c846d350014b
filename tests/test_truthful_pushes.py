"""A lead counts as sent only when Smartlead really took it: runs against the sandbox over real
HTTP, with Smartlead's block lists, bounce list, "in another campaign" rule and odd replies."""

from __future__ import annotations

import pytest

from sequences.executor import execute
from sequences.models import Enrollment, Push, StepRecord
from smartlead.api import Lead, SmartleadClient
from tests.factories import make_contact, make_enrollment, make_profile, make_sequence

pytestmark = pytest.mark.django_db
KEY = "sandbox-truth-key-0123456789"
LEADS_ROUTE = "POST /campaigns/{campaign_id}/leads"


@pytest.fixture
def sandbox(make_sandbox):  # noqa: ANN001, ANN201
    return make_sandbox({KEY: [3101]})


def enroll_all(sequence, addresses):  # noqa: ANN001, ANN201
    return {a: make_enrollment(sequence=sequence, contact=make_contact(email=a)) for a in addresses}


def test_it_pushes_the_rest_and_records_each_lead_smartlead_turned_away(sandbox):
    sdr = make_profile(smartlead_api_key=KEY, smartlead_email_account_id="3101")
    # A lead already in another campaign of the SDR's account (Smartlead's default: skipped).
    with SmartleadClient(KEY) as client:
        client.add_leads(client.create_campaign("older").id, [Lead("elsewhere@acme.test")])
    sandbox.block("blocked.test")
    sandbox.block("mine@acme.test", api_key=KEY)
    sandbox.bounce_list(KEY, "bounced@acme.test")
    turned_away = {
        "x@blocked.test": ("blocked", "block list"),
        "mine@acme.test": ("blocked", "block list"),
        "bounced@acme.test": ("bounced", "bounce list"),
        "elsewhere@acme.test": ("in_other_campaign", "another campaign"),
    }
    fine = [f"ok{n}@acme.test" for n in range(8)]
    sequence = make_sequence(creator=sdr)
    enrollments = enroll_all(sequence, [*turned_away, *fine])

    run = execute(trigger="command")

    assert run.pushed == len(fine) and run.skipped == {
        "blocked": 2,
        "bounced": 1,
        "in_other_campaign": 1,
    }
    campaign = next(c for c in sandbox.campaigns(KEY) if c["name"] != "older")
    assert sorted(lead["email"] for lead in campaign["leads"]) == sorted(fine)
    for address, (outcome, words) in turned_away.items():
        enrollment = Enrollment.objects.get(pk=enrollments[address].pk)
        assert enrollment.current_step == 1  # never advanced
        assert enrollment.status == ("bounced" if outcome == "bounced" else "failed")
        assert Push.objects.get(enrollment_id=enrollment.id).outcome == outcome
        if outcome != "bounced":
            detail = StepRecord.objects.get(enrollment_id=enrollment.id, action="failed").detail
            assert words in detail
    assert set(
        Enrollment.objects.filter(contact__email__in=fine).values_list("current_step", flat=True)
    ) == {2}

    sandbox.reset_counts()
    Enrollment.objects.update(next_send_at="2000-01-01T00:00:00Z")
    execute(trigger="command")
    assert sandbox.request_count(route=LEADS_ROUTE) == 0  # no new add-leads call for any of them


@pytest.mark.parametrize("shape", ["empty_object", "empty_body", "not_ok", "docs_shape"])
def test_it_confirms_leads_a_reply_does_not_prove_before_counting_them(sandbox, shape):
    sdr = make_profile(smartlead_api_key=KEY, smartlead_email_account_id="3101")
    sequence = make_sequence(creator=sdr)
    enrollments = enroll_all(sequence, ["ann@acme.test", "bob@acme.test"])
    sandbox.answer_add_leads_with(KEY, shape)

    run = execute(trigger="command")

    # The leads were imported; the reply didn't say so, the lead lookup did.
    assert run.pushed == 2
    assert sandbox.request_count(route="GET /leads") == 2
    for enrollment in enrollments.values():
        assert Enrollment.objects.get(pk=enrollment.pk).current_step == 2


def test_it_never_counts_a_lead_as_sent_when_nothing_confirms_it(sandbox, settings):
    sdr = make_profile(smartlead_api_key=KEY, smartlead_email_account_id="3101")
    sequence = make_sequence(creator=sdr)
    sandbox.block("acme.test", api_key=KEY)  # nothing is imported...
    sandbox.answer_add_leads_with(KEY, "docs_shape")  # ...and the reply says nothing per lead
    (enrollment,) = enroll_all(sequence, ["ann@acme.test"]).values()

    run = execute(trigger="command")

    assert run.pushed == 0 and run.deferred == 1
    assert any("not confirmed" in error for error in run.errors)
    enrollment.refresh_from_db()
    assert enrollment.status == "active" and enrollment.current_step == 1
    assert Push.objects.get(enrollment_id=enrollment.id).state == "pending"
