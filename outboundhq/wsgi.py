"""The WSGI application gunicorn serves (see Procfile).

Smartlead's webhooks are the only high-volume traffic, machine to machine, and need none of the
browser-facing middleware (sessions, CSRF, auth, messages, CORS, static files, framing): paths
under /webhooks/ go to a second Django handler built with just `WEBHOOK_MIDDLEWARE`. It is still
Django throughout (URL resolving, request signals, connection handling, the 404/500 views); it
only skips middleware that has nothing to do there, which is about a fifth of a delivery's cost
in the request path (docs/PERFORMANCE.md). Everything else goes through settings.MIDDLEWARE.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "outboundhq.settings")

WEBHOOK_PREFIX = "/webhooks/"
# Request ids for the logs, and the security headers every response carries.
WEBHOOK_MIDDLEWARE = [
    "outboundhq.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
]


class WebhookHandler(WSGIHandler):
    """A Django handler whose middleware chain is `WEBHOOK_MIDDLEWARE`.

    Django builds a handler's chain from settings.MIDDLEWARE once, when the handler is created
    (at import, before any request): the list is swapped for exactly that call.
    """

    def load_middleware(self, is_async: bool = False) -> None:
        full = settings.MIDDLEWARE
        settings.MIDDLEWARE = WEBHOOK_MIDDLEWARE
        try:
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = full


def by_path(
    default: WSGIHandler, webhooks: WSGIHandler
) -> Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]:
    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        handler = webhooks if environ.get("PATH_INFO", "").startswith(WEBHOOK_PREFIX) else default
        return handler(environ, start_response)

    return application


application = by_path(get_wsgi_application(), WebhookHandler())

from outboundhq.checks import fail_fast_on_bad_configuration  # noqa: E402

fail_fast_on_bad_configuration()
