"""Admin beyond one app: the login throttle's client address, django-q2's schedules, and the
verdicts' memory (what each job was last judged, and what the last alert said)."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest
from django_q.admin import ScheduleAdmin
from django_q.models import Schedule

from outboundhq.models import VerdictState
from sequences.admin import ReadOnlyAdmin


def client_ip(request: HttpRequest) -> str | None:
    """The address django-axes counts failed logins by.

    In production every request comes through Railway's proxy, so REMOTE_ADDR is the proxy's
    and would lock everyone out at once; the proxy appends the real client to X-Forwarded-For,
    so the last entry is the one it vouches for (earlier ones are whatever the client sent).
    """
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if settings.SECURE_PROXY_SSL_HEADER and forwarded.strip():
        return forwarded.split(",")[-1].strip()
    return request.META.get("REMOTE_ADDR")


admin.site.unregister(Schedule)


@admin.register(Schedule)
class SuperuserScheduleAdmin(ScheduleAdmin):
    """A schedule names any importable function and its arguments, which the worker then runs:
    only superusers may create, change or delete one. Other staff can still look."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser

    def has_change_permission(self, request: HttpRequest, obj: Schedule | None = None) -> bool:
        return request.user.is_superuser

    def has_delete_permission(self, request: HttpRequest, obj: Schedule | None = None) -> bool:
        return request.user.is_superuser


@admin.register(VerdictState)
class VerdictStateAdmin(ReadOnlyAdmin):
    """Each job's last verdict, since when, and what the last alert announced: the `send-alerts`
    check writes it."""

    list_display = ["name", "status", "since", "detail", "announced", "announced_at", "checked_at"]
    list_filter = ["status"]
    search_fields = ["name", "key"]
