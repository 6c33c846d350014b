from __future__ import annotations

from django.urls import URLPattern, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from profiles import views

urlpatterns: list[URLPattern] = [
    path("api/smartlead/connection", views.connection, name="smartlead-connection"),
    path(
        "api/smartlead/connection/email-account",
        views.email_account,
        name="smartlead-email-account",
    ),
    # The schema is plain JSON/YAML and works offline. The two pages load their JavaScript
    # from a CDN (drf-spectacular-sidecar is not installed), so they need a browser online.
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="api-redoc"),
]
