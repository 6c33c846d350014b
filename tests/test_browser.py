"""A real browser: headless Chromium (Debian's `chromium` and `chromium-driver`), 1400 px wide
like an ops person's laptop, logs in to the admin, reads the verdicts at the top of the
dashboard, follows an SDR to their page, filters a list by that SDR and downloads it as CSV,
and checks that every list's key columns are on screen; it fails on a JavaScript error, a
resource that did not load (a 404 or 500 shows in the console) or a server error page.

Without Chromium these tests skip on a laptop; under OUTBOUNDHQ_REQUIRE_POSTGRES=1 (CI, which
installs it) they fail instead. Screenshots of each page go to the test's temporary folder, and
with OUTBOUNDHQ_SCREENSHOTS=docs/img to the ones docs/OPERATIONS.md shows.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone

from profiles.credentials import SmartleadStatus
from profiles.models import CredentialCheck
from sequences.models import Enrollment, ExecutorRun, Push, RunTrigger
from smartlead.models import ReconcileRun, WebhookEvent
from tests.conftest import REQUIRE_POSTGRES
from tests.factories import make_enrollment, make_profile, make_sequence

# The live server needs committed rows (conftest empties the hosted tables after each test).
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
WIDTH = 1400
PASSWORD = "browser-test-password"


def chromium(downloads: Path) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.add_experimental_option(
        "prefs",
        {"download.default_directory": str(downloads), "download.prompt_for_download": False},
    )
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)  # no sandbox: CI runs as root in a container
    options.add_argument(f"--window-size={WIDTH},900")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


@pytest.fixture
def downloads(tmp_path: Path) -> Path:
    folder = tmp_path / "downloads"
    folder.mkdir()
    return folder


@pytest.fixture
def browser(downloads: Path) -> Iterator[Any]:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        why = f"needs Debian's chromium and chromium-driver (missing: {', '.join(missing)})"
        if REQUIRE_POSTGRES:
            pytest.fail(f"{why}; CI (.ci/run) installs them and runs every test")
        pytest.skip(why)
    driver = chromium(downloads)
    # Headless Chromium saves downloads only when told where.
    driver.execute_cdp_cmd(
        "Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
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
    """The console's errors since the last call: JS exceptions, resources that failed (the
    favicon included: the admin names one)."""
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


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


def demo_week() -> dict[str, Any]:
    """A week an ops person might meet: runs with pushes, skips, failures and an error,
    webhook events of each type with a few unmatched, failed and rejected, reconcile passes,
    SDRs in several credential states, enrollments waiting, and one SDR's pushes."""
    now = timezone.now()
    sdrs = [make_profile(first_name=n, last_name="Demo") for n in ("Ana", "Ben", "Chloe", "Dev")]
    statuses = ["connected", "connected", "invalid_key", "connected"]
    for sdr, status in zip(sdrs, statuses, strict=True):
        said = "Smartlead: Invalid API Key" if status == "invalid_key" else "It can send."
        CredentialCheck.objects.record(profile=sdr, status=SmartleadStatus(status), detail=said)
    make_profile(first_name="Eve", connected=False)
    sequences = []
    for sdr in sdrs[:3]:
        sequence = make_sequence(creator=sdr, smartlead_campaign_id=str(9100 + len(sequences)))
        sequences.append(sequence)
        for minutes in (-95, -40, -5, 30):
            make_enrollment(sequence=sequence, due_in=timedelta(minutes=minutes))
    runs = []
    for n in range(12):
        runs.append(
            ExecutorRun.objects.create(
                trigger=RunTrigger.SCHEDULE,
                started_at=now - timedelta(hours=14 * n),
                finished_at=now - timedelta(hours=14 * n) + timedelta(seconds=12),
                pushed=120 + 37 * (n % 5),
                failed=(0, 0, 4, 0, 11)[n % 5],
                skipped_no_credentials=(0, 18)[n % 2],
                skipped={"bounced": 3, "unsubscribed": 1} if n % 3 == 0 else {},
                errors=[]
                if n % 4
                else [
                    f"SDR {sdrs[2].label}: InvalidApiKey: Smartlead refused the key (401): the "
                    "SDR reconnects in the web app; their 4 enrollments wait until then."
                ],
            )
        )
    for i, enrollment in enumerate(Enrollment.objects.filter(sequence=sequences[0])):
        Push.objects.create(
            enrollment_id=enrollment.pk,
            campaign_id=9100,
            sequence_id=sequences[0].pk,
            profile_id=sdrs[0].pk,
            email=enrollment.contact.email,
            state="pushed" if i else "rejected",
            outcome="" if i else "blocked",
            run_id=runs[0].pk,
            pushed_at=now if i else None,
        )
    ReconcileRun.objects.create(
        trigger="schedule",
        started_at=now - timedelta(minutes=20),
        finished_at=now - timedelta(minutes=19),
        campaigns=3,
        repaired={"EMAIL_REPLY": 2, "EMAIL_BOUNCE": 1},
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
                        campaign_id=9100 + i % 3,
                        lead_email=f"lead{i}@prospect.test",
                        received_at=now - timedelta(days=day, minutes=i),
                    )
                )
        events.append(
            WebhookEvent(
                dedupe_key=f"rejected-{day}",
                outcome="rejected",
                detail="This URL's token is for campaign 9100, not campaign 9101.",
                raw_body="{}",
                received_at=now - timedelta(days=day, hours=3),
            )
        )
    WebhookEvent.objects.bulk_create(events)
    return {"sdrs": sdrs, "sequences": sequences}


def screenshot(driver: Any, name: str, *folders: Path) -> None:
    """The whole page, `WIDTH` wide, into each folder and the one OUTBOUNDHQ_SCREENSHOTS names;
    the window is `WIDTH` x 900 again afterwards."""
    wanted = [*folders, *([Path(f)] if (f := os.environ.get("OUTBOUNDHQ_SCREENSHOTS")) else [])]
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(WIDTH, min(int(height) + 100, 4000))
    for folder in wanted:
        folder.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(folder / name))
    driver.set_window_size(WIDTH, 900)


def wait_for(driver: Any, condition: Any, seconds: float = 30) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, seconds).until(condition)


def loaded(driver: Any) -> bool:
    return driver.execute_script("return document.readyState") == "complete"


# Each list, and the columns ops read first: all of them must be on screen at 1400 px.
KEY_COLUMNS = {
    "admin:sequences_enrollment_changelist": ["contact", "status", "why_not_sent", "records"],
    "admin:sequences_executorrun_changelist": ["started_at", "errors_in_short", "duration"],
    "admin:sequences_push_changelist": ["email", "sdr", "state", "outcome", "records"],
    "admin:smartlead_webhookevent_changelist": ["event_type", "outcome", "short_detail"],
    "admin:profiles_profile_changelist": ["email", "smartlead", "records"],
}
# A row past this is a wall of wrapped text, not a list to scan.
MAX_ROW_HEIGHT = 130


def columns_on_screen(driver: Any, columns: list[str]) -> dict[str, Any]:
    """Each column header's right edge against what is visible of the list (the window, and the
    list's own scrolling box), how far that box scrolls sideways (shown when a check fails),
    and the tallest row."""
    return driver.execute_script(
        """
        const edges = {};
        for (const name of arguments[0]) {
            const th = document.querySelector('#result_list th.column-' + name);
            edges[name] = th ? th.getBoundingClientRect().right : null;
        }
        const box = document.querySelector('#result_list').closest('.results');
        const rows = [...document.querySelectorAll('#result_list tbody tr')];
        return {edges: edges,
                width: Math.min(window.innerWidth, box.getBoundingClientRect().right),
                scrolls: box.scrollWidth - box.clientWidth,
                tallest: Math.max(0, ...rows.map(r => r.getBoundingClientRect().height))};
        """,
        columns,
    )


def test_ops_read_the_verdicts_follow_an_sdr_filter_and_download_a_csv(
    browser, live_server, staff, downloads, tmp_path, settings
):
    from selenium.webdriver.common.by import By

    settings.PUBLIC_BASE_URL = live_server.url  # campaigns get webhooks, as in production
    settings.SMARTLEAD_WEBHOOK_SECRET = "browser-test-webhook-secret"
    week = demo_week()
    ana, chloe = week["sdrs"][0], week["sdrs"][2]
    log_in(browser, live_server, reverse("ops-dashboard"))
    checked(browser)
    assert browser.title == "Ops dashboard | OutboundHQ"
    health = browser.find_element(By.ID, "health").text
    assert "Executor schedule OK" in health and "Reconcile pass OK" in health
    assert f"SDR {chloe.label} Failing Invalid key" in health
    screenshot(browser, "dashboard.png", tmp_path)

    # The SDR who needs a look, from the verdicts to their page.
    browser.find_element(By.PARTIAL_LINK_TEXT, chloe.label).click()
    wait_for(browser, lambda d: reverse("ops-sdr", args=[chloe.pk]) in d.current_url)
    assert "Credentials and mailbox health" in checked(browser)
    assert "Invalid key" in browser.find_element(By.ID, "mailbox").text

    # Another SDR's page: their pushes, then the list filtered by typing their name.
    open_page(browser, f"{live_server.url}{reverse('ops-sdr', args=[ana.pk])}")
    assert "1 blocked" in browser.find_element(By.ID, "pushes").text
    screenshot(browser, "sdr.png", tmp_path)
    open_page(browser, f"{live_server.url}{reverse('admin:sequences_push_changelist')}")
    browser.find_element(By.CSS_SELECTOR, "#changelist-filter .select2-selection").click()
    browser.find_element(By.CSS_SELECTOR, ".select2-search__field").send_keys("Ana")
    option = wait_for(
        browser,
        lambda d: next(
            (
                o
                for o in d.find_elements(By.CSS_SELECTOR, ".select2-results__option")
                if "ana" in o.text.lower()
            ),
            None,
        ),
    )
    option.click()
    wait_for(browser, lambda d: f"sdr={ana.pk}" in d.current_url and loaded(d))
    checked(browser)
    shown = len(browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr"))
    assert shown == 4

    browser.find_element(By.CSS_SELECTOR, "a.ohq-csv").click()  # the list's "Download CSV"
    done = wait_for(browser, lambda d: [p for p in downloads.glob("*.csv")] or None)
    rows = list(csv.DictReader(io.StringIO(done[0].read_text())))
    assert len(rows) == shown and {r["sdr"] for r in rows} == {ana.email}
    assert "test-key-" not in done[0].read_text()

    # Every list at 1400 px: its key columns on screen, its rows a glance tall.
    for name, columns in KEY_COLUMNS.items():
        open_page(browser, f"{live_server.url}{reverse(name)}")
        found = columns_on_screen(browser, columns)
        screenshot(browser, name.split(":")[1].replace("_changelist", "") + ".png", tmp_path)
        assert None not in found["edges"].values(), (name, found)
        assert max(found["edges"].values()) <= found["width"], (name, found)
        assert found["tallest"] <= MAX_ROW_HEIGHT, (name, found)
    assert len(list(tmp_path.glob("*.png"))) == 2 + len(KEY_COLUMNS)


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
