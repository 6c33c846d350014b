from __future__ import annotations

from django.urls import URLPattern, path
from drf_spectacular.views import (
    SpectacularAPIView,
    SpectacularRedocView,
    SpectacularSwaggerSplitView,
)

from profiles import views

urlpatterns: list[URLPattern] = [
    path("api/smartlead/connection", views.connection, name="smartlead-connection"),
    path(
        "api/smartlead/connection/email-account",
        views.email_account,
        name="smartlead-email-account",
    ),
    # The two pages load their JavaScript and CSS from this app's static files
    # (drf-spectacular-sidecar, SPECTACULAR_SETTINGS), never from a CDN. The split view serves
    # Swagger UI's set-up script as a file (?script): no inline script for the CSP to allow.
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="api-docs"),
    path(
        "api/redoc/",
        SpectacularRedocView.as_view(url_name="schema", template_name="outboundhq/redoc.html"),
        name="api-redoc",
    ),
]
