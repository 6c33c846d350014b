"""GET /status: every job's verdict as JSON, for an uptime monitor to poll.

`/health` stays the platform's liveness probe (one `SELECT 1`, no authentication): this one says
whether the jobs behind sending are healthy, which is ops' business, so it needs the status
token (`Authorization: Bearer <HEALTH_STATUS_TOKEN>`) or a staff login that may see the
dashboard. 200 while every verdict is OK, 503 when any is late or failing, so a monitor that
only reads status codes alerts too.
"""

from __future__ import annotations

import hmac
from typing import Any

from django.conf import settings
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions
from rest_framework.authentication import (
    BaseAuthentication,
    SessionAuthentication,
    get_authorization_header,
)
from rest_framework.decorators import api_view, authentication_classes, permission_classes
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response

from outboundhq.health import sees_ops, worst
from outboundhq.models import Status
from outboundhq.verdicts import all_verdicts

MONITOR = "status-token"


class StatusToken(BaseAuthentication):
    """The monitor's bearer token. None when no bearer token is offered (a staff session may
    still be), an error when a wrong one is."""

    def authenticate(self, request: Request) -> tuple[None, str] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != b"bearer":
            return None
        expected = settings.HEALTH_STATUS_TOKEN.encode()
        if len(parts) != 2 or not expected or not hmac.compare_digest(parts[1], expected):
            raise exceptions.AuthenticationFailed("Wrong status token.")
        return None, MONITOR

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="status"'


class StatusTokenScheme(OpenApiAuthenticationExtension):
    """How the OpenAPI schema describes the status token."""

    target_class = "outboundhq.status.StatusToken"
    name = "StatusToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "HEALTH_STATUS_TOKEN, for uptime monitors (or a staff session).",
        }


class MonitorOrStaff(BasePermission):
    message = (
        "Send 'Authorization: Bearer <HEALTH_STATUS_TOKEN>', or sign in to the admin as staff "
        "who may see the dashboard."
    )

    def has_permission(self, request: Request, view: Any) -> bool:
        return request.auth == MONITOR or sees_ops(request.user)


@extend_schema(summary="Every job's health verdict (for uptime monitors)", responses={200: dict})
@api_view(["GET"])
@authentication_classes([StatusToken, SessionAuthentication])
@permission_classes([MonitorOrStaff])
def status(request: Request) -> Response:
    now = timezone.now()
    verdicts = all_verdicts(now)
    overall = worst(verdicts)
    counts = {s.value: sum(1 for v in verdicts if v.status == s) for s in Status}
    body = {
        "status": overall.value,
        "checked_at": now.isoformat(),
        "counts": counts,
        "jobs": [v.as_dict(now) for v in verdicts],
    }
    return Response(body, status=200 if overall == Status.OK else 503)
