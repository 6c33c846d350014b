"""An SDR's mailboxes and their health (issue 22): several per SDR through the connect API, the
health rule, and health deciding instead of reachability: a key check (the web app's GET, the
admin's mailbox page) never makes a broken mailbox healthy; only a health read does."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.urls import reverse

from profiles.credentials import SmartleadStatus
from profiles.health import read_mailbox_health
from profiles.mailboxes import GONE, health_problem
from profiles.models import Profile
from sequences.explain import explain
from smartlead.api import EmailAccount, SmartleadClient
from tests.factories import make_enrollment, make_profile, make_sequence
from tests.test_connect_api import (
    BASE,
    CONNECTION,
    EMAIL_ACCOUNT,
    SAVED_KEY,
    SECRET,
    Api,
    accounts_of,
    reload,
    status_of,
)
from tests.test_webhooks import configure, make_lead
from tests.test_webhooks_apply import replay

pytestmark = pytest.mark.django_db
OK = {"is_smtp_success": True, "is_imap_success": True}
ROWS = [
    {"id": 11, "from_email": "one@acme.test", "from_name": "One", **OK},
    {"id": 12, "from_email": "two@acme.test", "from_name": "Two", **OK},
    {"id": 13, "from_email": "three@acme.test", "from_name": "Three", **OK},
]


def account(**health: Any) -> EmailAccount:
    fields = {"smtp_ok": True, "imap_ok": True} | health
    return EmailAccount(
        11, "one@acme.test", "One", "SMTP", daily_limit=40, warmup_status=None, **fields
    )


def broken(row: dict, **change: Any) -> list[dict]:
    return [r | change if r["id"] == row["id"] else r for r in ROWS]


@pytest.fixture(autouse=True)
def _setup(settings: Any, smartlead_clock: Any) -> None:
    """The connect API's legacy-secret tokens, Smartlead at the fake's URL, waits free."""
    settings.SUPABASE_JWT_SECRET, settings.SUPABASE_URL = SECRET, ""
    settings.SMARTLEAD_BASE_URL = BASE


@pytest.fixture
def sdr() -> Profile:
    profile = make_profile(connected=False)
    profile.set_smartlead_credentials(api_key=SAVED_KEY, email_account_ids=[11])
    return profile


@pytest.fixture
def api(client: Any, sdr: Profile) -> Api:
    return Api(client, sdr)


# --- The rule ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "health,problem",
    [
        ({}, ""),
        ({"smtp_ok": False, "smtp_error": "535 Authentication failed"}, "SMTP failing (535"),
        ({"imap_ok": False}, "IMAP failing"),
        ({"suspended": True}, "suspended"),
        ({"warmup_reputation": 79.5}, "warmup reputation 79.5% is below 80%"),
        ({"warmup_reputation": 80.0}, ""),
        ({"warmup_reputation": None}, ""),  # no warmup data says nothing against it
    ],
)
def test_a_mailbox_sends_only_while_smartlead_reports_it_healthy(settings, health, problem):
    settings.SMARTLEAD_MIN_WARMUP_REPUTATION = 80
    found = health_problem(account(**health))
    assert found.startswith(problem) if problem else found == ""


def test_without_a_reputation_floor_reputation_is_not_checked(settings):
    settings.SMARTLEAD_MIN_WARMUP_REPUTATION = None
    assert health_problem(account(warmup_reputation=3.0)) == ""
    assert health_problem(None) == GONE


def test_a_reputation_floor_outside_0_to_100_stops_the_start(settings):
    settings.SMARTLEAD_MIN_WARMUP_REPUTATION = 150
    with pytest.raises(SystemCheckError, match="SMARTLEAD_MIN_WARMUP_REPUTATION"):
        call_command("check")


def test_it_reads_reputation_and_suspension_in_every_shape_smartlead_sends(rsps):
    rows = [
        {"id": 1, "warmup_details": {"warmup_reputation": "95%"}},
        {"id": 2, "warmup_details": {"warmup_reputation": 72}, "is_suspended": True},
        {"id": 3, "warmup_details": None, "is_suspended": "false"},
        {"id": 4, "warmup_details": {"warmup_reputation": "n/a"}},
    ]
    rsps.get(f"{BASE}/email-accounts/", json=rows)
    with SmartleadClient(SAVED_KEY, base_url=BASE) as smartlead:
        read = {a.id: (a.warmup_reputation, a.suspended) for a in smartlead.list_email_accounts()}
    assert read == {1: (95.0, False), 2: (72.0, True), 3: (None, False), 4: (None, False)}


# --- Several mailboxes through the connect API -------------------------------------------
def test_it_saves_several_mailboxes_in_order_the_first_in_the_profile(api, sdr, rsps):
    accounts_of(rsps, SAVED_KEY, broken(ROWS[2], is_smtp_success=False))

    response = api.call("put", EMAIL_ACCOUNT, {"email_account_ids": [12, 11, 13]})

    assert response.status_code == 200, response.content
    body = response.json()
    assert reload(sdr).smartlead_email_account_id == "12"
    assert body["email_account"] == {"id": 12, "from_email": "two@acme.test", "from_name": "Two"}
    assert [(m["id"], m["state"], m["healthy"]) for m in body["mailboxes"]] == [
        (12, "healthy", True),
        (11, "healthy", True),
        (13, "unhealthy", False),
    ]
    assert body["mailboxes"][2]["problem"] == "SMTP failing"
    assert reload(sdr).healthy_mailbox_ids() == [12, 11]
    assert body["connected"] is True


@pytest.mark.parametrize(
    "body,words",
    [
        ({"email_account_ids": [11, 12, 11]}, "email account 11 is listed twice"),
        ({"email_account_ids": []}, "email_account_ids"),
        ({"email_account_ids": [11, 0]}, "item 1:"),
        ({"email_account_ids": "11"}, "Expected a list"),
        ({"email_account_ids": [11], "email_account_id": 11}, "one of the two"),
        ({"email_account_ids": list(range(1, 102))}, "no more than 100"),
    ],
)
def test_a_bad_mailbox_list_is_a_400_naming_the_field_and_saves_nothing(
    api, sdr, rsps, body, words
):
    response = api.call("put", EMAIL_ACCOUNT, body)
    assert response.status_code == 400
    assert response.json()["field"] == "email_account_ids" and words in response.json()["error"]
    assert reload(sdr).smartlead_email_account_id == "11" and len(rsps.calls) == 0


def test_mailboxes_the_key_does_not_own_are_named_and_nothing_is_saved(api, sdr, rsps):
    accounts_of(rsps, SAVED_KEY, ROWS)
    response = api.call("put", EMAIL_ACCOUNT, {"email_account_ids": [12, 98, 99]})
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "email_account_not_owned" and body["field"] == "email_account_ids"
    assert "email accounts 98, 99 are not" in body["error"]
    assert [row.mailbox_id for row in reload(sdr).mailbox_rows()] == [11]


# --- Health decides, not reachability ----------------------------------------------------
def test_a_key_check_never_releases_a_mailbox_smartlead_reported_failing(api, sdr, rsps):
    sdr.record_mailbox_failure(11, "Smartlead reports email account 11 disconnected.")
    assert status_of(sdr) == SmartleadStatus.NO_HEALTHY_MAILBOX
    accounts_of(rsps, SAVED_KEY, ROWS)  # the list looks fine

    body = api.call("get", CONNECTION).json()

    assert body["status"] == "no_healthy_mailbox" and body["connected"] is False
    assert body["mailboxes"][0]["state"] == "failed"
    assert "disconnected" in body["mailboxes"][0]["problem"]
    assert status_of(sdr) == SmartleadStatus.NO_HEALTHY_MAILBOX


def test_a_key_check_that_sees_a_mailbox_failing_holds_it(api, sdr, rsps):
    accounts_of(rsps, SAVED_KEY, broken(ROWS[0], is_imap_success=False))
    body = api.call("get", CONNECTION).json()
    assert body["status"] == "no_healthy_mailbox"
    assert body["mailboxes"][0]["problem"] == "IMAP failing"


def test_a_health_read_releases_a_mailbox_that_is_working_again(sdr, rsps):
    sdr.record_mailbox_failure(11, "Smartlead reports it disconnected.")
    accounts_of(rsps, SAVED_KEY, ROWS)
    with SmartleadClient(SAVED_KEY, base_url=BASE) as smartlead:
        assert read_mailbox_health(smartlead, reload(sdr)) == []
    [row] = reload(sdr).mailbox_rows()
    assert (row.state, row.failure, row.address) == ("healthy", "", "one@acme.test")
    assert status_of(sdr) in (SmartleadStatus.CONNECTED, SmartleadStatus.UNCHECKED)


def test_a_health_read_smartlead_refuses_is_reported_not_raised(sdr, rsps):
    accounts_of(rsps, SAVED_KEY, [], status=401)
    with SmartleadClient(SAVED_KEY, base_url=BASE) as smartlead:
        [error] = read_mailbox_health(smartlead, reload(sdr))
    assert "mailbox health not read" in error
    assert status_of(sdr) == SmartleadStatus.INVALID_KEY


def test_choosing_a_failed_mailbox_again_does_not_mend_it(api, sdr, rsps):
    sdr.record_mailbox_failure(11, "Smartlead reports it disconnected.")
    accounts_of(rsps, SAVED_KEY, broken(ROWS[0], is_smtp_success=False))
    response = api.call("put", EMAIL_ACCOUNT, {"email_account_ids": [11]})
    assert response.status_code == 200
    assert response.json()["mailboxes"][0]["state"] == "failed"
    assert status_of(sdr) == SmartleadStatus.NO_HEALTHY_MAILBOX


def test_a_mailbox_written_straight_into_the_profile_replaces_the_set(sdr):
    sdr.set_smartlead_credentials(api_key=SAVED_KEY, email_account_ids=[11, 12])
    sdr.record_mailbox_failure(11, "failing")
    Profile.objects.filter(pk=sdr.pk).update(smartlead_email_account_id="12")  # the older way
    profile = reload(sdr)
    [row] = profile.mailbox_rows()
    assert (row.mailbox_id, row.state, row.pk) == (12, "unchecked", None)
    assert profile.healthy_mailbox_ids() == [12]
    assert status_of(sdr) == SmartleadStatus.UNCHECKED


def test_a_held_sdr_can_act_but_not_send(sdr):
    sdr.record_mailbox_failure(11, "failing")
    sender = reload(sdr).sender()
    assert sender.credentials is not None and sender.held
    assert sender.credentials.email_account_ids == ()
    assert not Profile.objects.connected().filter(pk=sdr.pk).exists()


def test_a_held_sdrs_waiting_enrollment_says_why_and_activation_is_refused(api, sdr):
    sdr.record_mailbox_failure(11, "Smartlead reports email account 11 disconnected")
    sequence = make_sequence(creator=sdr, status="draft")
    enrollment = make_enrollment(sequence=sequence)
    response = api.call("post", f"/api/sequences/{sequence.pk}/activate")
    assert response.status_code == 400 and response.json()["code"] == "no_healthy_mailbox"
    sequence.status = "active"
    sequence.save()
    assert explain(enrollment).startswith("Held: none of the mailboxes")
    assert "disconnected" in explain(enrollment)


# --- The admin ---------------------------------------------------------------------------
def test_the_admin_shows_each_sdrs_mailboxes_by_address_with_their_health(admin_client, sdr):
    sdr.set_smartlead_credentials(api_key=SAVED_KEY, email_account_ids=[11, 12])
    twelve = EmailAccount(12, "two@acme.test", "Two", "SMTP", False, True, None, None)
    sdr.record_accounts([account(), twelve], release=True)

    listing = admin_client.get(reverse("admin:profiles_profile_changelist")).content.decode()
    assert "one@acme.test ✓, two@acme.test ✗" in listing
    page = admin_client.get(reverse("admin:profiles_profile_change", args=[sdr.pk]))
    assert "two@acme.test: SMTP failing — unhealthy" in page.content.decode()


def test_the_admins_mailbox_page_does_not_mend_a_failed_mailbox_but_verifying_does(
    admin_client, sdr, rsps
):
    sdr.record_mailbox_failure(11, "Smartlead reports email account 11 disconnected.")
    accounts_of(rsps, SAVED_KEY, ROWS)  # Smartlead lists it as working again

    # Listed on a POST: a GET of the page asks Smartlead nothing (issue 24, point 5).
    listing = admin_client.post(
        reverse("admin:profiles_profile_smartlead_account", args=[sdr.pk]), {}
    )

    assert listing.status_code == 200 and "one@acme.test" in listing.content.decode()
    assert status_of(sdr) == SmartleadStatus.NO_HEALTHY_MAILBOX  # a key check
    admin_client.post(
        reverse("admin:profiles_profile_changelist"),
        {"action": "verify_credentials", "_selected_action": [sdr.pk]},
    )
    assert status_of(sdr) == SmartleadStatus.CONNECTED  # a health read


def test_a_bounce_the_sdrs_mailbox_caused_fails_that_mailbox_only(client, settings):
    configure(settings)
    lead = make_lead()
    sdr = lead.sequence.created_by
    sdr.set_smartlead_credentials(api_key=SAVED_KEY, email_account_ids=[3101, 3102])
    sender = EmailAccount(3101, "SDR@outboundhq-sender.test", "S", "SMTP", True, True, None, None)
    other = EmailAccount(3102, "other@outboundhq-sender.test", "S", "SMTP", True, True, None, None)
    sdr.record_accounts([sender, other], release=True)

    replay(client, "email_bounce_sender_originated")  # from_email: sdr@outboundhq-sender.test

    rows = reload(sdr).mailbox_rows()
    assert [(row.mailbox_id, row.state) for row in rows] == [(3101, "failed"), (3102, "healthy")]
    assert status_of(sdr) == SmartleadStatus.CONNECTED  # 3102 still sends
