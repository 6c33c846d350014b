"""One opt-out policy (issue 24, point 3): a prospect's unsubscribe, wherever it happens, reaches
every SDR's contact with the address (OPT_OUT_SCOPE=organisation) or only the SDR's (sdr); their
enrollments end `unsubscribed`; Smartlead unsubscribes the lead where it happened and pauses it
elsewhere; ops see where each came from and can lift a mistaken one. Against the sandbox over
real HTTP, through the webhook receiver and the executor."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from sequences import optouts
from sequences.executor import execute
from sequences.models import (
    CallTask,
    Contact,
    Enrollment,
    OptOut,
    OptOutOrigin,
    Sequence,
    SequenceStep,
    SyncChange,
)
from sequences.steps import UNSUBSCRIBED, Steps, decide
from smartlead.sandbox import SandboxServer
from tests.factories import make_contact, make_enrollment, make_profile, make_sequence
from tests.test_webhooks import configure, fixture, post

pytestmark = pytest.mark.django_db
ANA, BEN, CLEO = (f"sandbox-optout-{n}-key-0123456789" for n in ("ana", "ben", "cleo"))
PROSPECT = "pat@prospect.test"
TWO_EMAILS = [{"step_type": "email", "subject": "Hi"}, {"step_type": "email", "delay_days": 2}]


@pytest.fixture
def sandbox(make_sandbox: Any, settings: Any) -> SandboxServer:
    configure(settings)
    return make_sandbox({ANA: [3601], BEN: [3602], CLEO: [3603]}, requests_per_minute=600)


def sdr_with(key: str, mailbox: int, email: str = PROSPECT) -> Enrollment:
    """An SDR, their own contact row for `email`, enrolled in their own sequence."""
    sdr = make_profile(smartlead_api_key=key, smartlead_email_account_id=str(mailbox))
    sequence = make_sequence(creator=sdr, steps=TWO_EMAILS)
    return make_enrollment(sequence=sequence, contact=make_contact(email=email, created_by=sdr))


@pytest.fixture
def two_sdrs(sandbox: SandboxServer) -> tuple[Enrollment, Enrollment]:
    """Ana and Ben each sent the same prospect their first email, from their own account."""
    ana, ben = sdr_with(ANA, 3601), sdr_with(BEN, 3602)
    assert execute(trigger="command").pushed == 2
    return ana, ben


def campaign_of(enrollment: Enrollment) -> int:
    return Sequence.objects.get(pk=enrollment.sequence_id).campaign


def lead_at_smartlead(sandbox: SandboxServer, key: str, enrollment: Enrollment) -> str:
    (campaign,) = [c for c in sandbox.campaigns(key) if c["id"] == campaign_of(enrollment)]
    (lead,) = campaign["leads"]
    return lead["status"]


def state(enrollment: Enrollment) -> tuple[str, bool]:
    """The enrollment's status, and whether its contact is unsubscribed."""
    row = Enrollment.objects.select_related("contact").get(pk=enrollment.pk)
    return row.status, row.contact.unsubscribed_at is not None


def unsubscribed_at_smartlead(sandbox: SandboxServer, key: str, enrollment: Enrollment) -> None:
    """The prospect clicks Smartlead's unsubscribe link, and its webhook reaches us."""
    sandbox.lead_unsubscribed(key, campaign_of(enrollment), PROSPECT)
    body = fixture("lead_unsubscribed", campaign_id=campaign_of(enrollment), lead_email=PROSPECT)
    assert post(Client(), body).status_code == 200


def test_it_applies_a_smartlead_unsubscribe_to_every_sdrs_contact_and_pauses_theirs(
    sandbox, two_sdrs
):
    ana, ben = two_sdrs

    unsubscribed_at_smartlead(sandbox, ANA, ana)

    assert state(ana) == state(ben) == ("unsubscribed", True)  # Ben's says so too, at once
    opt_out = OptOut.objects.get()
    assert (opt_out.origin, opt_out.campaign_id) == (OptOutOrigin.UNSUBSCRIBED, campaign_of(ana))
    assert opt_out.profile_id == Sequence.objects.get(pk=ana.sequence_id).created_by_id
    run = execute(trigger="command")
    assert lead_at_smartlead(sandbox, BEN, ben) == "PAUSED"  # stopped in a way ops can undo
    assert lead_at_smartlead(sandbox, ANA, ana) == "STOPPED"  # Smartlead's own unsubscribe
    assert [c.action for c in SyncChange.objects.all()] == ["pause_lead"]  # only Ben's
    assert run.propagated == 1 and run.pushed == 0


def test_it_keeps_an_opt_out_to_the_sdr_it_happened_with_when_the_scope_is_sdr(
    sandbox, two_sdrs, settings
):
    settings.OPT_OUT_SCOPE = "sdr"
    ana, ben = two_sdrs

    unsubscribed_at_smartlead(sandbox, ANA, ana)
    execute(trigger="command")

    assert state(ana) == ("unsubscribed", True)
    assert state(ben) == ("active", False)
    assert lead_at_smartlead(sandbox, BEN, ben) == "STARTED"  # untouched
    assert not SyncChange.objects.exists()


def test_it_applies_an_unsubscribe_set_in_the_app_to_every_sdr_in_the_next_run(sandbox, two_sdrs):
    ana, ben = two_sdrs
    Contact.objects.filter(pk=ana.contact_id).update(unsubscribed_at=timezone.now())  # the app

    execute(trigger="command")

    assert state(ana) == state(ben) == ("unsubscribed", True)
    assert lead_at_smartlead(sandbox, ANA, ana) == "STOPPED"  # unsubscribed where it happened
    assert lead_at_smartlead(sandbox, BEN, ben) == "PAUSED"  # paused elsewhere
    opt_out = OptOut.objects.get()
    assert (opt_out.origin, opt_out.contact_id) == (OptOutOrigin.APP, ana.contact_id)
    execute(trigger="command")
    assert OptOut.objects.count() == 1  # recorded once


def test_it_unsubscribes_a_do_not_contact_lead_where_it_happened_and_pauses_it_elsewhere(
    sandbox, two_sdrs
):
    """The path the Do Not Contact category takes (smartlead/applying.py: Changes.opt_out)."""
    ana, ben = two_sdrs
    origin = optouts.Origin(
        OptOutOrigin.DO_NOT_CONTACT,
        PROSPECT,
        timezone.now(),
        ana.contact_id,
        ana.sequence_id,
        campaign_of(ana),
    )
    optouts.apply(origin, timezone.now())

    execute(trigger="command")

    assert state(ana) == state(ben) == ("unsubscribed", True)
    assert lead_at_smartlead(sandbox, ANA, ana) == "STOPPED"
    assert lead_at_smartlead(sandbox, BEN, ben) == "PAUSED"


def test_it_ends_a_contact_enrolled_after_the_address_opted_out(sandbox, two_sdrs):
    ana, _ = two_sdrs
    unsubscribed_at_smartlead(sandbox, ANA, ana)
    cleo = sdr_with(CLEO, 3603, email="Pat@Prospect.test")  # a new contact row, weeks later

    run = execute(trigger="command")

    assert state(cleo) == ("unsubscribed", True)
    assert run.pushed == 0 and sandbox.campaigns(CLEO) == []


def test_it_neither_takes_a_step_nor_makes_a_call_task_for_an_unsubscribed_contact():
    """`decide` looked at call steps and pushed leads before the contact's unsubscribe."""
    sequence = make_sequence(
        creator=None,
        steps=[{"step_type": "email", "subject": "Hi"}, {"step_type": "call"}],
    )
    steps = Steps(SequenceStep.objects.filter(sequence=sequence))
    now = timezone.now()
    for current_step, pushed in ((2, True), (1, True), (2, False)):
        item = claimed(current_step, unsubscribed_at=now - timedelta(hours=1))
        item.pushed = pushed
        assert decide(steps, item) is UNSUBSCRIBED


def claimed(current_step: int, unsubscribed_at: Any) -> Any:
    from sequences.claimed import Claimed

    return Claimed(
        uuid.uuid4(), uuid.uuid4(), current_step, PROSPECT, "Pat", "", "", "", "", unsubscribed_at
    )


def test_it_makes_no_call_task_for_a_due_call_step_of_an_opted_out_contact(sandbox):
    enrollment = sdr_with(ANA, 3601)
    Sequence.objects.filter(pk=enrollment.sequence_id).update(status="active")
    SequenceStep.objects.filter(sequence_id=enrollment.sequence_id, step_number=2).update(
        step_type="call", delay_days=0
    )
    assert execute(trigger="command").pushed == 1
    Contact.objects.filter(pk=enrollment.contact_id).update(unsubscribed_at=timezone.now())
    Enrollment.objects.filter(pk=enrollment.pk).update(next_send_at=timezone.now())

    execute(trigger="command")

    assert not CallTask.objects.exists()
    assert state(enrollment) == ("unsubscribed", True)


# --- Where it came from, and lifting a mistaken one ----------------------------------------
def test_it_shows_where_an_opt_out_came_from_on_the_contact_the_enrollment_and_the_list(
    sandbox, two_sdrs, admin_client
):
    ana, ben = two_sdrs
    unsubscribed_at_smartlead(sandbox, ANA, ana)
    words = f"Unsubscribed in a Smartlead campaign in campaign {campaign_of(ana)}"

    pages = [
        reverse("admin:sequences_contact_change", args=[ben.contact_id]),
        reverse("admin:sequences_enrollment_change", args=[ben.pk]),
        reverse("admin:sequences_optout_change", args=[OptOut.objects.get().pk]),
    ]
    for page in pages:
        assert words in admin_client.get(page).content.decode(), page
    listing = admin_client.get(reverse("admin:sequences_optout_changelist")).content.decode()
    assert PROSPECT in listing and "Unsubscribed in a Smartlead campaign" in listing


def test_it_lifts_a_mistaken_opt_out_and_resumes_the_leads_it_paused(
    sandbox, two_sdrs, admin_client
):
    ana, ben = two_sdrs
    unsubscribed_at_smartlead(sandbox, ANA, ana)
    execute(trigger="command")
    assert lead_at_smartlead(sandbox, BEN, ben) == "PAUSED"

    response = admin_client.post(
        reverse("admin:sequences_optout_changelist"),
        {"action": "lift", "_selected_action": [OptOut.objects.get().pk]},
        follow=True,
    )

    assert "1 enrollment(s) restored" in response.content.decode()
    assert state(ben) == ("active", False)
    assert state(ana) == ("unsubscribed", False)  # Smartlead's unsubscribe has no undo
    execute(trigger="command")
    assert lead_at_smartlead(sandbox, BEN, ben) == "INPROGRESS"
    assert lead_at_smartlead(sandbox, ANA, ana) == "STOPPED"
    assert OptOut.objects.get().lifted_by == "admin"
    assert OptOut.objects.count() == 1  # lifting is not mistaken for a new opt-out


def test_it_lets_only_staff_who_may_change_opt_outs_lift_one(client, sandbox, two_sdrs):
    from django.contrib.auth.models import Permission, User

    ana, ben = two_sdrs
    unsubscribed_at_smartlead(sandbox, ANA, ana)
    viewer = User.objects.create_user("viewer", password="x" * 20, is_staff=True)
    viewer.user_permissions.set(Permission.objects.filter(codename="view_optout"))
    client.force_login(viewer)
    listing = reverse("admin:sequences_optout_changelist")

    client.post(listing, {"action": "lift", "_selected_action": [OptOut.objects.get().pk]})

    assert OptOut.objects.get().lifted_at is None and state(ben) == ("unsubscribed", True)
