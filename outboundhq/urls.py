from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from outboundhq import views

admin.autodiscover()

urlpatterns = [
    path("health", views.health, name="health"),
    path("admin/", admin.site.urls),
    path("", include("profiles.urls")),
    path("", include("sequences.urls")),
    path("", include("smartlead.urls")),
]
