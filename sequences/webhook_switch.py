"""The switch-over to per-campaign webhook URLs, done by the service itself.

Campaigns provisioned before per-campaign tokens carry a webhook at `?secret=<the server's
SMARTLEAD_WEBHOOK_SECRET>`, which works for every campaign, and their SDR can read it in their
Smartlead account. The receiver refuses it by default (SMARTLEAD_WEBHOOK_ACCEPT_LEGACY_SECRET),
so every executor run moves some of them to their own URL (`switch_some`), with each SDR's own
key, the way `manage.py resave_webhooks` does (`provisioning.ensure_webhook`): our webhook is
updated in place. A campaign whose webhook is at its token URL carries the PER_CAMPAIGN_URL mark, so
this is idempotent and costs nothing once every campaign has it. The start-up checks say how
many are left (sequences/checks.py).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from django.db.models import QuerySet

from profiles.credentials import refusal_status
from profiles.models import Profile
from sequences.models import ProvisioningState, Sequence
from sequences.provisioning import PER_CAMPAIGN_URL, ensure_webhook, receiver_url
from smartlead.api import SmartleadClient, SmartleadError

# A run spends at most this long here, so its sending goes on; the next run does the rest.
SWITCH_SECONDS = 60.0


def provisioned() -> QuerySet[Sequence]:
    """Sequences whose campaign we provisioned (or adopted): those with a webhook of ours."""
    return Sequence.objects.filter(
        provisioning__state=ProvisioningState.READY,
        provisioning__campaign_id__isnull=False,
    ).select_related("provisioning")


def by_sdr(sequences: Iterable[Sequence]) -> dict[Any, list[Sequence]]:
    grouped: dict[Any, list[Sequence]] = defaultdict(list)
    for sequence in sequences:
        grouped[sequence.created_by_id].append(sequence)
    return grouped


def left(user_id: Any = None) -> list[Sequence]:
    """Sequences whose campaign's webhook may still be at the global secret's URL, oldest
    first: provisioned campaigns without the PER_CAMPAIGN_URL mark."""
    sequences = provisioned().order_by("provisioning__updated_at", "id")
    if user_id:
        sequences = sequences.filter(created_by_id=user_id)
    # JSON containment is not portable (SQLite), and the mark is read from few rows once done.
    return [s for s in sequences if PER_CAMPAIGN_URL not in (s.provisioning.completed_stages or [])]


def switch_some(deadline: float, user_id: Any = None) -> list[str]:
    """Moves campaigns' webhooks to their own URL until SWITCH_SECONDS (or the run's deadline)
    are spent; returns what failed, in words. SDRs who cannot send wait until they can."""
    if receiver_url() is None:
        return []  # nothing can be registered yet; provisioning says so per campaign
    waiting = by_sdr(left(user_id))
    stop = min(deadline, time.monotonic() + SWITCH_SECONDS)
    errors: list[str] = []
    for sender in Profile.objects.senders(waiting):
        if sender.credentials is None:
            continue
        with SmartleadClient(sender.credentials.api_key, deadline=stop) as client:
            for sequence in waiting[sender.profile_id]:
                if time.monotonic() >= stop:
                    return errors
                try:
                    ensure_webhook(sequence, client, resave=True)
                except SmartleadError as exc:
                    campaign = sequence.provisioning.campaign_id
                    errors.append(f"Campaign {campaign}'s webhook not moved to its own URL: {exc}")
                    if refusal_status(exc) is not None:
                        break  # the key is refused: its other campaigns would be too
    return errors
