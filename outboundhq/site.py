"""The admin site: OutboundHQ's name, our sections before third-party ones, the dashboard as
the site link (there is no public site, so Django's "View site" would be a 404)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.apps import SimpleAdminConfig
from django.contrib.admin.views.autocomplete import AutocompleteJsonView
from django.http import HttpRequest, HttpResponse

# Ours, in the order ops reach for them; everything else (auth, axes, django-q2) after.
OUR_APPS = ("sequences", "smartlead", "profiles", "outboundhq")


class OutboundHQAdminConfig(SimpleAdminConfig):
    """Django's admin (modules discovered by outboundhq/urls.py) with the site below. Here, not
    in outboundhq/apps.py, where a second AppConfig would hide the app's own."""

    default_site = "outboundhq.site.OutboundHQAdminSite"


class OutboundHQAdminSite(admin.AdminSite):
    site_header = "OutboundHQ"
    site_title = "OutboundHQ"
    index_title = "Sending, webhooks and SDRs"
    site_url = None  # the header links the ops dashboard instead (admin/base_site.html)
    index_template = "admin/outboundhq/index.html"
    # The lists need the width at 1400 px (the key columns must show without scrolling); the
    # home page and the breadcrumbs lead everywhere the sidebar did.
    enable_nav_sidebar = False

    def get_app_list(self, request: HttpRequest, app_label: str | None = None) -> list[Any]:
        apps = super().get_app_list(request, app_label)
        return sorted(apps, key=lambda app: rank(app["app_label"]))

    def autocomplete_view(self, request: HttpRequest) -> HttpResponse:
        return LabelledAutocomplete.as_view(admin_site=self)(request)


def label_of(obj: Any) -> str:
    """What a look-up shows: an SDR's email and name (`Profile.label`), else the record."""
    return str(getattr(obj, "label", obj))


class LabelledAutocomplete(AutocompleteJsonView):
    """The admin's look-up, naming SDRs by email and name, so "Ana" finds and shows Ana."""

    def serialize_result(self, obj: Any, to_field_name: str) -> dict[str, str]:
        return {"id": str(getattr(obj, to_field_name)), "text": label_of(obj)}


def rank(app_label: str) -> tuple[int, str]:
    if app_label in OUR_APPS:
        return (OUR_APPS.index(app_label), "")
    return (len(OUR_APPS), app_label)
