"""The ops dashboard: staff only, every figure links to its records, empty states say what to do,
and a page costs a fixed number of queries whatever the row count."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

import outboundhq.urls  # noqa: F401 - discovers the admin pages, as serving a request would
from profiles.models import Profile
from sequences.models import CampaignProvisioning, Enrollment, ExecutorRun, RunTrigger, SyncChange
from smartlead.models import WebhookEvent
from tests.factories import make_contact, make_profile, make_sequence

pytestmark = pytest.mark.django_db

URL = "/admin/dashboard/"


def webhook(n: int, **fields: object) -> WebhookEvent:
    return WebhookEvent.objects.create(
        dedupe_key=f"k{n}", event_type="EMAIL_REPLY", raw_body="{}", **fields
    )


def populate(rows: int) -> None:
    """`rows` of each kind the dashboard reads: profiles, enrollments, runs, webhook events."""
    now = timezone.now()
    Profile.objects.bulk_create(
        [Profile(email=f"bulk{i}@example.test", smartlead_api_key=f"k{i}") for i in range(rows)]
    )
    sequence = make_sequence(creator=make_profile())
    contact = make_contact()
    Enrollment.objects.bulk_create(
        [
            Enrollment(sequence=sequence, contact=contact, next_send_at=now - timedelta(hours=1))
            for _ in range(rows)
        ]
    )
    ExecutorRun.objects.bulk_create(
        [ExecutorRun(trigger=RunTrigger.SCHEDULE, pushed=i, failed=1) for i in range(rows)]
    )
    WebhookEvent.objects.bulk_create(
        [
            WebhookEvent(
                dedupe_key=f"b{i}",
                event_type=("EMAIL_REPLY", "EMAIL_OPEN")[i % 2],
                outcome=("applied", "unmatched", "failed")[i % 3],
                raw_body="{}",
            )
            for i in range(rows)
        ]
    )


def test_it_is_linked_from_the_admin_index(admin_client):
    index = admin_client.get(reverse("admin:index")).content.decode()
    assert f'href="{URL}"' in index


def test_it_sends_anonymous_visitors_to_the_login_page(client):
    response = client.get(URL)
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_it_refuses_users_who_are_not_staff(client, django_user_model):
    user = django_user_model.objects.create_user("sdr", password="pw")
    client.force_login(user)
    assert client.get(URL).status_code == 302


def test_it_says_what_to_do_when_there_is_nothing_yet(admin_client):
    page = admin_client.get(URL).content.decode()
    assert "No executor run in the last 7 days" in page
    assert "No webhook event in the last 7 days" in page
    assert "No SDR has a profile yet" in page
    assert "Nothing is waiting" in page


def test_it_says_when_no_sdr_can_send(admin_client):
    make_profile(connected=False)
    assert "No SDR can send now" in admin_client.get(URL).content.decode()


def test_it_does_not_say_nobody_can_send_when_a_key_is_unchecked_but_sends(admin_client):
    make_profile()  # a key and a mailbox Smartlead has not judged yet: it sends
    ExecutorRun.objects.create(trigger=RunTrigger.SCHEDULE, pushed=14)
    assert "No SDR can send now" not in admin_client.get(URL).content.decode()


def test_it_links_each_credential_status_to_the_filtered_profile_list(admin_client):
    make_profile(connected=False)
    page = admin_client.get(URL).content.decode()
    assert reverse("admin:profiles_profile_changelist") + "?smartlead=no_api_key" in page
    listing = admin_client.get(
        reverse("admin:profiles_profile_changelist") + "?smartlead=no_api_key"
    )
    assert listing.status_code == 200


def test_it_links_each_run_and_shows_skips_by_reason(admin_client):
    run = ExecutorRun.objects.create(
        trigger=RunTrigger.SCHEDULE, pushed=7, skipped_no_credentials=3
    )
    page = admin_client.get(URL).content.decode()
    assert reverse("admin:sequences_executorrun_change", args=[run.pk]) in page
    assert "3 no credentials" in page


def test_it_shows_none_recorded_for_a_run_without_skips(admin_client):
    ExecutorRun.objects.create(trigger=RunTrigger.SCHEDULE, pushed=7)
    assert "none recorded" in admin_client.get(URL).content.decode()


def test_it_counts_unmatched_and_failed_webhooks_and_links_them(admin_client):
    webhook(1, outcome="unmatched")
    webhook(2, outcome="failed")
    webhook(3, outcome="applied")
    response = admin_client.get(URL)
    rows = response.context["webhooks"]
    assert [(r["event_type"], r["n"], r["unmatched"], r["failed"]) for r in rows] == [
        ("EMAIL_REPLY", 3, 1, 1)
    ]
    assert "event_type=EMAIL_REPLY&amp;outcome=unmatched" in response.content.decode()


def test_it_leaves_out_webhooks_older_than_a_week(admin_client):
    webhook(1, received_at=timezone.now() - timedelta(days=8))
    assert admin_client.get(URL).context["webhooks"] == []


def test_it_counts_waiting_enrollments_and_the_oldest_wait(admin_client):
    sequence = make_sequence(creator=make_profile())
    now = timezone.now()
    for hours in (1, 5):
        Enrollment.objects.create(
            sequence=sequence, contact=make_contact(), next_send_at=now - timedelta(hours=hours)
        )
    Enrollment.objects.create(
        sequence=sequence, contact=make_contact(), next_send_at=now + timedelta(hours=1)
    )
    waiting = admin_client.get(URL).context["waiting"]
    assert waiting["n"] == 2
    assert timedelta(hours=5) <= waiting["wait"] < timedelta(hours=5, minutes=1)


def test_it_never_shows_a_full_api_key(admin_client):
    key = "sl-live-key-THIS-MUST-NEVER-RENDER-9z8y"
    make_profile(smartlead_api_key=key)
    assert key not in admin_client.get(URL).content.decode()


@pytest.mark.parametrize("rows", [10, 1000])
def test_it_costs_a_fixed_number_of_queries_whatever_the_row_count(
    admin_client, django_assert_max_num_queries, rows
):
    populate(rows)
    # Session, user, one query per figure (runs, webhooks, rejected reasons, reconcile passes,
    # credentials, waiting, and the outbox's two: its changes, and campaigns needing attention),
    # and the verdicts' 12 (outboundhq/verdicts.py).
    with django_assert_max_num_queries(22):
        response = admin_client.get(URL)
    assert response.status_code == 200


def test_it_keeps_its_figures_for_a_minute_and_refreshes_on_request(admin_client):
    admin_client.get(URL)
    ExecutorRun.objects.create(trigger=RunTrigger.SCHEDULE, pushed=7)
    assert admin_client.get(URL).context["runs"] == []
    assert len(admin_client.get(URL + "?refresh=1").context["runs"]) == 1
    assert len(admin_client.get(URL).context["runs"]) == 1  # the refreshed figures are kept


def test_it_says_how_old_its_figures_are_and_links_a_refresh(admin_client):
    page = admin_client.get(URL).content.decode()
    assert "figures as of" in page and "kept up to 60 s" in page
    assert 'href="?refresh=1"' in page


def test_a_load_within_the_minute_costs_only_the_session_and_user(
    admin_client, django_assert_max_num_queries
):
    populate(10)
    admin_client.get(URL)
    with django_assert_max_num_queries(2):
        assert admin_client.get(URL).status_code == 200


def test_it_draws_pushed_skipped_and_failed_side_by_side_in_each_run_bar(admin_client):
    ExecutorRun.objects.create(
        trigger=RunTrigger.SCHEDULE, pushed=50, skipped_no_credentials=25, failed=25
    )
    page = admin_client.get(URL).content.decode()
    assert '<rect class="ohq-pushed" x="0.0%" y="0" width="50.0%"' in page
    assert '<rect class="ohq-skipped" x="50.0%" y="0" width="25.0%"' in page
    assert '<rect class="ohq-failed" x="75.0%" y="0" width="25.0%"' in page


def test_it_shows_the_outbox_backlog_and_links_each_part(admin_client):
    assert "every pause, resume, unsubscribe" in admin_client.get(URL).content.decode()
    sequence = make_sequence(creator=make_profile())
    base = {"sequence_id": sequence.pk, "profile_id": sequence.created_by_id, "campaign_id": 7}
    for state in ("pending", "pending", "failed", "done"):
        SyncChange.objects.create(action="pause_campaign", state=state, **base)
    CampaignProvisioning.objects.create(sequence=sequence, state="needs_attention", campaign_id=7)

    page = admin_client.get(URL + "?refresh=1").content.decode()

    assert "2 changes waiting for Smartlead" in page
    assert "1 failed for good" in page and "1 campaigns need attention" in page
    assert reverse("admin:sequences_syncchange_changelist") + "?state=pending" in page
    assert "?state=needs_attention" in page
