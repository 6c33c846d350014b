"""The WSGI application gunicorn serves (see Procfile).

Smartlead's webhook deliveries are the only high-volume traffic, machine to machine, and need
none of the browser-facing middleware (sessions, CSRF, auth, messages, CORS, static files,
framing). `settings.WEBHOOK_PATH` goes to a second Django handler built with just
`settings.WEBHOOK_MIDDLEWARE`. It is still Django throughout (URL resolving, request signals,
connection handling, error responses); in a profile the skipped middleware was about a fifth of
a delivery's request path. Every other path goes through settings.MIDDLEWARE.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "outboundhq.settings")

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class WebhookHandler(WSGIHandler):
    """A Django handler whose middleware chain is `settings.WEBHOOK_MIDDLEWARE`.

    Django builds a handler's chain from settings.MIDDLEWARE once, when the handler is created
    (at import, before any request): the list is swapped for exactly that call.
    """

    def load_middleware(self, is_async: bool = False) -> None:
        full = settings.MIDDLEWARE
        settings.MIDDLEWARE = settings.WEBHOOK_MIDDLEWARE
        try:
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = full


def by_path(default: WSGIApp, webhooks: WSGIApp) -> WSGIApp:
    webhook_path = settings.WEBHOOK_PATH

    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        handler = webhooks if environ.get("PATH_INFO") == webhook_path else default
        return handler(environ, start_response)

    return application


application = by_path(get_wsgi_application(), WebhookHandler())

from outboundhq.checks import fail_fast_on_bad_configuration  # noqa: E402

fail_fast_on_bad_configuration()
