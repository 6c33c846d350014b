"""Admin beyond one app: the login throttle's client address, django-q2's schedules and tasks
(superusers only may change or resubmit them), and the verdicts' memory (what each job was last
judged, and what the last alert said)."""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest
from django_q.admin import FailAdmin, ScheduleAdmin, TaskAdmin
from django_q.models import Failure, Schedule, Success

from outboundhq.listing import ReadOnlyAdmin
from outboundhq.models import VerdictState


def client_ip(request: HttpRequest) -> str | None:
    """The address django-axes counts failed logins by.

    In production every request comes through Railway's proxy, so REMOTE_ADDR is the proxy's
    and would lock everyone out at once; the proxy appends the address it saw to
    X-Forwarded-For. The header is believed only from a trusted proxy (TRUSTED_PROXIES), and
    read from the right: the first entry no trusted proxy wrote is the client. Anything a
    client puts in it itself, or sends straight to gunicorn, counts for nothing.
    """
    remote = request.META.get("REMOTE_ADDR", "")
    if not _trusted(remote):
        return remote or None
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
    for hop in reversed([h.strip() for h in forwarded if h.strip()]):
        if not _trusted(hop):
            return hop if _address(hop) is not None else remote
    return remote


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _trusted(text: str) -> bool:
    address = _address(text)
    return address is not None and any(address in net for net in settings.TRUSTED_PROXIES)


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


class SuperuserResubmit:
    """django-q2's "Resubmit selected tasks" queues a stored task's function again (the
    executor, the reconcile pass, or whatever function a task names): superusers only, as for
    schedules. Other staff can still look; without the action in the list Django refuses it."""

    def get_actions(self, request: HttpRequest) -> dict:
        actions = super().get_actions(request)
        if not request.user.is_superuser:
            actions.pop("resubmit_task", None)
        return actions


admin.site.unregister(Success)
admin.site.unregister(Failure)


@admin.register(Success)
class SuccessAdmin(SuperuserResubmit, TaskAdmin):
    pass


@admin.register(Failure)
class FailureAdmin(SuperuserResubmit, FailAdmin):
    pass


@admin.register(VerdictState)
class VerdictStateAdmin(ReadOnlyAdmin):
    """Each job's last verdict, since when, and what the last alert announced: the `send-alerts`
    check writes it."""

    list_display = ["name", "status", "since", "detail", "announced", "announced_at", "checked_at"]
    list_filter = ["status"]
    search_fields = ["name", "key"]
