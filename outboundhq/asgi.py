from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "outboundhq.settings")
application = get_asgi_application()

from outboundhq.checks import fail_fast_on_bad_configuration  # noqa: E402

fail_fast_on_bad_configuration()
