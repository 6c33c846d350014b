"""One Smartlead request budget per key (issue 21): a minute, an hour and a burst window, shared
by every process through Redis or Postgres, with room kept for what changes in the app; and,
end to end, every job and person using one key at once without a single 429."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection, connections
from django.test import Client
from django.utils import timezone

from profiles.models import Profile
from sequences.executor import execute
from sequences.models import Contact, Enrollment
from smartlead.api import RateLimited, limits
from smartlead.api.limits import Budget, Limits, MemoryStore, Priority
from smartlead.budget import PostgresStore, RedisStore
from smartlead.reconcile import reconcile
from smartlead.sandbox import SandboxServer
from tests.factories import make_contact, make_enrollment, make_profile, make_sequence
from tests.test_connect_api import CONNECTION, SECRET, Api
from tests.test_scale_out import REDIS_URL

KEY = "sandbox-key-budget-5b1e77c2"
TWO_EMAILS = [
    {"step_type": "email", "subject": "Hi", "body": "Hello"},
    {"step_type": "email", "subject": "", "body": "Again", "delay_days": 3},
]


# --- The rules, on the fake clock --------------------------------------------------------
def test_it_counts_a_burst_a_minute_and_an_hour_for_every_request(smartlead_clock: Any) -> None:
    budget = Budget("k", MemoryStore(), Limits(per_minute=20, per_hour=30))
    for _ in range(18):  # new pushes may use 60 %: 12 a minute, 18 an hour
        budget.acquire(priority=Priority.BULK)

    assert smartlead_clock.sleeps[0] == pytest.approx(2.25)  # 10 per 2 s (+ margin)
    assert sum(smartlead_clock.sleeps) == pytest.approx(60.25, abs=0.5)  # the 13th: next minute
    with pytest.raises(RateLimited, match="18 an hour"):
        budget.acquire(max_wait=600, priority=Priority.BULK)  # the hour is spent for pushes


def test_it_keeps_room_for_app_changes_and_people_when_pushes_fill_a_window(
    smartlead_clock: Any,
) -> None:
    budget = Budget("k", MemoryStore(), Limits(per_minute=20, per_hour=1000, burst=100))
    for _ in range(12):
        budget.acquire(priority=Priority.BULK)

    with pytest.raises(RateLimited):
        budget.acquire(max_wait=5, priority=Priority.BULK)
    for _ in range(4):  # a person waiting: up to 80 %
        budget.acquire(max_wait=0, priority=Priority.INTERACTIVE)
    with pytest.raises(RateLimited):
        budget.acquire(max_wait=5, priority=Priority.INTERACTIVE)
    for _ in range(4):  # an unsubscribe: the whole window
        budget.acquire(max_wait=0, priority=Priority.CHANGE)
    assert smartlead_clock.sleeps == []


@pytest.mark.parametrize(
    ("headers", "held"),
    [
        ({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "30"}, 31.0),
        (
            {"X-RateLimit-Remaining": "3", "X-RateLimit-Reset": "40", "X-RateLimit-Limit": "60"},
            10.25,
        ),
        ({"X-RateLimit-Remaining": "3"}, 0.0),  # no reset: says nothing
    ],
    ids=["spent", "another-integration-uses-it", "incomplete"],
)
def test_it_holds_the_key_back_when_smartleads_headers_say_it_is_spent(
    smartlead_clock: Any, headers: dict[str, str], held: float
) -> None:
    budget = Budget("k", MemoryStore(), Limits())
    budget.acquire()  # ours: 1 of the 57 the headers say are used

    budget.observe(headers)
    budget.acquire()

    assert smartlead_clock.sleeps == ([pytest.approx(held)] if held else [])


# --- Shared by every process: Postgres and Redis -----------------------------------------
def stores(kind: str) -> list[Any]:
    """Two stores of one kind, as two processes would each have."""
    if kind == "redis":
        return [RedisStore(REDIS_URL), RedisStore(REDIS_URL)]
    return [PostgresStore(), PostgresStore()]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("kind", ["postgres", "redis"])
def test_it_shares_one_keys_budget_between_processes(kind: str) -> None:
    key = uuid.uuid4().hex  # a key of its own, on a shared server
    small = Limits(per_minute=6, per_hour=100, burst=100, minute=1.0, margin=0.0)
    sent: list[float] = []
    lock = threading.Lock()

    def process(store: Any) -> None:
        budget = Budget(key, store, small)
        for _ in range(6):
            budget.acquire(priority=Priority.CHANGE)
            with lock:
                sent.append(time.monotonic())

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(own_connection(process), stores(kind)))

    sent.sort()
    assert len(sent) == 12
    # 6 a second between them, measured where they sent (the store's clock is another's).
    assert all(sum(s <= t < s + 0.95 for t in sent) <= 6 for s in sent)
    assert sent[-1] - sent[0] >= 1.0


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("kind", ["postgres", "redis"])
def test_a_429_one_process_saw_holds_every_process_back(kind: str) -> None:
    key = uuid.uuid4().hex
    first, second = (Budget(key, store, Limits()) for store in stores(kind))
    first.pause(1.0)

    started = time.monotonic()
    second.acquire()

    assert time.monotonic() - started >= 0.9
    assert second.usage()["minute"] == 1


# --- End to end: every job and 20 people on one key at once ------------------------------
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_it_sends_no_request_into_a_429_when_every_job_and_person_uses_one_key_at_once(
    make_sandbox: Any, settings: Any
) -> None:
    sandbox: SandboxServer = make_sandbox({KEY: [3601]}, requests_per_minute=600, burst=100)
    settings.SUPABASE_JWT_SECRET = SECRET
    settings.SMARTLEAD_LEADS_PER_REQUEST = 10
    sdr = make_profile(smartlead_api_key=KEY, smartlead_email_account_id="3601")
    sequence = make_sequence(creator=sdr, steps=TWO_EMAILS)
    leaving = [make_contact(email=f"gone{n}@acme.test") for n in range(2)]
    for contact in leaving:
        make_enrollment(sequence=sequence, contact=contact)
    assert execute(trigger="command").pushed == 2  # set up with room to spare
    Contact.objects.filter(pk__in=[c.pk for c in leaving]).update(unsubscribed_at=timezone.now())
    for _ in range(150):  # 15 requests of 10: more than the key may carry now
        make_enrollment(sequence=sequence)
    # From here on: Smartlead's limits scaled down, ours the same, one store for every caller.
    scale_down(sandbox, settings, per_minute=20, per_hour=60)
    people = [make_profile(connected=False) for _ in range(20)]

    with ThreadPoolExecutor(22) as pool:
        run = pool.submit(own_connection(execute), trigger="command", time_budget=15)
        passes = pool.submit(own_connection(reconcile), trigger="command", time_budget=15)
        answers = list(pool.map(own_connection(connect), people))
        run, passes = run.result(), passes.result()

    seen = {label: sandbox.request_count(route=label) for label in routes(sandbox)}
    assert sandbox.request_count(status=429) == 0, seen
    assert sandbox.request_count() <= 20, seen  # one minute's worth, all callers together
    account = sandbox.state.accounts[KEY]
    assert {c.email for c in leaving} <= account.unsubscribed | unsubscribed_in(sandbox)
    assert run.propagated == 2, run.errors  # the app's unsubscribes went; pushes were held back
    assert run.deferred > 0 and any("budget" in e for e in run.errors), run.errors
    assert {status for status, _ in answers} <= {200, 429}, answers
    for status, body in answers:
        if status == 429:
            assert body["code"] == "smartlead_budget_spent" and "try again" in body["error"]
    assert not Enrollment.objects.filter(status="failed").exists()
    assert passes.finished_at is not None


def own_connection(work: Callable[..., Any]) -> Callable[..., Any]:
    """`work` on a thread of its own, which closes its database connection after."""

    def on_thread(*args: Any, **kwargs: Any) -> Any:
        try:
            return work(*args, **kwargs)
        finally:
            connections.close_all()

    return on_thread


def scale_down(sandbox: SandboxServer, settings: Any, *, per_minute: int, per_hour: int) -> None:
    sandbox.state.requests_per_minute, sandbox.state.requests_per_hour = per_minute, per_hour
    sandbox.state.burst = 10
    for account in sandbox.state.accounts.values():
        account.hits.clear()
    sandbox.reset_counts()
    settings.SMARTLEAD_REQUESTS_PER_MINUTE, settings.SMARTLEAD_REQUESTS_PER_HOUR = (
        per_minute,
        per_hour,
    )
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM outboundhq_request_budget")
    limits.use_store(PostgresStore())


def connect(profile: Profile) -> tuple[int, dict]:
    """An SDR connecting the key in the web app (POST /api/smartlead/connection)."""
    response = Api(Client(), profile).call("post", CONNECTION, {"api_key": KEY})
    return response.status_code, response.json()


def routes(sandbox: SandboxServer) -> set[str]:
    return {label for (_, label, _) in sandbox._counts}


def unsubscribed_in(sandbox: SandboxServer) -> set[str]:
    return {
        lead["email"]
        for campaign in sandbox.campaigns(KEY)
        for lead in campaign["leads"]
        if lead["status"] == "STOPPED"
    }


def test_it_says_when_the_keys_budget_leaves_an_enrollment_for_a_later_run(
    smartlead_clock: Any, settings: Any, admin_client: Client
) -> None:
    settings.SMARTLEAD_REQUESTS_PER_MINUTE, settings.SMARTLEAD_REQUESTS_PER_HOUR = 60, 10
    sdr = make_profile()
    enrollment = make_enrollment(sequence=make_sequence(creator=sdr))
    budget = limits.budget_for(sdr.smartlead_credentials().api_key, Limits(per_hour=10))
    for _ in range(6):  # new pushes may use 6 of the hour's 10
        budget.acquire()

    out = StringIO()
    call_command("explain_enrollment", str(enrollment.pk), stdout=out)
    page = admin_client.get(f"/admin/sequences/enrollment/{enrollment.pk}/change/")

    assert "request budget for new pushes is spent" in out.getvalue()
    assert "6 in the last hour" in out.getvalue()
    assert "request budget for new pushes is spent" in page.content.decode()
