"""Replies as people really send them (issue 23), end to end on PostgreSQL: the sandbox records
what a lead does and hands back the webhook payloads Smartlead sends for it, in its shapes; they
are posted to the receiver, and the executor runs against the sandbox over real HTTP.

Out-of-office replies pause until the date they state and the next step follows once; Smartlead's
categories act (one call task for Interested, however often it arrives); a reply from another
address stops the lead it answers, and only that SDR's.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from sequences.executor import execute
from sequences.explain import explain
from sequences.models import (
    CallTask,
    Contact,
    Engagement,
    Enrollment,
    EnrollmentHold,
    Sequence,
)
from smartlead.models import WebhookEvent
from smartlead.sandbox import SandboxServer
from tests.factories import make_contact, make_enrollment, make_profile, make_sequence
from tests.test_webhooks import configure, post

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]
KEY = "sandbox-replies-key-0123456789"
OTHER_KEY = "sandbox-replies-other-sdr-key-98765"
EMAIL_THEN_CALL = [
    {"step_type": "email", "subject": "Hi"},
    {"step_type": "call", "delay_days": 2, "call_objective": "Book a meeting"},
]
RESUME = "POST /campaigns/{campaign_id}/leads/{lead_id}/resume"


@pytest.fixture
def sandbox(settings: Any, make_sandbox: Any) -> SandboxServer:
    configure(settings)
    return make_sandbox({KEY: [3601], OTHER_KEY: [3602]}, requests_per_minute=600, burst=100)


def sent_to(
    sandbox: SandboxServer, key: str, addresses: list[str], mailbox: int = 3601
) -> tuple[Sequence, dict[str, Enrollment]]:
    """A running campaign of one SDR whose first email each of these leads got."""
    sdr = make_profile(smartlead_api_key=key, smartlead_email_account_id=str(mailbox))
    sequence = make_sequence(creator=sdr, steps=EMAIL_THEN_CALL)
    enrollments = {
        a: make_enrollment(sequence=sequence, contact=make_contact(email=a)) for a in addresses
    }
    assert execute(trigger="command", user_id=sdr.pk).pushed == len(addresses)
    sequence.refresh_from_db()
    for address in addresses:
        sandbox.lead_sent(key, sequence.campaign, address, 1)
    return sequence, enrollments


def deliver(client: Any, payload: dict[str, Any]) -> WebhookEvent:
    response = post(client, payload)
    assert response.status_code == 200, response.content
    return WebhookEvent.objects.get(pk=response.json()["id"])


def fresh(enrollment: Enrollment) -> Enrollment:
    return Enrollment.objects.get(pk=enrollment.pk)


def lead_status(sandbox: SandboxServer, key: str, address: str) -> str:
    (campaign,) = sandbox.campaigns(key)
    return next(lead["status"] for lead in campaign["leads"] if lead["email"] == address)


def a_while_later(enrollment: Enrollment, days: int) -> None:
    """Time moves on: the absence and the next step fall due (the clock is not faked)."""
    then = timezone.now() - timedelta(minutes=5)
    EnrollmentHold.objects.filter(enrollment_id=enrollment.pk).update(until=then)
    Enrollment.objects.filter(pk=enrollment.pk).update(
        next_send_at=timezone.now() - timedelta(days=days)
    )


# --- Out of office ---------------------------------------------------------------------------


@pytest.mark.parametrize("order", ["reply first", "category first"])
def test_an_out_of_office_reply_pauses_until_its_date_then_the_next_step_follows_once(
    sandbox, client, order
):
    sequence, enrollments = sent_to(sandbox, KEY, ["ann@acme.test"])
    ann = enrollments["ann@acme.test"]
    back = (timezone.now() + timedelta(days=10)).date()
    text = f"I am out of the office until {back:%B} {back.day} with no access to email."
    reply, category = sandbox.lead_out_of_office(KEY, sequence.campaign, "ann@acme.test", text)
    assert category is not None  # our settings asked Smartlead to categorise auto-replies
    assert lead_status(sandbox, KEY, "ann@acme.test") == "INPROGRESS"  # ignored as a reply

    # Whether Smartlead sends the reply for an ignored auto-reply is not documented: either
    # order, or both, ends the same.
    for payload in (reply, category) if order == "reply first" else (category, reply):
        deliver(client, payload)

    hold = EnrollmentHold.objects.get(enrollment_id=ann.pk)
    assert fresh(ann).status == "paused" and hold.kind == "out_of_office"
    assert timezone.localtime(hold.until).date() == back + timedelta(days=1)  # the day after
    assert not CallTask.objects.exists()
    assert Contact.objects.get(pk=ann.contact_id).engagement_score == 0  # not a reply
    kinds = set(Engagement.objects.filter(enrollment=ann).values_list("engagement_type", flat=True))
    assert kinds == {"lead_category_updated"}  # the app shows no "reply" that isn't one
    assert "out of office until" in explain(fresh(ann))

    execute(trigger="command")  # the outbox pauses the lead at Smartlead; the step waits
    assert lead_status(sandbox, KEY, "ann@acme.test") == "PAUSED"
    assert fresh(ann).current_step == 2 and not CallTask.objects.exists()

    a_while_later(ann, days=10)
    sandbox.reset_counts()
    execute(trigger="command")

    assert lead_status(sandbox, KEY, "ann@acme.test") == "INPROGRESS"  # resumed at Smartlead
    (call,) = CallTask.objects.filter(enrollment_id=ann.pk)  # its next step, after the absence
    assert call.scheduled_at >= EnrollmentHold.objects.get(enrollment_id=ann.pk).until
    assert fresh(ann).status == "completed"  # the call was the last step
    assert EnrollmentHold.objects.get(enrollment_id=ann.pk).released_at is not None

    execute(trigger="command")
    assert CallTask.objects.count() == 1  # once
    assert sandbox.request_count(KEY, route=RESUME) == 1


def test_an_auto_reply_without_a_date_pauses_for_the_default_delay(sandbox, client, settings):
    settings.SMARTLEAD_OUT_OF_OFFICE_DAYS = 4
    sequence, enrollments = sent_to(sandbox, KEY, ["ann@acme.test"])
    reply, _ = sandbox.lead_out_of_office(
        KEY, sequence.campaign, "ann@acme.test", "I am currently out of the office."
    )

    event = deliver(client, reply)

    hold = EnrollmentHold.objects.get(enrollment_id=enrollments["ann@acme.test"].pk)
    assert hold.until == event.event_time + timedelta(days=4)


def test_a_reply_smartlead_later_categorises_out_of_office_was_no_reply(sandbox, client):
    sequence, enrollments = sent_to(sandbox, KEY, ["ann@acme.test"])
    ann = enrollments["ann@acme.test"]
    # Nothing in it reads as an auto-reply, so it is applied as a reply at first.
    reply, category = sandbox.lead_out_of_office(
        KEY, sequence.campaign, "ann@acme.test", "Thank you for your message.", "Re: Hello"
    )
    deliver(client, reply)
    assert fresh(ann).status == "replied"
    assert Contact.objects.get(pk=ann.contact_id).engagement_score == 50

    deliver(client, category)

    assert fresh(ann).status == "paused"
    assert EnrollmentHold.objects.get(enrollment_id=ann.pk).kind == "out_of_office"
    assert Contact.objects.get(pk=ann.contact_id).engagement_score == 0
    assert not Engagement.objects.filter(enrollment=ann, engagement_type="email_replied").exists()


def test_an_out_of_office_category_never_undoes_a_real_reply(sandbox, client):
    sequence, enrollments = sent_to(sandbox, KEY, ["ann@acme.test"])
    ann = enrollments["ann@acme.test"]
    deliver(
        client,
        sandbox.lead_replied_from(KEY, sequence.campaign, "ann@acme.test", "ann@acme.test", "Yes"),
    )
    # The SDR answered by hand, and that answer met Ann's auto-reply, which Smartlead categorised.
    _, category = sandbox.lead_out_of_office(
        KEY, sequence.campaign, "ann@acme.test", "I am out of the office."
    )

    deliver(client, category)

    assert fresh(ann).status == "replied"
    assert not EnrollmentHold.objects.filter(enrollment_id=ann.pk, released_at=None).exists()
    assert Contact.objects.get(pk=ann.contact_id).engagement_score == 50


def test_with_out_of_office_handling_off_an_auto_reply_ends_as_a_reply(sandbox, client, settings):
    settings.SMARTLEAD_OUT_OF_OFFICE_PAUSE = False
    sequence, enrollments = sent_to(sandbox, KEY, ["ann@acme.test"])
    (campaign,) = sandbox.campaigns(KEY)
    assert campaign["settings"]["out_of_office_detection_settings"]["ignoreOOOasReply"] is False
    reply, _ = sandbox.lead_out_of_office(
        KEY, sequence.campaign, "ann@acme.test", "I am out of the office until next week."
    )

    deliver(client, reply)

    assert fresh(enrollments["ann@acme.test"]).status == "replied"
    assert lead_status(sandbox, KEY, "ann@acme.test") == "STOPPED"


# --- Categories ------------------------------------------------------------------------------


def test_an_interested_category_creates_one_call_task_even_when_delivered_twice(sandbox, client):
    sequence, enrollments = sent_to(sandbox, KEY, ["ann@acme.test"])
    ann = enrollments["ann@acme.test"]
    payload = sandbox.lead_categorised(KEY, sequence.campaign, "ann@acme.test", "Interested")

    first, again = deliver(client, payload), deliver(client, payload)  # Smartlead retried
    later = (timezone.now() + timedelta(minutes=3)).isoformat()
    deliver(client, payload | {"event_timestamp": later})  # the same, stamped anew
    deliver(
        client, sandbox.lead_categorised(KEY, sequence.campaign, "ann@acme.test", "Meeting Request")
    )

    assert again.pk == first.pk and WebhookEvent.objects.get(pk=first.pk).deliveries == 2
    (call,) = CallTask.objects.filter(enrollment_id=ann.pk)
    assert call.contact_id == ann.contact_id and call.sequence_id == sequence.pk
    assert "Interested" in call.call_objective
    assert Engagement.objects.filter(enrollment=ann, engagement_type="call_scheduled").count() == 1
    assert fresh(ann).status == "replied"  # no more emails, and no call step of the sequence

    Enrollment.objects.filter(pk=ann.pk).update(next_send_at=timezone.now() - timedelta(days=3))
    execute(trigger="command")
    assert CallTask.objects.count() == 1


def test_not_interested_ends_the_enrollment_without_a_call(sandbox, client):
    sequence, enrollments = sent_to(sandbox, KEY, ["ann@acme.test"])

    deliver(
        client, sandbox.lead_categorised(KEY, sequence.campaign, "ann@acme.test", "Not Interested")
    )

    assert fresh(enrollments["ann@acme.test"]).status == "replied"
    assert not CallTask.objects.exists()


def test_do_not_contact_opts_the_address_out_as_an_unsubscribe_does(sandbox, client):
    sequence, enrollments = sent_to(sandbox, KEY, ["ann@acme.test", "bob@acme.test"])
    ann = enrollments["ann@acme.test"]

    deliver(
        client, sandbox.lead_categorised(KEY, sequence.campaign, "ann@acme.test", "Do Not Contact")
    )

    assert fresh(ann).status == "unsubscribed"
    assert Contact.objects.get(pk=ann.contact_id).unsubscribed_at is not None
    execute(trigger="command")  # the opt-out reaches the campaign through the outbox
    assert lead_status(sandbox, KEY, "ann@acme.test") == "STOPPED"
    assert fresh(enrollments["bob@acme.test"]).status == "active"


# --- Replies from another address ------------------------------------------------------------


def test_a_reply_from_an_assistant_ends_the_bosses_enrollment_and_no_other_sdrs(sandbox, client):
    ours, mine = sent_to(sandbox, KEY, ["ceo@acme.test", "cfo@acme.test"])
    _, theirs = sent_to(sandbox, OTHER_KEY, ["ceo@acme.test", "assistant@acme.test"], 3602)

    payload = sandbox.lead_replied_from(
        KEY, ours.campaign, "ceo@acme.test", "assistant@acme.test", "I handle her calendar."
    )
    assert payload["sl_lead_email"] == "ceo@acme.test"
    assert payload["to_email"] == payload["leadCorrespondence"]["replyReceivedFrom"]
    deliver(client, payload)

    assert fresh(mine["ceo@acme.test"]).status == "replied"
    reply = Engagement.objects.get(enrollment=mine["ceo@acme.test"])
    assert reply.metadata["replied_from"] == "assistant@acme.test"
    assert reply.metadata["replied_company"] == "SameCompany"
    # The other SDR's enrollments, the same boss's included, are theirs: untouched.
    assert {fresh(e).status for e in theirs.values()} == {"active"}
    assert fresh(mine["cfo@acme.test"]).status == "active"  # the same-company pause is off


def test_with_the_same_company_pause_a_reply_pauses_that_sdrs_colleagues_only(
    sandbox, client, settings
):
    settings.SMARTLEAD_PAUSE_SAME_COMPANY_ON_REPLY = True
    ours, mine = sent_to(sandbox, KEY, ["ceo@acme.test", "cfo@acme.test", "amy@other.test"])
    _, theirs = sent_to(sandbox, OTHER_KEY, ["cto@acme.test"], 3602)
    (campaign,) = sandbox.campaigns(KEY)
    assert campaign["settings"]["auto_pause_domain_leads_on_reply"] is True

    deliver(
        client,
        sandbox.lead_replied_from(
            KEY, ours.campaign, "ceo@acme.test", "assistant@acme.test", "Forwarding this."
        ),
    )

    assert fresh(mine["ceo@acme.test"]).status == "replied"
    cfo = fresh(mine["cfo@acme.test"])
    assert cfo.status == "paused"
    assert EnrollmentHold.objects.get(enrollment_id=cfo.pk).kind == "same_company"
    assert "same company" in explain(cfo)
    assert lead_status(sandbox, KEY, "cfo@acme.test") == "PAUSED"  # Smartlead did the same
    assert fresh(mine["amy@other.test"]).status == "active"
    assert fresh(theirs["cto@acme.test"]).status == "active"  # another SDR's: not theirs to stop
