"""An SDR connects a key of another Smartlead account: their old campaigns stop first.

The campaigns provisioned with the old key live in the old account. The new key cannot reach
them (Smartlead answers 404), so nothing could pause them afterwards and they would go on
sending. Before the new key is saved (`changing_key`, profiles/models.py), the campaigns the new
key does not see are paused with the old key while it still works, as disconnecting does, and
their sequences need attention: nothing more is sent for them until ops re-provision them
(admin). Campaigns the new key sees (the same account, a regenerated key) are left running.
"""

from __future__ import annotations

import logging

from profiles.credentials import interactive_client
from profiles.models import Profile
from sequences.models import CampaignProvisioning, ProvisioningState
from sequences.provisioning import needs_attention
from sequences.sync import pause_before_disconnect
from smartlead.api import SmartleadError

log = logging.getLogger(__name__)

OCCASION = "the SDR connected a key of another Smartlead account"


def leave_behind(profile: Profile, old_key: str, new_key: str) -> list[str]:
    """Pauses (old key) the SDR's campaigns the new key does not see and marks their sequences
    as needing attention; returns the campaigns Smartlead did not pause, in words."""
    records = list(
        CampaignProvisioning.objects.filter(
            sequence__created_by=profile,
            state=ProvisioningState.READY,
            campaign_id__isnull=False,
        )
    )
    if not records:
        return []
    try:
        with interactive_client(new_key) as client:
            seen = {campaign.id for campaign in client.list_campaigns()}
    except SmartleadError:
        # Cannot tell which account the key opens: pause them all while the old key works. The
        # next run starts again, with the new key, those of active sequences it can reach, and
        # the others' 404 marks them as needing attention (sequences/sync.py).
        return pause_before_disconnect(profile, old_key, occasion=OCCASION)
    behind = [r for r in records if r.campaign_id not in seen]
    if not behind:
        return []
    failed = pause_before_disconnect(
        profile, old_key, only={r.campaign_id for r in behind}, occasion=OCCASION
    )
    for record in behind:
        needs_attention(
            record.sequence_id,
            f"The SDR's key now opens another Smartlead account, which does not have campaign "
            f"{record.campaign_id}: it was paused with the old key (see the outbox) and nothing "
            "more is sent for this sequence until it is re-provisioned from the admin.",
        )
    return failed


def on_key_change(
    sender: object, *, profile: Profile, old_key: str, new_key: str, **_: object
) -> None:
    """The `changing_key` signal: never stops the connect itself (the SDR asked for it)."""
    try:
        failed = leave_behind(profile, old_key, new_key)
    except Exception:  # noqa: BLE001 - the new key is saved whatever Smartlead does
        log.exception("Pausing user %s's old campaigns before their key changed failed", profile.pk)
        return
    for failure in failed:
        log.warning(
            "User %s connected another account's key; %s was not paused", profile.pk, failure
        )
