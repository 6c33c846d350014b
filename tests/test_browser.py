"""A real browser: headless Chromium (Debian's `chromium` and `chromium-driver`) logs in to the
admin, opens the dashboard and a list behind one of its figures, and fails on a JavaScript
error, a resource that did not load (a 404 or 500 shows in the console) or a server error page.

Without Chromium these tests skip on a laptop; under OUTBOUNDHQ_REQUIRE_POSTGRES=1 (CI, which
installs it) they fail instead. With OUTBOUNDHQ_SCREENSHOTS=docs/img they also save the
screenshots docs/OPERATIONS.md shows, of the dashboard with a week of demo data.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from profiles.credentials import SmartleadStatus
from profiles.models import CredentialCheck
from sequences.models import ExecutorRun, RunTrigger
from smartlead.models import WebhookEvent
from tests.conftest import REQUIRE_POSTGRES
from tests.factories import make_enrollment, make_profile, make_sequence

# The live server needs committed rows (conftest empties the hosted tables after each test).
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
WIDTH = 1200
PASSWORD = "browser-test-password"


def chromium() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)  # no sandbox: CI runs as root in a container
    options.add_argument(f"--window-size={WIDTH},900")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


@pytest.fixture(scope="session", autouse=True)
def _plain_http_live_server() -> Iterator[None]:
    """The live server's middleware reads SECURE_SSL_REDIRECT once, when the session-wide server
    starts, before any test's own settings: it must start without the HTTPS redirect."""
    with override_settings(SECURE_SSL_REDIRECT=False):
        yield


@pytest.fixture
def browser() -> Iterator[Any]:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        why = f"needs Debian's chromium and chromium-driver (missing: {', '.join(missing)})"
        if REQUIRE_POSTGRES:
            pytest.fail(f"{why}; CI (.ci/run) installs them and runs every test")
        pytest.skip(why)
    driver = chromium()
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def staff(django_user_model: Any, settings: Any) -> Any:
    # The live server speaks plain HTTP; production cookies are HTTPS-only.
    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = False
    return django_user_model.objects.create_superuser("ops", "ops@example.test", PASSWORD)


def severe(driver: Any) -> list[str]:
    """The console's errors since the last call: JS exceptions, resources that failed."""
    # The browser asks for /favicon.ico on its own; the service has none and needs none.
    return [
        e["message"]
        for e in driver.get_log("browser")
        if e["level"] == "SEVERE" and "/favicon.ico " not in e["message"]
    ]


def open_page(driver: Any, url: str) -> str:
    driver.get(url)
    return checked(driver)


def checked(driver: Any) -> str:
    page = driver.page_source
    assert "Server Error (500)" not in page and "Server Error" not in driver.title, driver.title
    assert severe(driver) == []
    return page


def log_in(driver: Any, live_server: Any, next_url: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    open_page(driver, f"{live_server.url}{reverse('admin:login')}?next={next_url}")
    driver.find_element(By.ID, "id_username").send_keys("ops")
    driver.find_element(By.ID, "id_password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    # On a loaded machine the URL changes before the new page is in: wait for the page itself.
    WebDriverWait(driver, 30).until(
        lambda d: (
            not d.title.startswith("Log in")
            and d.execute_script("return document.readyState") == "complete"
        )
    )


def demo_week() -> None:
    """A week an ops person might meet: runs with pushes, skips and failures, webhook events
    of each type with a few unmatched and failed, SDRs in several credential states, and
    enrollments waiting."""
    now = timezone.now()
    sdrs = [make_profile(first_name=n) for n in ("Ana", "Ben", "Chloe", "Dev")]
    statuses = ["connected", "connected", "invalid_key", "connected"]
    for sdr, status in zip(sdrs, statuses, strict=True):
        CredentialCheck.objects.record(profile=sdr, status=SmartleadStatus(status))
    make_profile(first_name="Eve", connected=False)
    for sdr in sdrs[:2]:
        sequence = make_sequence(creator=sdr)
        for minutes in (-95, -40, -5, 30):
            make_enrollment(sequence=sequence, due_in=timedelta(minutes=minutes))
    for n in range(12):
        ExecutorRun.objects.create(
            trigger=RunTrigger.SCHEDULE,
            started_at=now - timedelta(hours=14 * n),
            finished_at=now - timedelta(hours=14 * n) + timedelta(seconds=12),
            pushed=120 + 37 * (n % 5),
            failed=(0, 0, 4, 0, 11)[n % 5],
            skipped_no_credentials=(0, 18)[n % 2],
            skipped={"bounced": 3, "unsubscribed": 1} if n % 3 == 0 else {},
        )
    kinds = ["EMAIL_SENT", "EMAIL_OPEN", "EMAIL_REPLY", "EMAIL_BOUNCE"]
    events = []
    for day in range(7):
        for k, kind in enumerate(kinds):
            for i in range((40, 25, 6, 3)[k] + day % 3):
                outcome = "unmatched" if i % 9 == 4 else "failed" if i % 17 == 5 else "applied"
                events.append(
                    WebhookEvent(
                        dedupe_key=f"demo-{day}-{kind}-{i}",
                        event_type=kind,
                        outcome=outcome,
                        raw_body="{}",
                        received_at=now - timedelta(days=day, minutes=i),
                    )
                )
    WebhookEvent.objects.bulk_create(events)


def screenshot(driver: Any, name: str) -> None:
    """The whole page, `WIDTH` wide, when OUTBOUNDHQ_SCREENSHOTS names a folder."""
    folder = os.environ.get("OUTBOUNDHQ_SCREENSHOTS")
    if not folder:
        return
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(WIDTH, min(int(height) + 100, 4000))
    Path(folder).mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(Path(folder) / name))


def test_it_logs_in_opens_the_dashboard_and_a_list_without_errors(browser, live_server, staff):
    from selenium.webdriver.common.by import By

    demo_week()
    log_in(browser, live_server, reverse("ops-dashboard"))
    page = checked(browser)
    assert browser.current_url == f"{live_server.url}{reverse('ops-dashboard')}"
    assert "Ops dashboard" in page and "due now" in page
    screenshot(browser, "dashboard.png")
    browser.find_element(By.LINK_TEXT, "Webhook events").click()  # the figure's heading
    listing = checked(browser)
    assert reverse("admin:smartlead_webhookevent_changelist") in browser.current_url
    assert "EMAIL_REPLY" in listing


def test_it_opens_the_linked_lists_of_a_record(browser, live_server, staff):
    from selenium.webdriver.common.by import By

    sequence = make_sequence(creator=make_profile())
    make_enrollment(sequence=sequence)
    log_in(browser, live_server, reverse("admin:sequences_sequence_changelist"))
    checked(browser)
    browser.find_element(By.CSS_SELECTOR, "#result_list a[href*='sequence__id__exact=']").click()
    checked(browser)
    assert f"sequence__id__exact={sequence.pk}" in browser.current_url
    assert len(browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")) == 1


def test_it_notices_a_javascript_error(browser, live_server, staff):
    log_in(browser, live_server, reverse("admin:index"))
    checked(browser)
    browser.execute_script("setTimeout(() => { throw new Error('deliberate') }, 0)")
    browser.execute_script("return 1")  # let the timeout run
    assert any("deliberate" in message for message in severe(browser))


@pytest.mark.parametrize("page", ["api-docs", "api-redoc"])
def test_it_renders_the_api_docs_under_the_content_security_policy(browser, live_server, page):
    """Issue 24, point 11: what the policy forbids shows as a console error (and no page)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{live_server.url}{reverse(page)}")
    WebDriverWait(browser, 30).until(
        lambda d: "Connect" in d.find_element(By.TAG_NAME, "body").text
    )
    assert "script-src 'self'" in browser.execute_script(
        "return (await fetch(location.href)).headers.get('Content-Security-Policy')"
    )
    # Redoc's bundle fetches its attribution logo from its CDN: the policy blocks that (nothing
    # comes from a CDN) and Redoc then hides it. Anything else blocked would be a broken page.
    logo = "https://cdn.redoc.ly/redoc/logo-mini.svg"
    assert [m for m in severe(browser) if logo not in m] == []
