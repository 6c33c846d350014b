from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from outboundhq import dashboard, drilldown, status, views

admin.autodiscover()

urlpatterns = [
    # First: Smartlead's deliveries are most of the traffic, and URLs resolve top to bottom.
    path("", include("smartlead.urls")),
    path("health", views.health, name="health"),
    path("status", status.status, name="ops-status"),
    path("favicon.ico", views.favicon, name="favicon"),
    path(f"{settings.ADMIN_PATH}dashboard/", dashboard.dashboard, name="ops-dashboard"),
    path(f"{settings.ADMIN_PATH}sdr/<uuid:profile_id>/", drilldown.sdr_page, name="ops-sdr"),
    path(settings.ADMIN_PATH, admin.site.urls),
    path("", include("profiles.urls")),
    path("", include("sequences.urls")),
]
