from __future__ import annotations

from django.urls import URLPattern, path

from sequences import views

urlpatterns: list[URLPattern] = [
    # The web app's sequence actions (Supabase-authenticated).
    path("api/sequences/<uuid:id>/activate", views.activate, name="sequence-activate"),
    path("api/sequences/<uuid:id>/pause", views.pause, name="sequence-pause"),
    # The executor, for an external scheduler; django-q2 runs it every 15 minutes anyway.
    path("cron/execute-sequences", views.execute_sequences, name="cron-execute-sequences"),
]
