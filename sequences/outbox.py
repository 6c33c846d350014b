"""The outbox's rules over many rows: which changes made in the app Smartlead has not learnt yet.

Nothing here calls Smartlead (sequences/sync.py does). What Smartlead has is read from our own
records, never assumed: a lead is in a campaign when the ledger says `pushed`; what state it
is in there is the last outbox change about it (none: sending); a campaign is running when its
provisioning started it, or the last campaign change says so. What the app wants is read from
the hosted tables, which the web app writes directly, so a change made there without our API is
found as well:

| the app says | Smartlead gets |
|---|---|
| an opt-out happened here (sequences/optouts.py) | the lead unsubscribed in the campaign |
| the contact opted out elsewhere (`unsubscribed` here too) | the lead paused (undoable) |
| the enrollment is paused | the lead paused; active again: resumed where it stopped |
| the enrollment is gone (deleted) | the lead removed from the campaign |
| the sequence is not active (paused, archived, draft) | the campaign paused; active: started |
| the SDR's healthy mailboxes changed | the campaign's made the same, leads moved off the rest |
| the campaign settings changed (sequences/campaign_settings.py) | the campaign's settings |
"""

from __future__ import annotations

import uuid
from typing import Any

from django.apps import apps
from django.db import models, transaction
from django.db.models import Exists, OuterRef, Q

from sequences import campaign_settings
from sequences.choices import (
    EngagementType,
    EnrollmentStatus,
    ProvisioningState,
    PushState,
    SequenceStatus,
    SyncAction,
    SyncState,
)

LEAD_ACTIONS = (
    SyncAction.PAUSE_LEAD,
    SyncAction.RESUME_LEAD,
    SyncAction.UNSUBSCRIBE_LEAD,
    SyncAction.REMOVE_LEAD,
)
CAMPAIGN_ACTIONS = (SyncAction.PAUSE_CAMPAIGN, SyncAction.RESUME_CAMPAIGN)
MAILBOX_ACTIONS = (SyncAction.SYNC_MAILBOXES, SyncAction.MOVE_MAILBOX)
# What a lead (or campaign) is at Smartlead after each action. These words are the outbox's own
# (what Smartlead has), not enrollment statuses.
ACTIVE, PAUSED, UNSUBSCRIBED, REMOVED = "active", "paused", "unsubscribed", "removed"
AFTER = {
    SyncAction.PAUSE_LEAD: PAUSED,
    SyncAction.RESUME_LEAD: ACTIVE,
    SyncAction.UNSUBSCRIBE_LEAD: UNSUBSCRIBED,
    SyncAction.REMOVE_LEAD: REMOVED,
    SyncAction.PAUSE_CAMPAIGN: PAUSED,
    SyncAction.RESUME_CAMPAIGN: ACTIVE,
}
ENDED = (UNSUBSCRIBED, REMOVED)  # nothing more can happen to such a lead there
# The lead action that gets a lead from what it is at Smartlead to what the app wants.
TO_GET = {
    REMOVED: SyncAction.REMOVE_LEAD,
    UNSUBSCRIBED: SyncAction.UNSUBSCRIBE_LEAD,
    PAUSED: SyncAction.PAUSE_LEAD,
    ACTIVE: SyncAction.RESUME_LEAD,
}


def _model(name: str) -> type[models.Model]:
    return apps.get_model("sequences", name)


class SyncChangeQuerySet(models.QuerySet):
    def open(self) -> SyncChangeQuerySet:
        return self.filter(state=SyncState.PENDING)

    def request(
        self,
        action: str,
        *,
        sequence_id: uuid.UUID,
        profile_id: uuid.UUID,
        campaign_id: int,
        enrollment_id: uuid.UUID | None = None,
        email: str = "",
        mailbox_id: int | None = None,
    ) -> Any:
        """One pending change for this target: the same one if it is already waiting; any other
        waiting change of the same target (a pause before this resume) is superseded."""
        if action in LEAD_ACTIONS:
            target = Q(enrollment_id=enrollment_id, action__in=LEAD_ACTIONS)
        elif action in CAMPAIGN_ACTIONS:
            target = Q(action__in=CAMPAIGN_ACTIONS)
        else:
            target = Q(action=action)
        waiting = self.open().filter(target, campaign_id=campaign_id)
        with transaction.atomic():
            same = waiting.filter(action=action, mailbox_id=mailbox_id).first()
            if same is not None:
                return same
            waiting.update(state=SyncState.SUPERSEDED)
            return self.create(
                action=action,
                sequence_id=sequence_id,
                profile_id=profile_id,
                campaign_id=campaign_id,
                enrollment_id=enrollment_id,
                email=email,
                mailbox_id=mailbox_id,
            )

    def known_lead_states(self, pairs: set[tuple[uuid.UUID, int]]) -> dict[tuple, str]:
        """What each (enrollment, campaign) is at Smartlead after the last change we asked for
        (pending or done); absent: sending, as pushed."""
        enrollment_ids = {e for e, _ in pairs}
        rows = (
            self.filter(enrollment_id__in=enrollment_ids, action__in=LEAD_ACTIONS)
            .exclude(state=SyncState.SUPERSEDED)
            .order_by("enrollment_id", "campaign_id", "-id")
            .values_list("enrollment_id", "campaign_id", "action")
        )
        known: dict[tuple, str] = {}
        for enrollment_id, campaign_id, action in rows:
            known.setdefault((enrollment_id, campaign_id), AFTER[action])
        return known

    def known_campaign_states(self, campaign_ids: set[int]) -> dict[int, str]:
        rows = (
            self.filter(campaign_id__in=campaign_ids, action__in=CAMPAIGN_ACTIONS)
            .exclude(state=SyncState.SUPERSEDED)
            .order_by("campaign_id", "-id")
            .values_list("campaign_id", "action")
        )
        known: dict[int, str] = {}
        for campaign_id, action in rows:
            known.setdefault(campaign_id, AFTER[action])
        return known


def lead_changes_due(scope: Q) -> list[dict[str, Any]]:
    """The lead changes Smartlead has not been asked for yet, as `SyncChange.request` kwargs.

    Only leads the ledger has in a campaign are looked at, and of those only the few that can
    need a change, each found by its own query (an OR of them would make Postgres probe every
    ledger row), the first that finds a lead deciding: where an opt-out happened, enrollments an
    opt-out ended elsewhere, paused enrollments, enrollments we paused at Smartlead that are
    active again, and ledger rows whose enrollment is gone. A lead Smartlead unsubscribed
    itself (its `email_unsubscribed` engagement) is not told again.
    """
    Enrollment, Push, SyncChange = _model("Enrollment"), _model("Push"), _model("SyncChange")
    Engagement, OptOut = _model("Engagement"), _model("OptOut")
    from_smartlead = Engagement.objects.filter(
        enrollment_id=OuterRef("pk"), engagement_type=EngagementType.EMAIL_UNSUBSCRIBED
    )
    paused_by_us = SyncChange.objects.filter(action=SyncAction.PAUSE_LEAD).exclude(
        state=SyncState.SUPERSEDED
    )
    opted_out = Q(status=EnrollmentStatus.UNSUBSCRIBED) | Q(contact__unsubscribed_at__isnull=False)
    wanted_by_query = [
        (
            UNSUBSCRIBED,
            OptOut.objects.live().where_it_happened().exclude(Exists(from_smartlead)).values("pk"),
        ),
        (PAUSED, Enrollment.objects.filter(opted_out).exclude(Exists(from_smartlead)).values("pk")),
        (PAUSED, Enrollment.objects.filter(status=EnrollmentStatus.PAUSED).values("pk")),
        (
            ACTIVE,
            Enrollment.objects.filter(
                status=EnrollmentStatus.ACTIVE, pk__in=paused_by_us.values("enrollment_id")
            ).values("pk"),
        ),
    ]
    pushed = Push.objects.filter(scope, state=PushState.PUSHED)
    fields = ("enrollment_id", "campaign_id", "sequence_id", "profile_id", "email")
    found: dict[tuple, tuple[str, dict]] = {}
    for wanted, ids in wanted_by_query:
        for row in pushed.filter(enrollment_id__in=ids).values(*fields):
            found.setdefault((row["enrollment_id"], row["campaign_id"]), (wanted, row))
    gone = pushed.filter(~Exists(Enrollment.objects.filter(pk=OuterRef("enrollment_id"))))
    for row in gone.values(*fields):
        found[row["enrollment_id"], row["campaign_id"]] = (REMOVED, row)
    known = SyncChange.objects.known_lead_states(set(found))
    due = []
    for key, (wanted, row) in found.items():
        action = _lead_action(known.get(key, ACTIVE), wanted)
        if action:
            due.append({"action": action, **row})
    return due


def _lead_action(now: str, wanted: str) -> str | None:
    if now == wanted or now in ENDED:
        return None
    return TO_GET[wanted]


def campaign_changes_due(scope: Q) -> list[dict[str, Any]]:
    """Campaign pauses, starts and mailbox changes Smartlead has not been asked for yet."""
    CampaignProvisioning, SyncChange = _model("CampaignProvisioning"), _model("SyncChange")
    records = list(
        CampaignProvisioning.objects.filter(
            scope, state=ProvisioningState.READY, campaign_id__isnull=False
        )
        .select_related("sequence__created_by")
        .prefetch_related("sequence__created_by__mailboxes")
        .exclude(sequence__created_by__isnull=True)
    )
    known = SyncChange.objects.known_campaign_states({r.campaign_id for r in records})
    syncing = set(
        SyncChange.objects.open()
        .filter(action__in=MAILBOX_ACTIONS, campaign_id__in=[r.campaign_id for r in records])
        .values_list("campaign_id", flat=True)
    )
    due = []
    for record in records:
        sequence = record.sequence
        base = {
            "sequence_id": sequence.pk,
            "profile_id": sequence.created_by_id,
            "campaign_id": record.campaign_id,
        }
        now = known.get(record.campaign_id, campaign_state(record))
        wanted = ACTIVE if sequence.status == SequenceStatus.ACTIVE else PAUSED
        if wanted == PAUSED and now == ACTIVE:
            due.append({"action": SyncAction.PAUSE_CAMPAIGN, **base})
        elif wanted == ACTIVE and now != ACTIVE:
            due.append({"action": SyncAction.RESUME_CAMPAIGN, **base})
        if record.campaign_id not in syncing and mailboxes_due(record, sequence.created_by):
            due.append({"action": SyncAction.SYNC_MAILBOXES, **base})
    return due


def mailboxes_due(record: Any, profile: Any) -> bool:
    """The SDR's healthy mailboxes are not those the campaign was last brought in line with. A
    campaign adopted with no mailbox of ours on record, or an SDR with none chosen, is left
    alone."""
    known = record.mailbox_ids
    if known is None:
        known = [record.mailbox_id] if record.mailbox_id else None
    if known is None or not profile.mailbox_rows():
        return False
    return set(profile.healthy_mailbox_ids()) != set(known)


def campaign_state(record: Any) -> str:
    """What a campaign is at Smartlead by its provisioning alone: running once started."""
    return ACTIVE if "started" in record.completed_stages else "not started"


def settings_changes_due(scope: Q) -> list[dict[str, Any]]:
    """Campaigns we set up whose settings are not the current ones (provisioned before they
    changed, or before there were out-of-office settings): each gets them once. One whose
    settings Smartlead refused is not asked again until they change."""
    CampaignProvisioning, SyncChange = _model("CampaignProvisioning"), _model("SyncChange")
    current = campaign_settings.fingerprint()
    records = (
        CampaignProvisioning.objects.filter(
            scope, state=ProvisioningState.READY, campaign_id__isnull=False
        )
        .exclude(settings_applied__in=[current, campaign_settings.refused(current)])
        .exclude(sequence__created_by__isnull=True)
        .values_list("sequence_id", "sequence__created_by_id", "campaign_id", "completed_stages")
    )
    waiting = set(
        SyncChange.objects.open()
        .filter(action=SyncAction.APPLY_SETTINGS)
        .values_list("campaign_id", flat=True)
    )
    return [
        {
            "action": SyncAction.APPLY_SETTINGS,
            "sequence_id": sequence_id,
            "profile_id": profile_id,
            "campaign_id": campaign_id,
        }
        for sequence_id, profile_id, campaign_id, stages in records
        # Only campaigns whose settings we set: an adopted one keeps its owner's.
        if "settings" in (stages or []) and campaign_id not in waiting
    ]
