"""The sandbox's mailbox routes and rules (issue 22), through the client over real HTTP: health in
Smartlead's shapes, pinning, reallocate-mailboxes, update-lead-email-account and the refusal to
remove an ACTIVE campaign's last mailbox, each the way Smartlead's reference pages describe."""

from __future__ import annotations

import json
from typing import Any

import pytest

from smartlead.api import Lead, SmartleadClient, ValidationFailed
from smartlead.sandbox import SandboxServer
from tests.test_sandbox import provision, raw

KEY = "sandbox-mailbox-routes-key-4a7c"
BOXES = [
    {"id": 11, "from_email": "one@acme.test"},
    {"id": 12, "from_email": "two@acme.test"},
    {"id": 13, "from_email": "three@acme.test", "is_suspended": True},
]


@pytest.fixture
def sandbox(make_sandbox: Any, smartlead_clock: Any) -> SandboxServer:
    accounts = [{"api_key": KEY, "email_accounts": BOXES}]
    return make_sandbox(accounts, clock=smartlead_clock.monotonic)


@pytest.fixture
def client(sandbox: SandboxServer) -> SmartleadClient:
    return SmartleadClient(KEY, base_url=sandbox.base_url)


def started(client: SmartleadClient, mailboxes: list[int], leads: int = 3) -> int:
    """An ACTIVE two-step campaign with these mailboxes and leads, none written to yet."""
    campaign_id = provision(client, mailboxes[0])
    if mailboxes[1:]:
        client.add_email_accounts(campaign_id, mailboxes[1:])
    client.add_leads(campaign_id, [Lead(f"lead{n}@prospect.test") for n in range(leads)])
    return campaign_id


def pinned(sandbox: SandboxServer, campaign_id: int) -> dict[str, Any]:
    [state] = [c for c in sandbox.campaigns(KEY) if c["id"] == campaign_id]
    return {lead["email"]: lead["email_account_id"] for lead in state["leads"]}


# --- Health in Smartlead's shapes --------------------------------------------------------
def test_the_list_route_sends_reputation_as_a_percent_string_and_suspension_only_when_set(
    sandbox, client
):
    _, _, body = raw(sandbox, "GET", "/email-accounts/", KEY)
    rows = {row["id"]: row for row in json.loads(body)}
    assert rows[11]["warmup_details"]["warmup_reputation"] == "95%"
    assert "is_suspended" not in rows[11] and rows[13]["is_suspended"] is True
    _, _, one = raw(sandbox, "GET", "/email-accounts/11/", KEY)
    assert json.loads(one)["warmup_details"]["warmup_reputation"] == 95

    accounts = {a.id: a for a in client.list_email_accounts()}
    assert (accounts[11].warmup_reputation, accounts[11].suspended) == (95.0, False)
    assert accounts[13].suspended is True
    assert client.get_email_account(11).warmup_reputation == 95.0


def test_tests_can_break_and_fix_a_mailbox(sandbox, client):
    sandbox.break_mailbox(KEY, 11)
    sandbox.break_mailbox(KEY, 12, is_imap_success=False, warmup_reputation=40)
    accounts = {a.id: a for a in client.list_email_accounts()}
    assert (accounts[11].smtp_ok, accounts[11].smtp_error) == (False, "535 Authentication failed")
    assert (accounts[12].imap_ok, accounts[12].warmup_reputation) == (False, 40.0)

    sandbox.fix_mailbox(KEY, 11)
    assert client.get_email_account(11).smtp_ok is True
    with pytest.raises(ValueError, match="Not a mailbox health field"):
        sandbox.break_mailbox(KEY, 11, password="x")


def test_a_campaign_lists_its_attached_mailboxes(sandbox, client):
    campaign_id = started(client, [11, 12])
    assert [a.id for a in client.campaign_email_accounts(campaign_id)] == [11, 12]


def test_attaching_a_failing_or_suspended_mailbox_is_refused(sandbox, client):
    campaign_id = started(client, [11])
    sandbox.break_mailbox(KEY, 12)
    for mailbox in (12, 13):
        with pytest.raises(ValidationFailed, match="must be connected"):
            client.add_email_accounts(campaign_id, [mailbox])


# --- Pinning and removal -----------------------------------------------------------------
def test_a_lead_is_pinned_and_gets_nothing_more_once_its_mailbox_is_detached(sandbox, client):
    campaign_id = started(client, [11, 12], leads=2)
    first = sandbox.send_next(KEY, campaign_id)
    assert sorted(m for _, _, m in first) == [11, 12]  # the rotation
    lead_on_11 = next(address for address, _, m in first if m == 11)

    client.remove_email_accounts(campaign_id, [11])
    second = sandbox.send_next(KEY, campaign_id)

    assert lead_on_11 not in {address for address, _, _ in second}
    assert pinned(sandbox, campaign_id)[lead_on_11] == 11  # stranded until moved


def test_a_lead_on_a_failing_mailbox_gets_nothing_until_it_is_fixed(sandbox, client):
    campaign_id = started(client, [11], leads=1)
    sandbox.send_next(KEY, campaign_id)
    sandbox.break_mailbox(KEY, 11)
    assert sandbox.send_next(KEY, campaign_id) == []
    sandbox.fix_mailbox(KEY, 11)
    assert sandbox.send_next(KEY, campaign_id) == [("lead0@prospect.test", 2, 11)]


def test_removing_the_last_mailbox_of_an_active_campaign_is_refused(sandbox, client):
    campaign_id = started(client, [11])
    with pytest.raises(ValidationFailed, match="Cannot remove all email accounts"):
        client.remove_email_accounts(campaign_id, [11])
    client.set_status(campaign_id, "PAUSED")
    client.remove_email_accounts(campaign_id, [11])  # a paused one may have none
    assert client.campaign_email_accounts(campaign_id) == []


def test_the_message_history_names_the_mailbox_that_wrote_to_the_lead(sandbox, client):
    campaign_id = started(client, [12], leads=1)
    lead = client.find_lead("lead0@prospect.test")
    assert client.lead_sender(campaign_id, lead.id) is None  # not written to yet
    sandbox.send_next(KEY, campaign_id)
    path = f"/campaigns/{campaign_id}/leads/{lead.id}/message-history"
    _, _, body = raw(sandbox, "GET", path, KEY)
    history = json.loads(body)
    assert (history["from"], history["to"]) == ("two@acme.test", "lead0@prospect.test")
    assert client.lead_sender(campaign_id, lead.id) == "two@acme.test"


# --- reallocate-mailboxes ----------------------------------------------------------------
def test_reallocating_moves_the_removed_mailboxs_leads_but_not_started_ones(sandbox, client):
    campaign_id = started(client, [11], leads=2)
    sandbox.send_next(KEY, campaign_id)
    client.add_leads(campaign_id, [Lead("late@prospect.test")])  # STARTED, no mailbox yet
    client.add_email_accounts(campaign_id, [12])
    client.remove_email_accounts(campaign_id, [11])

    moved = client.reallocate_mailboxes(campaign_id, [11])

    assert (moved.leads_reallocated, moved.to_email_account_ids) == (2, (12,))
    assert pinned(sandbox, campaign_id) == {
        "lead0@prospect.test": 12,
        "lead1@prospect.test": 12,
        "late@prospect.test": None,
    }
    assert client.reallocate_mailboxes(campaign_id, [11]).leads_reallocated == 0  # idempotent


@pytest.mark.parametrize(
    "body,words",
    [
        ({"from_email_account_ids": [12]}, "still attached to this campaign"),
        ({"from_email_account_ids": []}, "must contain 1 to 100 items"),
        ({"from_email_account_ids": [11, 11]}, "duplicate"),
        ({"from_email_account_ids": ["11"]}, "only numbers"),
        ({"from_email_account_ids": list(range(1, 102))}, "1 to 100"),
        ({"mailboxes": [11]}, 'mailboxes\\" is not allowed'),
    ],
)
def test_reallocating_answers_400_as_the_reference_says(sandbox, client, body, words):
    campaign_id = started(client, [11, 12])
    path = f"/campaigns/{campaign_id}/reallocate-mailboxes"
    status, _, answer = raw(sandbox, "POST", path, KEY, body)
    assert status == 400 and words in answer


def test_reallocating_with_no_mailbox_attached_is_a_400(sandbox, client):
    campaign_id = started(client, [11])
    client.set_status(campaign_id, "PAUSED")
    client.remove_email_accounts(campaign_id, [11])
    with pytest.raises(ValidationFailed, match="No email accounts are attached"):
        client.reallocate_mailboxes(campaign_id, [11])


# --- update-lead-email-account -----------------------------------------------------------
def test_one_lead_is_moved_to_a_chosen_mailbox(sandbox, client):
    campaign_id = started(client, [11, 12], leads=1)
    sandbox.send_next(KEY, campaign_id)
    lead = client.find_lead("lead0@prospect.test")

    client.update_lead_email_account(campaign_id, lead.id, 12)

    assert pinned(sandbox, campaign_id) == {"lead0@prospect.test": 12}


def test_without_the_override_a_lead_that_has_a_mailbox_keeps_it(sandbox, client):
    campaign_id = started(client, [11, 12], leads=1)
    sandbox.send_next(KEY, campaign_id)
    lead = client.find_lead("lead0@prospect.test")
    body = {"email_account_id": 12, "email_campaign_id": campaign_id, "email_lead_id": lead.id}
    status, _, answer = raw(sandbox, "POST", "/campaigns/update-lead-email-account", KEY, body)
    assert status == 200 and json.loads(answer)["success"] is True  # as the docs show it
    assert pinned(sandbox, campaign_id) == {"lead0@prospect.test": 11}


@pytest.mark.parametrize(
    "change,status,words",
    [
        ({"email_lead_id": 1}, 404, "Lead not found"),
        ({"email_account_id": 999}, 400, "Email account not found"),
        ({"email_campaign_id": 1}, 404, "Campaign not found"),
        ({"email_lead_id": "1"}, 400, "must be a number"),
        ({"lead": 1}, 400, 'lead\\" is not allowed'),
    ],
)
def test_a_bad_lead_mailbox_update_is_refused(sandbox, client, change, status, words):
    campaign_id = started(client, [11], leads=1)
    lead = client.find_lead("lead0@prospect.test")
    body = {"email_account_id": 11, "email_campaign_id": campaign_id, "email_lead_id": lead.id}
    answer = raw(sandbox, "POST", "/campaigns/update-lead-email-account", KEY, body | change)
    assert answer[0] == status and words in answer[2]
