"""Per-SDR views: one page per SDR for a date range, linked from wherever the admin names an
SDR; SDR filters that look the SDR up as you type on enrollments, webhook events, pushes and
runs; date ranges; and a CSV of exactly what a list shows (never a key)."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone

import outboundhq.urls  # noqa: F401 - discovers the admin pages, as serving a request would
from outboundhq.listing import cell
from profiles.models import Profile
from sequences.models import (
    CampaignProvisioning,
    Enrollment,
    ExecutorRun,
    Push,
    RunTrigger,
)
from smartlead.models import WebhookEvent
from tests.factories import make_contact, make_enrollment, make_profile, make_sequence

pytestmark = pytest.mark.django_db
KEY = "sl-live-key-THIS-MUST-NEVER-RENDER-9z8y"
ENROLLMENTS = "admin:sequences_enrollment_changelist"
PUSHES = "admin:sequences_push_changelist"
RUNS = "admin:sequences_executorrun_changelist"
EVENTS = "admin:smartlead_webhookevent_changelist"


def world(n: int, *, days_ago: int = 0) -> dict[str, Any]:
    """One SDR's records: a campaign, three enrollments (one failed), pushes from a run,
    webhook events (sent, a reply, a bounce), all `days_ago`."""
    when = timezone.now() - timedelta(days=days_ago)
    sdr = make_profile(smartlead_api_key=KEY, last_name=f"Last{n}")
    campaign = 8000 + n
    sequence = make_sequence(creator=sdr, smartlead_campaign_id=str(campaign))
    CampaignProvisioning.objects.create(sequence=sequence, state="ready", campaign_id=campaign)
    run = ExecutorRun.objects.create(trigger=RunTrigger.SCHEDULE, started_at=when, pushed=2)
    enrollments = [make_enrollment(sequence=sequence) for _ in range(3)]
    Enrollment.objects.filter(pk=enrollments[2].pk).update(status="failed", updated_at=when)
    for state, enrollment in zip(("pushed", "rejected"), enrollments, strict=False):
        Push.objects.create(
            enrollment_id=enrollment.pk,
            campaign_id=campaign,
            sequence_id=sequence.pk,
            profile_id=sdr.pk,
            email=enrollment.contact.email,
            state=state,
            outcome="" if state == "pushed" else "blocked",
            run_id=run.pk,
            created_at=when,
            pushed_at=when if state == "pushed" else None,
        )
    for i, kind in enumerate(["EMAIL_SENT", "EMAIL_SENT", "EMAIL_REPLY", "EMAIL_BOUNCE"]):
        WebhookEvent.objects.create(
            dedupe_key=f"w{n}-{i}",
            event_type=kind,
            outcome="applied",
            raw_body="{}",
            campaign_id=campaign,
            lead_email=enrollments[0].contact.email,
            received_at=when,
        )
    return {"sdr": sdr, "sequence": sequence, "run": run, "enrollments": enrollments}


@pytest.fixture
def two() -> tuple[dict[str, Any], dict[str, Any]]:
    return world(1), world(2)


def sdr_page(admin_client: Any, sdr: Profile, **query: str) -> Any:
    response = admin_client.get(reverse("ops-sdr", args=[sdr.pk]), query)
    assert response.status_code == 200
    return response


def listed(admin_client: Any, name: str, **query: Any) -> set[Any]:
    response = admin_client.get(reverse(name), query)
    assert response.status_code == 200, response.get("Location")
    return {obj.pk for obj in response.context["cl"].result_list}


# --- The SDR's page -----------------------------------------------------------------------
def test_the_sdr_page_shows_their_figures_only(admin_client, two):
    mine, _ = two
    context = sdr_page(admin_client, mine["sdr"]).context
    assert (context["pushes"]["pushed"], context["pushes"]["rejected"]) == (1, 1)
    assert context["pushes"]["rejected_by"] == [("blocked", 1)]
    assert context["enrollments"]["failed"] == 1
    assert (context["events"]["replies"], context["events"]["bounces"]) == (1, 1)
    assert context["bounce_rate"] == "50.0% (1 of 2 emails sent)"
    assert [row["run"].pk for row in context["runs"]["rows"]] == [mine["run"].pk]
    assert context["verdict"].key == f"sdr:{mine['sdr'].pk}"


def test_the_sdr_page_takes_a_date_range(admin_client):
    old = world(3, days_ago=20)
    context = sdr_page(admin_client, old["sdr"]).context  # the last 7 days by default
    assert context["pushes"]["pushed"] == 0 and context["events"]["replies"] == 0
    day = (timezone.localdate() - timedelta(days=20)).isoformat()
    context = sdr_page(admin_client, old["sdr"], **{"from": day, "to": day}).context
    assert context["pushes"]["pushed"] == 1 and context["events"]["replies"] == 1


def test_a_bad_date_range_is_said_not_a_500(admin_client, two):
    response = sdr_page(admin_client, two[0]["sdr"], **{"from": "last tuesday"})
    assert "Date range ignored" in response.content.decode()


def test_each_figure_links_to_the_list_filtered_to_the_sdr_and_range(admin_client, two):
    mine, other = two
    context = sdr_page(admin_client, mine["sdr"]).context
    pushes = admin_client.get(context["pushes"]["href"])
    assert {p.profile_id for p in pushes.context["cl"].result_list} == {mine["sdr"].pk}
    events = admin_client.get(context["events"]["replies_href"]).context["cl"].result_list
    assert [e.event_type for e in events] == ["EMAIL_REPLY"]
    assert {e.campaign_id for e in events} == {8001}
    runs = admin_client.get(context["runs"]["href"]).context["cl"].result_list
    assert [r.pk for r in runs] == [mine["run"].pk]


def test_the_sdr_page_never_shows_a_key_and_is_staff_only(admin_client, client, two):
    page = sdr_page(admin_client, two[0]["sdr"]).content.decode()
    assert KEY not in page and "…9z8y" in page
    assert client.get(reverse("ops-sdr", args=[two[0]["sdr"].pk])).status_code == 302
    assert admin_client.get(reverse("ops-sdr", args=[uuid.uuid4()])).status_code == 404


@pytest.mark.parametrize("size", [1, 30])
def test_the_sdr_page_costs_a_fixed_number_of_queries(
    admin_client, django_assert_max_num_queries, size
):
    sdrs = [world(10 + i) for i in range(size)]
    with django_assert_max_num_queries(17):
        sdr_page(admin_client, sdrs[0]["sdr"])


# --- Linked from wherever an SDR is named -------------------------------------------------
@pytest.mark.parametrize(
    "page",
    [
        "admin:profiles_profile_changelist",
        "admin:sequences_sequence_changelist",
        "admin:sequences_push_changelist",
        "admin:sequences_campaignprovisioning_changelist",
        "ops-dashboard",
    ],
)
def test_pages_that_name_an_sdr_link_their_page(admin_client, two, page):
    mine, _ = two
    if page == "ops-dashboard":  # the dashboard names the SDRs that need a look
        Enrollment.objects.filter(sequence=mine["sequence"]).update(status="active")
        Profile.objects.filter(pk=mine["sdr"].pk).update(smartlead_api_key=None)
    content = admin_client.get(reverse(page)).content.decode()
    assert reverse("ops-sdr", args=[mine["sdr"].pk]) in content


def test_the_enrollment_page_names_its_sdr_and_says_why_not_sent_above_the_form(admin_client, two):
    enrollment = two[0]["enrollments"][0]
    page = admin_client.get(
        reverse("admin:sequences_enrollment_change", args=[enrollment.pk])
    ).content.decode()
    why = page.index('id="why-not-sent"')
    assert why < page.index('name="status"')  # read-only, above the editable form
    assert reverse("ops-sdr", args=[two[0]["sdr"].pk]) in page


# --- SDR filters (look-up as you type) and date ranges ------------------------------------
@pytest.mark.parametrize(
    "name,key",
    [(ENROLLMENTS, "enrollments"), (PUSHES, "pushes"), (RUNS, "run"), (EVENTS, "events")],
)
def test_each_list_filters_by_sdr(admin_client, two, name, key):
    mine, other = two
    shown = listed(admin_client, name, sdr=mine["sdr"].pk)
    assert shown and not shown & listed(admin_client, name, sdr=other["sdr"].pk)
    everything = listed(admin_client, name)
    assert shown < everything


def test_the_sdr_filter_is_a_look_up_not_a_list_of_every_sdr(admin_client, two):
    page = admin_client.get(reverse(PUSHES)).content.decode()
    assert 'class="admin-autocomplete' in page and "data-ajax--url" in page
    assert two[1]["sdr"].email not in page.split('id="changelist-filter"')[1]
    found = admin_client.get(
        reverse("admin:autocomplete"),
        {
            "term": "Last2",
            "app_label": "sequences",
            "model_name": "sequence",
            "field_name": "created_by",
        },
    ).json()
    assert [r["id"] for r in found["results"]] == [str(two[1]["sdr"].pk)]


def test_a_chosen_sdr_shows_in_the_filter_and_can_be_cleared(admin_client, two):
    sdr = two[0]["sdr"]
    page = admin_client.get(reverse(ENROLLMENTS), {"sdr": sdr.pk, "status": "active"}).content
    text = page.decode()
    assert f'<option value="{sdr.pk}" selected>{sdr.label}</option>' in text
    assert 'name="status" value="active"' in text  # the other filters are kept


def test_a_malformed_sdr_id_is_refused_like_any_bad_filter(admin_client):
    response = admin_client.get(reverse(PUSHES), {"sdr": "not-a-uuid"})
    assert response.status_code == 302 and "e=1" in response["Location"]


def test_the_lists_take_a_date_range(admin_client):
    new, old = world(4), world(5, days_ago=10)
    since = (timezone.localdate() - timedelta(days=2)).isoformat()
    assert listed(admin_client, RUNS, **{"from": since}) == {new["run"].pk}
    until = (timezone.localdate() - timedelta(days=5)).isoformat()
    pushes = listed(admin_client, PUSHES, **{"to": until})
    assert pushes == set(Push.objects.filter(profile_id=old["sdr"].pk).values_list("pk", flat=True))


def test_a_bad_date_is_said_and_ignored(admin_client, two):
    response = admin_client.get(reverse(RUNS), {"from": "2026-13-45"})
    assert response.status_code == 200
    assert "Date range ignored" in response.content.decode()


def test_webhook_search_finds_part_of_an_address(admin_client, two):
    email = two[0]["enrollments"][0].contact.email
    domain_part = email.split("@")[0][-3:]
    response = admin_client.get(reverse(EVENTS), {"q": domain_part})
    assert {e.lead_email for e in response.context["cl"].result_list} == {email.lower()}


# --- CSV ----------------------------------------------------------------------------------
def download(admin_client: Any, name: str, **query: Any) -> list[dict[str, str]]:
    response = admin_client.get(reverse(name.replace("changelist", "export")), query)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    text = b"".join(response.streaming_content).decode()
    assert KEY not in text and KEY[:-4] not in text
    return list(csv.DictReader(io.StringIO(text)))


@pytest.mark.parametrize("name", [ENROLLMENTS, PUSHES, RUNS, EVENTS])
def test_each_list_downloads_as_csv_with_its_filters(admin_client, two, name):
    mine, _ = two
    everything = download(admin_client, name)
    rows = download(admin_client, name, sdr=mine["sdr"].pk)
    assert rows and len(rows) < len(everything)
    assert {row["id"] for row in rows} == {
        str(pk) for pk in listed(admin_client, name, sdr=mine["sdr"].pk)
    }


def test_the_enrollment_csv_says_why_not_sent_and_whose(admin_client, two):
    rows = download(admin_client, ENROLLMENTS, sdr=two[0]["sdr"].pk, status="failed")
    assert [row["sdr"] for row in rows] == [two[0]["sdr"].email]
    assert rows[0]["why_not_sent"].startswith("Failed because")


def test_the_list_page_links_its_csv_with_the_same_filters(admin_client, two):
    page = admin_client.get(reverse(PUSHES), {"state": "pushed"}).content.decode()
    assert f'href="{reverse("admin:sequences_push_export")}?state=pushed"' in page


def test_csv_cells_that_a_spreadsheet_would_run_are_defused():
    assert cell("=HYPERLINK(1)") == "'=HYPERLINK(1)" and cell("@x") == "'@x"
    assert cell("plain") == "plain" and cell(-3) == -3 and cell(None) == ""


def test_a_typed_in_formula_never_reaches_the_csv_as_one(admin_client):
    sequence = make_sequence(creator=make_profile())
    make_enrollment(sequence=sequence, contact=make_contact(email="=cmd|' /C calc'!A0"))
    rows = download(admin_client, ENROLLMENTS)
    assert rows[0]["contact"].startswith("'=")


def test_lists_with_the_new_filters_still_cost_a_fixed_number_of_queries(
    admin_client, django_assert_max_num_queries, two
):
    for name in (ENROLLMENTS, PUSHES, RUNS, EVENTS):
        with django_assert_max_num_queries(12):
            admin_client.get(reverse(name), {"sdr": two[0]["sdr"].pk, "from": "2020-01-01"})
