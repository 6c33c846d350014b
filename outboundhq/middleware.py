from __future__ import annotations

import re
import uuid
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.urls import resolve, reverse

from outboundhq import logs

_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestIdMiddleware:
    """Tags every log line of a request with its id, taken from X-Request-ID when sane."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-ID", "")
        rid = incoming if _SAFE_ID.match(incoming) else uuid.uuid4().hex
        token = logs.request_id.set(rid)
        try:
            response = self.get_response(request)
        finally:
            logs.request_id.reset(token)
            logs.profile_id.set(None)
        response["X-Request-ID"] = rid
        return response


class WebhookFastPath:
    """Smartlead's deliveries go straight to their view from here, past the browser-facing
    middleware below this one (static files, CORS, sessions, CSRF, auth, messages, framing).

    They are machine to machine and most of the traffic; in a profile that middleware was about
    a fifth of a delivery's request path. Above this one they still get request ids, security
    headers and the HTTPS redirect, and here the ALLOWED_HOSTS check CommonMiddleware would
    make. The path and the view come from the URLconf, so they are defined once, in urls.py.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.path = ""
        self.view: Callable[[HttpRequest], HttpResponse] | None = None

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if self.view is None:  # the URLconf is loaded on the first request, not at start-up
            self.path = reverse("smartlead-webhook")
            self.view = resolve(self.path).func
        if request.path_info != self.path:
            return self.get_response(request)
        request.get_host()  # DisallowedHost becomes Django's 400, as on every other path
        return self.view(request)


# Scripts: our own static files only (the admin has no inline script; Swagger UI's set-up script
# is served as a file, profiles/urls.py). Styles may be inline (the dashboard's bars, Redoc's
# generated CSS): a style cannot run code. Redoc parses the schema in a web worker it starts
# from a blob: URL.
POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "worker-src 'self' blob:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)


class ContentSecurityPolicy:
    """`Content-Security-Policy` on every page the service renders: the admin, its dashboard and
    the API docs (`POLICY`). Scripts only from our own static files, so an injected `<script>` or
    `onclick=` does not run; no framing, no plugins, no `<base>`.

    Below WebhookFastPath: Smartlead's deliveries get JSON, never a page, and skip it.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", POLICY)
        return response
