from __future__ import annotations

import logging
from typing import Any

from django.db import DatabaseError, InterfaceError, OperationalError, connection
from django.http import HttpRequest, HttpResponse, HttpResponsePermanentRedirect
from django.templatetags.static import static
from drf_spectacular.utils import extend_schema
from rest_framework.decorators import api_view, authentication_classes, permission_classes
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import exception_handler

from outboundhq.db import once_more_if_disconnected

log = logging.getLogger(__name__)


@extend_schema(summary="Liveness and a database round trip", responses={200: dict, 503: dict})
@api_view(["GET"])
@authentication_classes([])
@permission_classes([AllowAny])
def health(request: Request) -> Response:
    """Liveness plus one `SELECT 1`: cheap enough for a load balancer to poll."""
    try:
        once_more_if_disconnected(select_one)
    except DatabaseError:
        log.warning("Health check: database unavailable")
        return Response({"status": "degraded", "database": "unavailable"}, status=503)
    return Response({"status": "ok", "database": "ok"})


def favicon(request: HttpRequest) -> HttpResponse:
    """Browsers ask for /favicon.ico on pages that name none (the API's JSON, say)."""
    return HttpResponsePermanentRedirect(static("outboundhq/favicon.svg"))


def select_one() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def json_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, plus a JSON 500 (never a traceback) for anything unexpected."""
    response = exception_handler(exc, context)
    if response is not None:
        if isinstance(response.data, dict) and "detail" in response.data:
            response.data = {
                "error": response.data["detail"],
                **{k: v for k, v in response.data.items() if k != "detail"},
            }
        return response
    view = context.get("view").__class__.__name__
    if isinstance(exc, OperationalError | InterfaceError):
        # Mostly transient (a restart, a dropped connection, a timeout): worth a retry. A real
        # bug raised this way is still logged with its traceback for us.
        log.exception("Database unavailable in %s", view)
        return Response({"error": "The database is unavailable; please retry."}, status=503)
    log.exception("Unhandled error in %s", view)
    return Response({"error": "Internal error; it has been logged."}, status=500)
