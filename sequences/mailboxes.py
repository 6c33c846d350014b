"""A campaign's mailboxes brought in line with its SDR's healthy ones, with no lead left behind.

Smartlead pins each lead to the mailbox that first wrote to it: a lead whose mailbox leaves the
campaign, or fails, gets nothing more (help centre articles 23 and 397). So when the SDR's
healthy mailboxes change (they chose others, one failed a health read, Smartlead reported one
disconnected), the outbox's `sync_mailboxes` change does, in the order Smartlead's reference
pages require (smartlead/api/mailboxes.py):

1. reads the campaign's attached mailboxes (`GET …/email-accounts`);
2. attaches the SDR's healthy mailboxes it lacks, first, since an ACTIVE campaign may not be left
   without one;
3. detaches the SDR's mailboxes that may no longer send (only mailboxes we know as the SDR's: one
   attached by hand in Smartlead stays);
4. moves their leads: `reallocate-mailboxes` naming them (only after the removal); where that
   route is missing or refuses, one lead at a time (`update-lead-email-account`) for each lead
   whose message history says one of them wrote to it. Leads Smartlead keeps `STARTED` have
   had no email yet: no mailbox holds them, and Smartlead's rotation picks an attached one;
5. with no healthy mailbox left there is nowhere to move the leads: the campaign keeps its
   failing mailbox (Smartlead refuses removing the last one of an ACTIVE campaign), and every
   enrollment still in progress in it is paused with the reason (`MailboxPause`); the outbox
   then pauses its lead. Once a mailbox is healthy again the same change resumes them.
"""

from __future__ import annotations

import itertools
from typing import Any

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from profiles.health import why_held
from profiles.models import Profile
from sequences.models import (
    CampaignProvisioning,
    Enrollment,
    EnrollmentStatus,
    MailboxPause,
    Push,
    PushState,
    SequenceStep,
    StepType,
    SyncChange,
)
from smartlead.api import NotFound, SmartleadClient, ValidationFailed

# Lead statuses whose lead a mailbox has written to and may write to again.
WRITTEN_TO = ("INPROGRESS", "PAUSED")


def sync_mailboxes(change: SyncChange, client: SmartleadClient, _: Any) -> str:
    """The outbox's action (sequences/sync.py): see the module's steps. Returns what it did."""
    record = CampaignProvisioning.objects.get(sequence_id=change.sequence_id)
    profile = Profile.objects.with_mailboxes().get(pk=change.profile_id)
    campaign_id, wanted = change.campaign_id, profile.healthy_mailbox_ids()
    attached = {a.id: a.from_email for a in client.campaign_email_accounts(campaign_id)}
    lacking = [m for m in wanted if m not in attached]
    if lacking:
        client.add_email_accounts(campaign_id, lacking)
    if not wanted:
        paused = pause_stranded(record, profile)
        _brought_in_line(record, [])
        return f"No healthy mailbox ({why_held(profile)}): {paused} enrollments paused."
    # The SDR's mailboxes and those we attached: what Smartlead lists, and what we know we put
    # there in case its list leaves one out (detaching one that is gone is harmless).
    ours = {row.mailbox_id: row.address for row in profile.mailbox_rows()}
    known = [m for m in [record.mailbox_id, *(record.mailbox_ids or [])] if m is not None]
    leaving = sorted(
        m for m in set(attached) | set(known) if m not in wanted and (m in ours or m in known)
    )
    moved = 0
    if leaving:
        client.remove_email_accounts(campaign_id, leaving)
        addresses = {m: attached.get(m) or ours.get(m) or "" for m in leaving}
        moved = move_leads(client, campaign_id, addresses, wanted)
    resumed = resume_held(campaign_id)
    _brought_in_line(record, wanted)
    return (
        f"Mailboxes {wanted}: attached {lacking or 'none'}, detached {leaving or 'none'}; "
        f"{moved} leads moved off them, {resumed} paused enrollments resumed."
    )


def move_leads(
    client: SmartleadClient, campaign_id: int, leaving: dict[int, str], wanted: list[int]
) -> int:
    """Step 4: the leads of the detached mailboxes (id: address) onto attached ones; how many
    moved."""
    try:
        return client.reallocate_mailboxes(campaign_id, list(leaving)).leads_reallocated
    except ValidationFailed as exc:
        if "still attached" in str(exc):
            raise  # the removal did not hold: the change stays pending and is tried again
    except NotFound:
        pass  # an account without the newer route: Express's "Cannot POST" page
    addresses = {address.strip().lower() for address in leaving.values() if address}
    targets = itertools.cycle(wanted)
    moved = 0
    for lead in client.campaign_leads(campaign_id):
        if lead.status in WRITTEN_TO and client.lead_sender(campaign_id, lead.id) in addresses:
            client.update_lead_email_account(campaign_id, lead.id, next(targets))
            moved += 1
    return moved


def in_progress(campaign_id: int) -> list[Any]:
    """The campaign's enrollments Smartlead still has emails to send for: pushed to it (the
    ledger), active, with an email step at or after the one due."""
    pushed = Push.objects.filter(campaign_id=campaign_id, state=PushState.PUSHED)
    rows = list(
        Enrollment.objects.filter(
            pk__in=pushed.values("enrollment_id"), status=EnrollmentStatus.ACTIVE
        ).values_list("pk", "sequence_id", "current_step")
    )
    last_email = dict(
        SequenceStep.objects.filter(
            sequence_id__in={sequence for _, sequence, _ in rows}, step_type=StepType.EMAIL
        )
        .values("sequence_id")
        .annotate(last=Max("step_number"))
        .values_list("sequence_id", "last")
    )
    return [pk for pk, sequence, current in rows if current <= last_email.get(sequence, 0)]


def pause_stranded(record: CampaignProvisioning, profile: Profile) -> int:
    """Step 5: the campaign's enrollments in progress are paused, each with the reason."""
    ids = in_progress(record.campaign_id)
    reason = (
        f"Paused by the backend: none of {profile}'s mailboxes may send ({why_held(profile)}), "
        f"so campaign {record.campaign_id} cannot write to this lead. It resumes by itself once "
        "one is healthy again (a health read: connecting, verifying, or the hourly pass)."
    )
    now = timezone.now()
    with transaction.atomic():
        MailboxPause.objects.bulk_create(
            [
                MailboxPause(
                    enrollment_id=pk,
                    profile_id=profile.pk,
                    campaign_id=record.campaign_id,
                    reason=reason,
                    paused_at=now,
                )
                for pk in ids
            ],
            ignore_conflicts=True,
        )
        return Enrollment.objects.pause(ids, now)


def resume_held(campaign_id: int) -> int:
    """The enrollments paused for want of a mailbox go on; the outbox resumes their leads."""
    held = MailboxPause.objects.filter(campaign_id=campaign_id)
    ids = list(held.values_list("enrollment_id", flat=True))
    if not ids:
        return 0
    with transaction.atomic():
        resumed = Enrollment.objects.resume(ids, timezone.now())
        held.filter(enrollment_id__in=ids).delete()
    return resumed


def _brought_in_line(record: CampaignProvisioning, wanted: list[int]) -> None:
    fields: dict[str, Any] = {"mailbox_ids": wanted}
    if wanted:
        fields["mailbox_id"] = wanted[0]
    CampaignProvisioning.objects.filter(pk=record.pk).update(**fields)
