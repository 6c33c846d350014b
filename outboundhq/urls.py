from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from outboundhq import views

admin.autodiscover()

urlpatterns = [
    # First: Smartlead's deliveries are most of the traffic, and URLs resolve top to bottom.
    path("", include("smartlead.urls")),
    path("health", views.health, name="health"),
    path("admin/", admin.site.urls),
    path("", include("profiles.urls")),
    path("", include("sequences.urls")),
]
