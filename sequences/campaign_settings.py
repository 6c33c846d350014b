"""What every campaign of ours is set to at Smartlead, from one place: `outboundhq/settings.py`.

Provisioning's settings stage sends `wanted()`; a campaign set up before the settings changed
gets them through the outbox (`SyncAction.APPLY_SETTINGS`, sequences/outbox.py), which compares
each campaign's recorded `fingerprint()` with the current one. No model here: the outbox,
which the models import, reads this too.

Smartlead's current update-settings page lists `out_of_office_detection_settings` and
`auto_pause_domain_leads_on_reply` without their shapes; the object's four keys are the ones
integrators send in production (docs/WEBHOOKS.md, "What we rely on").
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from django.conf import settings

from smartlead.api import SmartleadClient, ValidationFailed

log = logging.getLogger(__name__)

# Names of the categories whose LEAD_CATEGORY_UPDATED events we act on (smartlead/effects.py):
# the campaign webhook's category filter must let each of them through.
WEBHOOK_CATEGORIES = (
    "Interested",
    "Meeting Request",
    "Not Interested",
    "Do Not Contact",
    "Out Of Office",
    "Information Request",
    "Wrong Person",
)


def out_of_office() -> dict[str, Any]:
    """Smartlead must not stop a lead on an auto-reply (we pause it ourselves, until the date
    the reply states) and should categorise it, so a LEAD_CATEGORY_UPDATED tells us. It must
    not reactivate it on its own either: `resume_lead_with_delay_days` counts from the lead's
    last email, not from the return date, so the backend resumes it on that date itself."""
    pause = bool(settings.SMARTLEAD_OUT_OF_OFFICE_PAUSE)
    return {
        "ignoreOOOasReply": pause,
        "autoCategorizeOOO": True,
        "autoReactivateOOO": False,
        "reactivateOOOwithDelay": None,
    }


# What every campaign had before out-of-office handling: what Smartlead is known to take.
BASE = ("stop_lead_settings", "track_settings")


def wanted() -> dict[str, Any]:
    """The body of `POST /campaigns/{id}/settings` for every campaign we provision."""
    return {
        "stop_lead_settings": "REPLY_TO_AN_EMAIL",
        "track_settings": [],
        "out_of_office_detection_settings": out_of_office(),
        "auto_pause_domain_leads_on_reply": bool(settings.SMARTLEAD_PAUSE_SAME_COMPANY_ON_REPLY),
    }


def fingerprint() -> str:
    """Names what a campaign was configured with: the settings and the webhook's categories.
    A campaign whose recorded fingerprint differs gets them again (idempotently)."""
    body = json.dumps([wanted(), WEBHOOK_CATEGORIES], sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def refused(value: str) -> str:
    """The fingerprint recorded when Smartlead refused these settings (then the base was set)."""
    return f"refused:{value}"


def apply(client: SmartleadClient, campaign_id: int) -> str:
    """Sets the campaign's settings; returns what to record as applied. The out-of-office object
    is undocumented at Smartlead: if it (or the same-company switch) is refused, the known
    settings are set without them (a campaign that cannot start is worse than one that counts
    auto-replies as replies) and the refusal is recorded, so they are not sent again."""
    body, applied = wanted(), fingerprint()
    try:
        client.update_settings(campaign_id, **body)
    except ValidationFailed as exc:
        # Only a refusal that names one of them (Joi names the key it refuses); any other is
        # the campaign's problem, and fails the stage as before.
        if not any(key in str(exc) for key in body if key not in BASE):
            raise
        log.warning("Campaign %s refused the reply settings (%s); base ones set", campaign_id, exc)
        client.update_settings(campaign_id, **{key: body[key] for key in BASE})
        return refused(applied)
    return applied
