from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from outboundhq import dashboard, views

admin.autodiscover()
admin.site.index_template = "admin/outboundhq/index.html"  # links the ops dashboard

urlpatterns = [
    # First: Smartlead's deliveries are most of the traffic, and URLs resolve top to bottom.
    path("", include("smartlead.urls")),
    path("health", views.health, name="health"),
    path(f"{settings.ADMIN_PATH}dashboard/", dashboard.dashboard, name="ops-dashboard"),
    path(settings.ADMIN_PATH, admin.site.urls),
    path("", include("profiles.urls")),
    path("", include("sequences.urls")),
]
