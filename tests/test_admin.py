"""Every admin page opens, never shows a full key, and lists cost a fixed number of queries."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.staticfiles import finders
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

import outboundhq.urls  # noqa: F401 - discovers the admin pages, as serving a request would
from tests.factories import make_enrollment, make_profile, make_sequence

pytestmark = pytest.mark.django_db

FULL_KEY = "sl-live-key-THIS-MUST-NEVER-RENDER-9z8y"


def populate(n: int = 3) -> None:
    for _ in range(n):
        sdr = make_profile(smartlead_api_key=FULL_KEY)
        sequence = make_sequence(creator=sdr)
        for _ in range(2):
            make_enrollment(sequence=sequence)


def all_registered() -> list[tuple[str, str]]:
    return [(m._meta.app_label, m._meta.model_name) for m in admin.site._registry]


@pytest.mark.parametrize("app_label,model_name", all_registered())
def test_every_changelist_and_add_page_opens(admin_client, app_label, model_name):
    populate(2)
    changelist = admin_client.get(reverse(f"admin:{app_label}_{model_name}_changelist"))
    assert changelist.status_code == 200
    assert FULL_KEY not in changelist.content.decode()
    model = next(m for m in admin.site._registry if m._meta.model_name == model_name)
    if admin.site._registry[model].has_add_permission(changelist.wsgi_request):
        assert admin_client.get(reverse(f"admin:{app_label}_{model_name}_add")).status_code == 200
    obj = model._default_manager.first()
    if obj is not None:
        page = admin_client.get(reverse(f"admin:{app_label}_{model_name}_change", args=[obj.pk]))
        assert page.status_code == 200
        assert FULL_KEY not in page.content.decode()


def test_profile_pages_show_only_the_last_four_characters(admin_client):
    profile = make_profile(smartlead_api_key=FULL_KEY)
    listing = admin_client.get(reverse("admin:profiles_profile_changelist")).content.decode()
    change = admin_client.get(
        reverse("admin:profiles_profile_change", args=[profile.pk])
    ).content.decode()
    for page in (listing, change):
        assert FULL_KEY not in page and FULL_KEY[:-4] not in page
        assert "…9z8y" in page


def test_profile_list_filters_by_smartlead_status(admin_client):
    make_profile(email="keyless@example.test", connected=False)
    make_profile(email="withkey@example.test")
    url = reverse("admin:profiles_profile_changelist")
    page = admin_client.get(url, {"smartlead": "no_api_key"}).content.decode()
    assert "keyless@example.test" in page and "withkey@example.test" not in page
    assert "No API key" in page


def test_profile_search_finds_by_email_and_name(admin_client):
    make_profile(email="findme@example.test", first_name="Zelda")
    make_profile(email="other@example.test", first_name="Otto")
    url = reverse("admin:profiles_profile_changelist")
    assert "findme@" in admin_client.get(url, {"q": "Zelda"}).content.decode()
    assert "findme@" not in admin_client.get(url, {"q": "Otto"}).content.decode()


def test_enrollments_search_by_contact_email(admin_client):
    sequence = make_sequence(creator=make_profile())
    target = make_enrollment(sequence=sequence)
    make_enrollment(sequence=sequence)
    url = reverse("admin:sequences_enrollment_changelist")
    page = admin_client.get(url, {"q": target.contact.email}).content.decode()
    assert "1 enrollment" in page or "1 result" in page


@pytest.mark.parametrize("app_label,model_name", all_registered())
def test_list_pages_cost_the_same_queries_whatever_their_size(admin_client, app_label, model_name):
    url = reverse(f"admin:{app_label}_{model_name}_changelist")
    populate(2)
    admin_client.get(url)
    with CaptureQueriesContext(connection) as small:
        admin_client.get(url)
    populate(6)
    with CaptureQueriesContext(connection) as large:
        admin_client.get(url)
    assert len(large) == len(small), [q["sql"] for q in large.captured_queries]


def test_the_admin_is_branded_and_lists_our_sections_first(admin_client):
    response = admin_client.get(reverse("admin:index"))
    page = response.content.decode()
    assert "<title>Sending, webhooks and SDRs | OutboundHQ</title>" in page
    assert '<div id="site-name"><a href="/admin/">OutboundHQ</a></div>' in page
    labels = [app["app_label"] for app in response.context["app_list"]]
    ours = ["sequences", "smartlead", "profiles", "outboundhq"]
    assert labels[: len(ours)] == ours and {"auth", "axes", "django_q"} <= set(labels[4:])


def test_there_is_no_view_site_404_and_the_header_links_the_dashboard(admin_client, client):
    page = admin_client.get(reverse("admin:index")).content.decode()
    assert "View site" not in page
    assert f'<a href="{reverse("ops-dashboard")}">Ops dashboard</a>' in page
    assert client.get("/").status_code == 404  # nothing pretends to be a site


def test_every_admin_page_names_a_favicon_that_loads(admin_client, client):
    page = admin_client.get(reverse("admin:sequences_push_changelist")).content.decode()
    assert 'rel="icon" href="/static/outboundhq/favicon.svg"' in page
    assert finders.find("outboundhq/favicon.svg")  # collected and served like the rest
    assert client.get("/favicon.ico")["Location"] == "/static/outboundhq/favicon.svg"
