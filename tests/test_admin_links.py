"""Linked records in the admin: SDR → sequences → enrollments → pushes → webhook events, and
back. Each link goes to the list filtered to the record's own, and a list page costs a fixed
number of queries whatever the row count."""

from __future__ import annotations

import html
import re
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from django.urls import reverse

import outboundhq.urls  # noqa: F401 - discovers the admin pages, as serving a request would
from profiles.models import Profile
from sequences.models import (
    Contact,
    Enrollment,
    ExecutorRun,
    Push,
    PushState,
    RunTrigger,
    Sequence,
)
from smartlead.models import WebhookEvent
from tests.factories import make_contact, make_enrollment, make_profile, make_sequence

pytestmark = pytest.mark.django_db

SDR, SEQUENCES, ENROLLMENTS = "profiles_profile", "sequences_sequence", "sequences_enrollment"
PUSHES, RUNS, EVENTS = "sequences_push", "sequences_executorrun", "smartlead_webhookevent"


def chain(n: int) -> dict[str, Any]:
    """One SDR's records from profile to webhook event, all linked by their ids."""
    sdr = make_profile()
    campaign = 7000 + n
    sequence = make_sequence(creator=sdr, smartlead_campaign_id=str(campaign))
    contact = make_contact(email=f"Lead.{n}@Prospect.test")  # the webhook log lowercases
    enrollment = make_enrollment(sequence=sequence, contact=contact)
    run = ExecutorRun.objects.create(trigger=RunTrigger.SCHEDULE, pushed=1)
    push = Push.objects.create(
        enrollment_id=enrollment.pk,
        campaign_id=campaign,
        sequence_id=sequence.pk,
        profile_id=sdr.pk,
        email=contact.email,
        state=PushState.PUSHED,
        run_id=run.pk,
    )
    event = WebhookEvent.objects.create(
        dedupe_key=f"chain-{n}",
        event_type="EMAIL_REPLY",
        raw_body="{}",
        campaign_id=campaign,
        lead_email=contact.email.lower(),
    )
    return {
        SDR: sdr,
        SEQUENCES: sequence,
        ENROLLMENTS: enrollment,
        RUNS: run,
        PUSHES: push,
        EVENTS: event,
    }


@pytest.fixture
def chains() -> tuple[dict[str, Any], dict[str, Any]]:
    """The records under test, and a second SDR's beside them that no link may include."""
    return chain(1), chain(2)


def change_page(admin_client: Any, model: str, obj: Any) -> str:
    response = admin_client.get(reverse(f"admin:{model}_change", args=[obj.pk]))
    assert response.status_code == 200
    return response.content.decode()


def hrefs(page: str, model: str, kind: str = "changelist") -> list[str]:
    """The links on a page to `model`'s list (or change pages), e.g. `/admin/…/push/?run_id=…`."""
    prefix = reverse(f"admin:{model}_changelist")
    found = [html.unescape(h) for h in re.findall(r'href="([^"]+)"', page)]
    if kind == "changelist":
        return [h for h in found if h.startswith(prefix + "?")]
    return [h for h in found if h.startswith(prefix) and re.match(r".+/[^/?]+/change/$", h)]


def listed(admin_client: Any, url: str) -> set[Any]:
    """The records a (filtered) list page shows; an unknown filter would redirect with ?e=1."""
    response = admin_client.get(url)
    assert response.status_code == 200, url
    return {obj.pk for obj in response.context["cl"].result_list}


# Each page, each list it links to: the list shows this chain's records and no other.
FORWARD_AND_BACK = [
    (SDR, SEQUENCES),
    (SDR, PUSHES),
    (SEQUENCES, ENROLLMENTS),
    (SEQUENCES, PUSHES),
    (SEQUENCES, EVENTS),
    (ENROLLMENTS, PUSHES),
    (ENROLLMENTS, EVENTS),
    (PUSHES, EVENTS),
    (RUNS, PUSHES),
    (EVENTS, PUSHES),
    (EVENTS, ENROLLMENTS),
    (EVENTS, SEQUENCES),
]


@pytest.mark.parametrize("source,target", FORWARD_AND_BACK)
def test_it_links_each_change_page_to_the_filtered_related_list(
    admin_client, chains, source, target
):
    mine, _other = chains
    links = hrefs(change_page(admin_client, source, mine[source]), target)
    assert len(links) == 1, links
    assert listed(admin_client, links[0]) == {mine[target].pk}


@pytest.mark.parametrize("source,target", FORWARD_AND_BACK)
def test_it_shows_the_same_links_on_each_row_of_the_list(admin_client, chains, source, target):
    mine, other = chains
    page = admin_client.get(reverse(f"admin:{source}_changelist")).content.decode()
    links = hrefs(page, target)
    assert len(links) == 2, links
    assert {frozenset(listed(admin_client, url)) for url in links} == {
        frozenset({mine[target].pk}),
        frozenset({other[target].pk}),
    }


# Pages that point at one record: the push at its enrollment, sequence, SDR and run; back up.
TO_ONE = [
    (PUSHES, ENROLLMENTS),
    (PUSHES, SEQUENCES),
    (PUSHES, SDR),
    (PUSHES, RUNS),
    (ENROLLMENTS, SEQUENCES),
    (SEQUENCES, SDR),
]


@pytest.mark.parametrize("source,target", TO_ONE)
def test_it_links_to_the_one_record_a_row_belongs_to(admin_client, chains, source, target):
    mine, _other = chains
    page = change_page(admin_client, source, mine[source])
    if source == SEQUENCES:  # the change form has the SDR as a raw id; the list links them
        page = admin_client.get(reverse(f"admin:{source}_changelist")).content.decode()
    expected = reverse(f"admin:{target}_change", args=[mine[target].pk])
    assert expected in hrefs(page, target, kind="change")
    assert admin_client.get(expected).status_code == 200


def test_it_shows_times_with_their_time_zone(admin_client, settings):
    settings.TIME_ZONE = "America/New_York"
    run = ExecutorRun.objects.create(
        trigger=RunTrigger.SCHEDULE, started_at=datetime(2026, 7, 1, 13, 30, tzinfo=UTC)
    )
    listing = admin_client.get(reverse("admin:sequences_executorrun_changelist")).content.decode()
    detail = change_page(admin_client, RUNS, run)
    for page in (listing, detail):
        assert "2026-07-01 09:30 EDT" in page


def test_it_shows_utc_times_as_utc(admin_client):
    make_profile()
    Push.objects.create(
        enrollment_id=uuid.uuid4(),
        campaign_id=1,
        sequence_id=uuid.uuid4(),
        profile_id=uuid.uuid4(),
        email="a@b.test",
        created_at=datetime(2026, 1, 2, 3, 4, tzinfo=UTC),
    )
    page = admin_client.get(reverse("admin:sequences_push_changelist")).content.decode()
    assert "2026-01-02 03:04 UTC" in page


# --- A list page costs the same whatever the row count ------------------------------------
def populate(rows: int) -> None:
    """`rows` of every record the linked lists show, made in bulk."""
    sdrs = Profile.objects.bulk_create(
        [Profile(email=f"bulk{i}@example.test", smartlead_api_key=f"k{i}") for i in range(rows)]
    )
    sequences = Sequence.objects.bulk_create(
        [
            Sequence(name=f"S{i}", status="active", created_by=sdr, smartlead_campaign_id=str(i))
            for i, sdr in enumerate(sdrs)
        ]
    )
    contacts = Contact.objects.bulk_create(
        [Contact(email=f"lead{i}@prospect.test") for i in range(rows)]
    )
    enrollments = Enrollment.objects.bulk_create(
        [Enrollment(sequence=s, contact=c) for s, c in zip(sequences, contacts, strict=True)]
    )
    runs = ExecutorRun.objects.bulk_create(
        [ExecutorRun(trigger=RunTrigger.SCHEDULE) for _ in range(rows)]
    )
    Push.objects.bulk_create(
        [
            Push(
                enrollment_id=e.pk,
                campaign_id=i,
                sequence_id=e.sequence_id,
                profile_id=e.sequence.created_by_id,
                email=f"lead{i}@prospect.test",
                run_id=runs[i].pk,
            )
            for i, e in enumerate(enrollments)
        ]
    )
    WebhookEvent.objects.bulk_create(
        [
            WebhookEvent(
                dedupe_key=f"b{i}",
                event_type="EMAIL_OPEN",
                raw_body="{}",
                campaign_id=i,
                lead_email=f"lead{i}@prospect.test",
            )
            for i in range(rows)
        ]
    )


LISTS = [SDR, SEQUENCES, ENROLLMENTS, PUSHES, RUNS, EVENTS]


@pytest.mark.parametrize("rows", [10, 1000])
@pytest.mark.parametrize("model", LISTS)
def test_each_linked_list_costs_a_fixed_number_of_queries(
    admin_client, django_assert_max_num_queries, rows, model
):
    populate(rows)
    # Session, user, counts, the page of rows and what a row shows (select_related or one
    # prefetch per relation), and a filter's choices: never one query per row.
    with django_assert_max_num_queries(10):
        response = admin_client.get(reverse(f"admin:{model}_changelist"))
    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == min(rows, 100)
