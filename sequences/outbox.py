"""The outbox's rules over many rows: which changes made in the app Smartlead has not learnt yet.

Nothing here calls Smartlead (sequences/sync.py does). What Smartlead has is read from our own
records, never assumed: a lead is in a campaign when the ledger says `pushed`; what state it
is in there is the last outbox change about it (none: sending); a campaign is running when its
provisioning started it, or the last campaign change says so. What the app wants is read from
the hosted tables, which the web app writes directly, so a change made there without our API is
found as well:

| the app says | Smartlead gets |
|---|---|
| the contact unsubscribed (`contacts.unsubscribed_at`) | the lead unsubscribed in the campaign |
| the enrollment is paused | the lead paused; active again: resumed where it stopped |
| the enrollment is gone (deleted) | the lead removed from the campaign |
| the sequence is not active (paused, archived, draft) | the campaign paused; active: started |
| the SDR chose another mailbox | the campaign moved to it |
"""

from __future__ import annotations

import uuid
from typing import Any

from django.apps import apps
from django.db import models, transaction
from django.db.models import Exists, OuterRef, Q

LEAD_ACTIONS = ("pause_lead", "resume_lead", "unsubscribe_lead", "remove_lead")
CAMPAIGN_ACTIONS = ("pause_campaign", "resume_campaign")
# What a lead (or campaign) is at Smartlead after each action.
AFTER = {
    "pause_lead": "paused",
    "resume_lead": "active",
    "unsubscribe_lead": "unsubscribed",
    "remove_lead": "removed",
    "pause_campaign": "paused",
    "resume_campaign": "active",
}
ENDED = ("unsubscribed", "removed")  # nothing more can happen to such a lead there


def _model(name: str) -> type[models.Model]:
    return apps.get_model("sequences", name)


class SyncChangeQuerySet(models.QuerySet):
    def open(self) -> SyncChangeQuerySet:
        return self.filter(state="pending")

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
            waiting.update(state="superseded")
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
            .exclude(state="superseded")
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
            .exclude(state="superseded")
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
    ledger row): paused enrollments, unsubscribed contacts, enrollments we paused at Smartlead
    that are active again, and ledger rows whose enrollment is gone. A contact whose unsubscribe
    came from Smartlead itself (its `email_unsubscribed` engagement) is not told again.
    """
    Enrollment, Push, SyncChange = _model("Enrollment"), _model("Push"), _model("SyncChange")
    Engagement = _model("Engagement")
    from_smartlead = Engagement.objects.filter(
        enrollment_id=OuterRef("pk"), engagement_type="email_unsubscribed"
    )
    paused_by_us = SyncChange.objects.filter(action="pause_lead").exclude(state="superseded")
    wanted_by_query = {
        "unsubscribed": Enrollment.objects.filter(contact__unsubscribed_at__isnull=False)
        .exclude(Exists(from_smartlead))
        .values("pk"),
        "paused": Enrollment.objects.filter(status="paused").values("pk"),
        "active": Enrollment.objects.filter(
            status="active", pk__in=paused_by_us.values("enrollment_id")
        ).values("pk"),
    }
    pushed = Push.objects.filter(scope, state="pushed")
    fields = ("enrollment_id", "campaign_id", "sequence_id", "profile_id", "email")
    found: dict[tuple, tuple[str, dict]] = {}
    for wanted, ids in wanted_by_query.items():
        for row in pushed.filter(enrollment_id__in=ids).values(*fields):
            found.setdefault((row["enrollment_id"], row["campaign_id"]), (wanted, row))
    gone = pushed.filter(~Exists(Enrollment.objects.filter(pk=OuterRef("enrollment_id"))))
    for row in gone.values(*fields):
        found[row["enrollment_id"], row["campaign_id"]] = ("removed", row)
    known = SyncChange.objects.known_lead_states(set(found))
    due = []
    for key, (wanted, row) in found.items():
        action = _lead_action(known.get(key, "active"), wanted)
        if action:
            due.append({"action": action, **row})
    return due


def _lead_action(now: str, wanted: str) -> str | None:
    if now == wanted or now in ENDED:
        return None
    return {
        "removed": "remove_lead",
        "unsubscribed": "unsubscribe_lead",
        "paused": "pause_lead",
        "active": "resume_lead",
    }[wanted]


def campaign_changes_due(scope: Q) -> list[dict[str, Any]]:
    """Campaign pauses, starts and mailbox moves Smartlead has not been asked for yet."""
    CampaignProvisioning, SyncChange = _model("CampaignProvisioning"), _model("SyncChange")
    records = list(
        CampaignProvisioning.objects.filter(scope, state="ready", campaign_id__isnull=False)
        .select_related("sequence__created_by")
        .exclude(sequence__created_by__isnull=True)
    )
    known = SyncChange.objects.known_campaign_states({r.campaign_id for r in records})
    moving = set(
        SyncChange.objects.open()
        .filter(action="move_mailbox", campaign_id__in=[r.campaign_id for r in records])
        .values_list("campaign_id", "mailbox_id")
    )
    due = []
    for record in records:
        sequence = record.sequence
        base = {
            "sequence_id": sequence.pk,
            "profile_id": sequence.created_by_id,
            "campaign_id": record.campaign_id,
        }
        started = "active" if "started" in record.completed_stages else "not started"
        now = known.get(record.campaign_id, started)
        wanted = "active" if sequence.status == "active" else "paused"
        if wanted == "paused" and now == "active":
            due.append({"action": "pause_campaign", **base})
        elif wanted == "active" and now != "active":
            due.append({"action": "resume_campaign", **base})
        mailbox = sequence.created_by.mailbox_id
        if record.mailbox_id and mailbox and mailbox != record.mailbox_id:
            if (record.campaign_id, mailbox) not in moving:
                due.append({"action": "move_mailbox", "mailbox_id": mailbox, **base})
    return due
