"""Smartlead → app without webhooks (issue 12): deliveries lost at the receiver are repaired by
the reconcile pass, against the sandbox over real HTTP."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone

from sequences.executor import execute
from sequences.models import (
    CallTask,
    CampaignProvisioning,
    Engagement,
    Enrollment,
    EnrollmentHold,
)
from smartlead import reconcile as reconciling
from smartlead.models import WebhookEvent
from smartlead.reconcile import reconcile
from smartlead.sandbox import SandboxServer
from tests.factories import make_contact, make_enrollment, make_profile, make_sequence
from tests.test_webhooks import configure, fixture, post

pytestmark = pytest.mark.django_db
KEY = "sandbox-reconcile-key-0123456789"
OTHER_KEY = "sandbox-reconcile-other-sdr-key-98765"
EMAIL_THEN_CALL_NOW = [
    {"step_type": "email", "subject": "Hi"},
    {"step_type": "call", "call_objective": "Book a meeting"},  # due right after email 1
]
LEADS = ["ann@acme.test", "bob@acme.test", "cid@acme.test", "dee@acme.test"]


@pytest.fixture
def sandbox(settings: Any, make_sandbox: Any) -> SandboxServer:
    configure(settings)
    return make_sandbox({KEY: [3501], OTHER_KEY: [3502]}, requests_per_minute=600, burst=100)


@pytest.fixture
def pushed(sandbox: SandboxServer) -> tuple[int, dict[str, Enrollment]]:
    sdr = make_profile(smartlead_api_key=KEY, smartlead_email_account_id="3501")
    sequence = make_sequence(creator=sdr, steps=EMAIL_THEN_CALL_NOW)
    enrollments = {
        a: make_enrollment(sequence=sequence, contact=make_contact(email=a)) for a in LEADS
    }
    assert execute(trigger="command").pushed == len(LEADS)
    sequence.refresh_from_db()
    for address in LEADS:
        sandbox.lead_sent(KEY, sequence.campaign, address, 1)
    return sequence.campaign, enrollments


def status(enrollment: Enrollment) -> str:
    return Enrollment.objects.get(pk=enrollment.pk).status


def test_it_repairs_lost_replies_bounces_and_unsubscribes_and_no_call_follows_a_reply(
    sandbox, pushed, client
):
    campaign, enrollments = pushed
    # Smartlead records these; their webhook deliveries never reach us (dropped).
    reply_stats = sandbox.lead_replied(KEY, campaign, "ann@acme.test", "Yes, call me Thursday")
    sandbox.lead_bounced(KEY, campaign, "bob@acme.test")
    sandbox.lead_unsubscribed(KEY, campaign, "cid@acme.test")
    assert not WebhookEvent.objects.exists()
    before = sandbox.request_count(KEY)

    run = reconcile(trigger="command")

    assert run.repaired == {"EMAIL_REPLY": 1, "EMAIL_BOUNCE": 1, "LEAD_UNSUBSCRIBED": 1}, run.errors
    # The SDR's mailbox health read, 3 filtered lead lists, 3 histories, the full list for
    # completions; as Smartlead counts it.
    assert run.smartlead_requests == sandbox.request_count(KEY) - before == 8
    assert [status(enrollments[a]) for a in LEADS] == [
        "replied",
        "bounced",
        "unsubscribed",
        "active",
    ]
    reply = Engagement.objects.get(enrollment_id=enrollments["ann@acme.test"].pk)
    assert reply.metadata["stats_id"] == reply_stats
    assert "Thursday" in reply.metadata["reply_preview"]

    execute(trigger="command")  # the call step is due now for whoever is still active

    calls = set(CallTask.objects.values_list("enrollment_id", flat=True))
    assert calls == {enrollments["dee@acme.test"].pk}  # none for the lead who replied

    # The webhook arrives late after all: the same event, applied once.
    late = fixture(
        "email_reply",
        campaign_id=campaign,
        stats_id=reply_stats,
        sl_lead_email="ann@acme.test",
        to_email="ann@acme.test",
    )
    assert post(client, late).json()["status"] == "duplicate"
    assert WebhookEvent.objects.filter(event_type="EMAIL_REPLY").get().deliveries == 2
    assert Engagement.objects.filter(engagement_type="email_replied").count() == 1

    again = reconcile(trigger="command")
    assert again.repaired == {} and again.errors == []


def test_a_batch_of_lost_replies_and_bounces_past_the_first_page_is_all_repaired(sandbox):
    """120 leads: Smartlead's lead list comes in pages of 100, and the last page holds some."""
    sdr = make_profile(smartlead_api_key=KEY, smartlead_email_account_id="3501")
    sequence = make_sequence(creator=sdr, steps=[{"step_type": "email", "subject": "Hi"}] * 2)
    people = [f"lead{n:03d}@acme.test" for n in range(120)]
    enrollments = [
        make_enrollment(sequence=sequence, contact=make_contact(email=a)) for a in people
    ]
    assert execute(trigger="command").pushed == 120
    sequence.refresh_from_db()
    replied, bounced = people[3:6] + people[101:103], people[10:11] + people[115:117]
    for address in replied:
        sandbox.lead_replied(KEY, sequence.campaign, address, "Interested")
    for address in bounced:
        sandbox.lead_bounced(KEY, sequence.campaign, address)

    run = reconcile(trigger="command")

    assert run.repaired == {"EMAIL_REPLY": 5, "EMAIL_BOUNCE": 3}, run.errors
    statuses = {a: status(e) for a, e in zip(people, enrollments, strict=True)}
    assert {a for a, s in statuses.items() if s == "replied"} == set(replied)
    assert {a for a, s in statuses.items() if s == "bounced"} == set(bounced)
    lists = sandbox.request_count(KEY, route="GET /campaigns/{campaign_id}/leads")
    assert lists == 5  # 3 filtered lists of one page each, then the whole list in 2 pages


def test_a_webhook_that_came_first_makes_the_reconciled_event_a_duplicate(sandbox, pushed, client):
    campaign, enrollments = pushed
    stats = sandbox.lead_replied(KEY, campaign, "ann@acme.test", "Interested")
    delivered = fixture(
        "email_reply",
        campaign_id=campaign,
        stats_id=stats,
        sl_lead_email="ann@acme.test",
        to_email="ann@acme.test",
    )
    assert post(client, delivered).status_code == 200
    assert status(enrollments["ann@acme.test"]) == "replied"

    run = reconcile(trigger="command")

    assert run.repaired == {}
    assert WebhookEvent.objects.filter(event_type="EMAIL_REPLY").count() == 1


def test_a_late_unsubscribe_webhook_after_the_pass_is_a_duplicate(sandbox, pushed, client):
    """Smartlead's LEAD_UNSUBSCRIBED carries neither stats_id nor time, and the pass cannot know
    when it happened: the identity of both is the campaign and the lead (there is no undo)."""
    campaign, enrollments = pushed
    sandbox.lead_unsubscribed(KEY, campaign, "cid@acme.test")
    assert reconcile(trigger="command").repaired == {"LEAD_UNSUBSCRIBED": 1}

    late = fixture("lead_unsubscribed", campaign_id=campaign, lead_email="cid@acme.test")
    assert post(client, late).json()["status"] == "duplicate"
    assert Engagement.objects.filter(engagement_type="email_unsubscribed").count() == 1
    assert status(enrollments["cid@acme.test"]) == "unsubscribed"


def test_since_leaves_out_earlier_replies_and_bounces_but_not_an_unsubscribe(sandbox, pushed):
    """Smartlead does not say when a lead unsubscribed, so no `since` can rule it out."""
    campaign, enrollments = pushed
    sandbox.lead_replied(KEY, campaign, "ann@acme.test", "Yes")
    sandbox.lead_bounced(KEY, campaign, "bob@acme.test")
    sandbox.lead_unsubscribed(KEY, campaign, "cid@acme.test")

    run = reconcile(trigger="command", since=timezone.now() + timedelta(hours=1))

    assert run.repaired == {"LEAD_UNSUBSCRIBED": 1}
    assert [status(enrollments[a]) for a in LEADS] == ["active", "active", "unsubscribed", "active"]


def test_a_reply_in_one_sdrs_campaign_never_reaches_another_sdrs_lead_of_that_address(sandbox):
    """Tenant scoping on the reconcile path: each SDR's campaign is read with their own key, and
    what it finds lands only in the sequence that campaign was provisioned for."""
    two_emails = [{"step_type": "email", "subject": "Hi"}] * 2
    enrolled = {}
    for key, mailbox in ((KEY, "3501"), (OTHER_KEY, "3502")):
        sdr = make_profile(smartlead_api_key=key, smartlead_email_account_id=mailbox)
        sequence = make_sequence(creator=sdr, steps=two_emails)
        enrolled[key] = make_enrollment(sequence=sequence, contact=make_contact(email=LEADS[0]))
    assert execute(trigger="command").pushed == 2
    mine = Enrollment.objects.get(pk=enrolled[KEY].pk).sequence
    sandbox.lead_replied(KEY, mine.campaign, LEADS[0], "Yes")

    run = reconcile(trigger="command")

    assert (run.campaigns, run.repaired) == (2, {"EMAIL_REPLY": 1}), run.errors
    assert status(enrolled[KEY]) == "replied" and status(enrolled[OTHER_KEY]) == "active"
    assert not Engagement.objects.filter(contact_id=enrolled[OTHER_KEY].contact_id).exists()


def test_a_lead_smartlead_completed_completes_only_when_no_step_of_ours_is_left(sandbox, settings):
    sdr = make_profile(smartlead_api_key=KEY, smartlead_email_account_id="3501")
    emails = make_sequence(creator=sdr, steps=[{"step_type": "email", "subject": "Hi"}] * 2)
    with_call = make_sequence(creator=sdr, steps=EMAIL_THEN_CALL_NOW)
    a = make_enrollment(sequence=emails, contact=make_contact(email="ann@acme.test"))
    b = make_enrollment(sequence=with_call, contact=make_contact(email="bob@acme.test"))
    execute(trigger="command")
    for sequence, address in ((emails, "ann@acme.test"), (with_call, "bob@acme.test")):
        sequence.refresh_from_db()
        account = sandbox.state.accounts[KEY]
        campaign = account.campaigns[sequence.campaign]
        campaign.lead_status[campaign.leads[address]] = "COMPLETED"

    run = reconcile(trigger="command")

    assert run.completed == 1
    assert status(a) == "completed" and status(b) == "active"


def test_campaigns_a_spent_budget_left_unread_go_first_in_the_next_pass(
    smartlead_clock, monkeypatch, settings
):
    settings.RECONCILE_CONCURRENCY = 1  # its threads' own connections can't see the test's rows
    for n in range(3):
        sdr = make_profile(smartlead_api_key=f"{KEY}-{n}", smartlead_email_account_id="3501")
        sequence = make_sequence(creator=sdr)
        CampaignProvisioning.objects.create(sequence=sequence, state="ready", campaign_id=7000 + n)
    read = []

    def ten_seconds_each(run, client, record, since):  # noqa: ANN001, ANN202
        read.append(record.campaign_id)
        smartlead_clock.now += 10
        return []

    monkeypatch.setattr(reconciling, "repair", ten_seconds_each)
    monkeypatch.setattr(reconciling, "read_mailbox_health", lambda client, profile: [])

    first = reconcile(trigger="command", time_budget=15)
    second = reconcile(trigger="command", time_budget=15)

    assert read == [7000, 7001, 7002, 7000]  # the one left unread went first, then the oldest
    assert first.campaigns == 2
    assert first.errors == [
        "The time budget is spent: 1 campaigns wait, and go first in the next pass."
    ]
    assert second.campaigns == 2


def test_a_lost_reply_to_the_last_email_is_repaired_after_the_enrollment_completed(sandbox):
    sdr = make_profile(smartlead_api_key=KEY, smartlead_email_account_id="3501")
    sequence = make_sequence(creator=sdr, steps=[{"step_type": "email", "subject": "Hi"}])
    enrollment = make_enrollment(sequence=sequence, contact=make_contact(email=LEADS[0]))
    execute(trigger="command")
    Enrollment.objects.filter(pk=enrollment.pk).update(status="completed")  # past its last step
    sequence.refresh_from_db()
    sandbox.lead_replied(KEY, sequence.campaign, LEADS[0], "Sorry for the late answer: yes")

    assert reconcile(trigger="command").repaired == {"EMAIL_REPLY": 1}
    assert status(enrollment) == "replied"
    assert Engagement.objects.filter(engagement_type="email_replied").count() == 1


def test_the_command_reports_what_it_repaired_as_json_and_refuses_a_bad_since(sandbox, pushed):
    campaign, _ = pushed
    sandbox.lead_replied(KEY, campaign, "ann@acme.test", "Yes")
    out = StringIO()
    call_command("reconcile_smartlead", "--json", stdout=out)
    assert json.loads(out.getvalue())["repaired"] == {"EMAIL_REPLY": 1}
    with pytest.raises(Exception, match="not an ISO date"):
        call_command("reconcile_smartlead", "--since", "yesterday-ish")


def test_the_hourly_schedule_runs_the_reconcile_pass():
    from django_q.models import Schedule

    from smartlead import tasks

    tasks.ensure_schedule()
    tasks.ensure_schedule()  # idempotent: never a second copy
    (schedule,) = Schedule.objects.filter(name=tasks.SCHEDULE_NAME)
    assert (schedule.func, schedule.minutes) == ("smartlead.tasks.run_scheduled", 60)
    assert tasks.run_scheduled()["repaired"] == {}


def test_the_command_shows_progress_on_request_and_never_with_json(sandbox, pushed):
    out, err = StringIO(), StringIO()
    call_command("reconcile_smartlead", "--progress", stdout=out, stderr=err)
    assert "1/1 campaigns read, 0 events found" in err.getvalue()
    quiet = StringIO()
    call_command("reconcile_smartlead", "--json", "--progress", stdout=StringIO(), stderr=quiet)
    assert quiet.getvalue() == ""


# --- Lost category changes (issue 23) -----------------------------------------------------------
CATEGORIES_ROUTE = "GET /leads/fetch-categories"


def test_a_lost_interested_category_gets_its_one_call_task(sandbox, pushed, client):
    campaign, enrollments = pushed
    ann = enrollments["ann@acme.test"]
    delivery = sandbox.lead_categorised(KEY, campaign, "ann@acme.test", "Interested")  # dropped

    run = reconcile(trigger="command")

    assert run.repaired == {"LEAD_CATEGORY_UPDATED": 1}, run.errors
    assert status(ann) == "replied"
    assert CallTask.objects.filter(enrollment_id=ann.pk).count() == 1
    # The delivery arrives late, and the pass runs again: still the one call.
    assert post(client, delivery).status_code == 200
    assert reconcile(trigger="command").repaired == {}
    execute(trigger="command")  # the sequence's own call step is due for the active leads
    assert CallTask.objects.filter(enrollment_id=ann.pk).count() == 1
    assert sandbox.request_count(KEY, route=CATEGORIES_ROUTE) == 1  # the names, read once


def test_category_ids_are_read_by_the_accounts_own_names(sandbox, pushed):
    campaign, enrollments = pushed
    sandbox.renumber_categories(KEY, 100)  # this workspace's "Do Not Contact" is 104
    sandbox.lead_categorised(KEY, campaign, "bob@acme.test", "Do Not Contact")
    (row,) = [r for r in sandbox.campaigns(KEY)[0]["leads"] if r["email"] == "bob@acme.test"]
    leads = sandbox.state.replies.leads
    assert leads[campaign, row["id"]] == 104

    run = reconcile(trigger="command")

    assert run.repaired == {"LEAD_CATEGORY_UPDATED": 1}, run.errors
    assert status(enrollments["bob@acme.test"]) == "unsubscribed"
    assert not CallTask.objects.exists()  # 104 is not read as a default id


def test_a_lost_out_of_office_category_pauses_until_the_date_in_the_reply(sandbox, pushed):
    campaign, enrollments = pushed
    back = (timezone.now() + timedelta(days=12)).date()
    sandbox.lead_out_of_office(
        KEY, campaign, "ann@acme.test", f"Out of the office, back on {back:%Y-%m-%d}."
    )  # neither the reply nor the category arrives

    run = reconcile(trigger="command")

    assert run.errors == []
    assert status(enrollments["ann@acme.test"]) == "paused"
    hold = EnrollmentHold.objects.get(enrollment_id=enrollments["ann@acme.test"].pk)
    assert timezone.localtime(hold.until).date() == back
    assert not Engagement.objects.filter(engagement_type="email_replied").exists()


def test_a_category_delivered_before_categories_acted_is_not_acted_on_afresh(sandbox, pushed):
    campaign, enrollments = pushed
    ann = enrollments["ann@acme.test"]
    sandbox.lead_categorised(KEY, campaign, "ann@acme.test", "Interested")
    Engagement.objects.create(  # as the webhook of an older version recorded it, and no more
        contact_id=ann.contact_id,
        enrollment=ann,
        engagement_type="lead_category_updated",
        metadata={"new_category": "Interested"},
    )

    assert reconcile(trigger="command").repaired == {}
    assert status(ann) == "active" and not CallTask.objects.exists()


# --- One campaign's bad data (issue 24, point 8) -------------------------------------------


def two_sdrs_each_with_a_reply(sandbox: SandboxServer) -> dict[str, Enrollment]:
    """Two SDRs' campaigns, a lost reply in each; the first SDR's history holds a bad time."""
    enrolled = {}
    for key, mailbox in ((KEY, "3501"), (OTHER_KEY, "3502")):
        sdr = make_profile(smartlead_api_key=key, smartlead_email_account_id=mailbox)
        sequence = make_sequence(creator=sdr, steps=[{"step_type": "email", "subject": "Hi"}] * 2)
        enrolled[key] = make_enrollment(sequence=sequence, contact=make_contact(email=LEADS[0]))
    assert execute(trigger="command").pushed == 2
    for key, enrollment in enrolled.items():
        campaign_id = Enrollment.objects.get(pk=enrollment.pk).sequence.campaign
        sandbox.lead_replied(key, campaign_id, LEADS[0], "Yes")
    campaign = next(iter(sandbox.state.accounts[KEY].campaigns.values()))
    for row in next(iter(campaign.history.values())):
        row["time"] = "2025-02-30T10:00:00.000Z"  # no such day
    return enrolled


def test_it_repairs_a_lead_whose_history_holds_a_time_that_does_not_parse(sandbox):
    enrolled = two_sdrs_each_with_a_reply(sandbox)

    run = reconcile(trigger="command")

    assert run.errors == [] and run.repaired == {"EMAIL_REPLY": 2}
    assert status(enrolled[KEY]) == status(enrolled[OTHER_KEY]) == "replied"
    later = reconcile(trigger="command", since=timezone.now() - timedelta(days=1))
    assert later.errors == []


def test_it_reads_every_other_campaign_when_one_campaigns_data_breaks_its_read(
    sandbox, monkeypatch
):
    enrolled = two_sdrs_each_with_a_reply(sandbox)
    broken = Enrollment.objects.get(pk=enrolled[KEY].pk).sequence.campaign
    real_repair = reconciling.repair

    def unreadable_for_one(run, client, record, since):  # noqa: ANN001, ANN202
        if record.campaign_id == broken:
            raise ValueError("day is out of range for month")
        return real_repair(run, client, record, since)

    monkeypatch.setattr(reconciling, "repair", unreadable_for_one)

    run = reconcile(trigger="command")

    assert run.repaired == {"EMAIL_REPLY": 1} and run.campaigns == 2
    assert run.errors == [f"Campaign {broken}: ValueError: day is out of range for month"]
    assert status(enrolled[OTHER_KEY]) == "replied"
    # It counts as read (with its error), so it cannot stand first in line every pass.
    assert CampaignProvisioning.objects.get(campaign_id=broken).reconciled_at is not None


def test_it_keeps_a_found_replys_body_bounded(sandbox, pushed):
    """Issue 24, point 10: the reply's whole text comes from its message history."""
    campaign, enrollments = pushed
    sandbox.lead_replied(KEY, campaign, "ann@acme.test", "Yes. " + "quoted thread " * 50_000)

    assert reconcile(trigger="command").repaired == {"EMAIL_REPLY": 1}

    event = WebhookEvent.objects.get(event_type="EMAIL_REPLY")
    assert len(event.raw_body) <= 64 * 1024
    assert json.loads(event.raw_body)["reply_message"]["text"].startswith("<p>Yes. quoted")
    assert status(enrollments["ann@acme.test"]) == "replied"
