from __future__ import annotations

from django.urls import URLPattern, path

from smartlead import views

urlpatterns: list[URLPattern] = [
    path("webhooks/smartlead", views.smartlead_webhook, name="smartlead-webhook"),
]
