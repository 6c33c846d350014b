"""The WSGI application gunicorn serves (see Procfile and gunicorn.conf.py).

Smartlead's webhook deliveries take a shorter way through the middleware
(`outboundhq.middleware.WebhookFastPath`); everything else is Django's standard handler.
"""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "outboundhq.settings")

application = get_wsgi_application()

from outboundhq.checks import fail_fast_on_bad_configuration  # noqa: E402

fail_fast_on_bad_configuration()
