"""App → Smartlead: changes made in the app reach the SDR's campaigns, through the outbox.

Every run of the executor (step 0, `propagate`) first makes active again the enrollments whose
out-of-office pause has ended, then finds what Smartlead has not learnt yet
(sequences/outbox.py), writes each change as a pending `SyncChange` row, then applies the
pending rows with each SDR's own key. A change is applied idempotently (pausing a paused lead,
or removing a lead already gone, is done), so a process killed between Smartlead's answer and
our write only repeats a harmless call. A change Smartlead does not take stays pending, with
its error, and is tried again every run until it holds; one it refuses for good (a lead past its
last email cannot be resumed) is `failed` with Smartlead's words. The activate and pause API
apply their campaign change right away (`change_campaign_now`), and disconnecting pauses the
SDR's campaigns with the old key while it still works (`pause_before_disconnect`).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import Any

from django.db.models import Q
from django.utils import timezone

from outboundhq import logs
from profiles.credentials import SmartleadCredentials, interactive_client
from profiles.models import Profile
from sequences import campaign_settings, mailboxes, optouts, outbox
from sequences.models import (
    CampaignProvisioning,
    Enrollment,
    ProvisioningState,
    Sequence,
    SyncAction,
    SyncChange,
    SyncState,
)
from sequences.provisioning import campaign_gone, ensure_webhook, needs_attention
from smartlead.api import NotFound, SmartleadClient, SmartleadError, ValidationFailed
from smartlead.api.limits import Priority

log = logging.getLogger(__name__)

MAX_ERROR = 1000


def propagate(
    *, deadline: float, user_id: Any = None, sequence_id: Any = None
) -> tuple[int, list[str]]:
    """Step 0 of a run: what changed in the app, written to the outbox and applied. Returns
    how many changes Smartlead took, and the errors in words."""
    scope = Q()
    if user_id:
        scope &= Q(profile_id=user_id)
    if sequence_id:
        scope &= Q(sequence_id=sequence_id)
    campaign_scope = Q()
    if user_id:
        campaign_scope &= Q(sequence__created_by_id=user_id)
    if sequence_id:
        campaign_scope &= Q(sequence_id=sequence_id)
    optouts.record_app_opt_outs(timezone.now())  # the app's unsubscribes, by the one policy
    # Absences that have ended come back first, so their leads are resumed below.
    Enrollment.objects.filter(campaign_scope).resume_returned(timezone.now())
    due = outbox.lead_changes_due(scope) + outbox.campaign_changes_due(campaign_scope)
    for change in due + outbox.settings_changes_due(campaign_scope):
        SyncChange.objects.request(**change)
    return apply_pending(SyncChange.objects.open().filter(scope), deadline=deadline)


def apply_pending(changes: Any, *, deadline: float) -> tuple[int, list[str]]:
    """The pending changes, one SDR's at a time with their key, oldest first."""
    by_sdr: dict[Any, list[SyncChange]] = defaultdict(list)
    for change in changes.order_by("id"):
        by_sdr[change.profile_id].append(change)
    done, errors = 0, []
    for sender in Profile.objects.senders(by_sdr):
        pending, credentials = by_sdr[sender.profile_id], sender.credentials
        if credentials is None:
            waiting = f"{sender.why_not}: {len(pending)} changes wait."
            SyncChange.objects.filter(pk__in=[c.pk for c in pending]).update(last_error=waiting)
            errors.append(waiting)
            continue
        # App changes go before new pushes when the key's budget is short (api/limits.py).
        with SmartleadClient(
            credentials.api_key, deadline=deadline, priority=Priority.CHANGE
        ) as client:
            for change in pending:
                if time.monotonic() >= deadline:
                    return done, [*errors, "The time budget is spent; the outbox waits."]
                error = apply_change(change, client, credentials)
                done += error is None
                if error:
                    errors.append(error)
    return done, errors


def apply_change(
    change: SyncChange, client: SmartleadClient, credentials: SmartleadCredentials
) -> str | None:
    """Applies one change; returns None when it holds, else the error (also on the row)."""
    change.attempts += 1
    try:
        note = ACTIONS[change.action](change, client, credentials)
    except NotFound as exc:
        return _not_found(change, client, credentials, exc)
    except ValidationFailed as exc:
        _close(change, SyncState.FAILED, str(exc))
        return f"{change}: Smartlead refused it: {exc}"
    except SmartleadError as exc:
        change.last_error = logs.redact(str(exc))[:MAX_ERROR]
        change.save(update_fields=["attempts", "last_error"])
        return f"{change}: {exc} (retried next run)"
    _close(change, SyncState.DONE, note or "")
    return None


def _not_found(
    change: SyncChange, client: SmartleadClient, credentials: SmartleadCredentials, exc: NotFound
) -> str | None:
    """A 404. Only the lead missing from a campaign the key still has means there is nothing
    left to do. A campaign the key no longer has (deleted, or the key now opens another
    Smartlead account) is never done: the change fails and the sequence needs attention."""
    try:
        gone = campaign_gone(client, change.campaign_id, credentials.email_account_id)
    except SmartleadError as lookup:
        change.last_error = logs.redact(f"{exc}; the campaign could not be looked up: {lookup}")
        change.save(update_fields=["attempts", "last_error"])
        return f"{change}: {exc} (retried next run)"
    if gone is None:
        _close(change, SyncState.DONE, f"Nothing to do at Smartlead: {exc}")
        return None
    current = CampaignProvisioning.objects.filter(
        sequence_id=change.sequence_id, campaign_id=change.campaign_id
    ).exclude(state=ProvisioningState.NEEDS_ATTENTION)  # the first reason stays
    if current.exists():  # not when the sequence has moved on to a new campaign since
        needs_attention(change.sequence_id, gone)
    _close(change, SyncState.FAILED, f"Not done, the campaign needs attention: {gone}")
    return f"{change}: {gone}"


def _close(change: SyncChange, state: str, note: str) -> None:
    change.state = state
    change.last_error = logs.redact(note)[:MAX_ERROR]
    change.done_at = timezone.now()
    change.save(update_fields=["state", "attempts", "last_error", "done_at"])


def _lead_id(change: SyncChange, client: SmartleadClient) -> int:
    lead = client.find_lead(change.email)
    if lead is None or change.campaign_id not in lead.campaign_ids:
        raise NotFound(f"lead {change.email} is not in campaign {change.campaign_id}")
    return lead.id


def _pause_lead(change: SyncChange, client: SmartleadClient, _: SmartleadCredentials) -> None:
    client.pause_lead(change.campaign_id, _lead_id(change, client))


def _resume_lead(change: SyncChange, client: SmartleadClient, _: SmartleadCredentials) -> None:
    client.resume_lead(change.campaign_id, _lead_id(change, client))


def _unsubscribe_lead(change: SyncChange, client: SmartleadClient, _: Any) -> None:
    client.unsubscribe_lead(change.campaign_id, _lead_id(change, client))


def _remove_lead(change: SyncChange, client: SmartleadClient, _: SmartleadCredentials) -> None:
    client.remove_lead(change.campaign_id, _lead_id(change, client))


def _pause_campaign(change: SyncChange, client: SmartleadClient, _: Any) -> None:
    client.set_status(change.campaign_id, "PAUSED")


def _resume_campaign(change: SyncChange, client: SmartleadClient, _: Any) -> None:
    client.set_status(change.campaign_id, "START")  # Smartlead resumes each lead where it was


def _apply_settings(change: SyncChange, client: SmartleadClient, _: Any) -> str:
    """The current campaign settings, and the webhook's categories with them (idempotent)."""
    record = CampaignProvisioning.objects.select_related("sequence").get(
        sequence_id=change.sequence_id
    )
    applied = campaign_settings.apply(client, change.campaign_id)
    webhook = ensure_webhook(record.sequence, client, resave=True)
    CampaignProvisioning.objects.filter(pk=record.pk).update(settings_applied=applied)
    refused = applied.startswith("refused:")
    return f"Settings {'refused (base ones set)' if refused else 'applied'}; webhook {webhook}."


ACTIONS = {
    SyncAction.PAUSE_LEAD: _pause_lead,
    SyncAction.RESUME_LEAD: _resume_lead,
    SyncAction.UNSUBSCRIBE_LEAD: _unsubscribe_lead,
    SyncAction.REMOVE_LEAD: _remove_lead,
    SyncAction.PAUSE_CAMPAIGN: _pause_campaign,
    SyncAction.RESUME_CAMPAIGN: _resume_campaign,
    SyncAction.SYNC_MAILBOXES: mailboxes.sync_mailboxes,
    SyncAction.MOVE_MAILBOX: mailboxes.sync_mailboxes,  # rows written by older versions
    SyncAction.APPLY_SETTINGS: _apply_settings,
}


def change_campaign_now(
    sequence: Sequence, credentials: SmartleadCredentials, action: str
) -> SyncChange:
    """The activate/pause API: the campaign change is written to the outbox and applied now.
    Raises the SmartleadError when Smartlead does not take it; the row stays pending (or
    failed) either way, so the next run retries a pending one."""
    change = SyncChange.objects.request(
        action,
        sequence_id=sequence.pk,
        profile_id=sequence.created_by_id,
        campaign_id=sequence.campaign,
    )
    with interactive_client(credentials.api_key, priority=Priority.CHANGE) as client:
        change.attempts += 1
        try:
            ACTIONS[action](change, client, credentials)
        except ValidationFailed as exc:
            _close(change, SyncState.FAILED, str(exc))
            raise
        except SmartleadError as exc:
            change.last_error = logs.redact(str(exc))[:MAX_ERROR]
            change.save(update_fields=["attempts", "last_error"])
            raise
    _close(change, SyncState.DONE, "")
    return change


def pause_before_disconnect(
    profile: Profile,
    api_key: str,
    *,
    only: set[int] | None = None,
    occasion: str = "the SDR disconnected",
) -> list[str]:
    """Pauses every running campaign of the SDR (or `only` these) with the key they are
    removing (it will not be there to retry with): each is a `SyncChange`, `failed` with the
    reason when Smartlead did not take it, so the admin says which campaigns are still sending."""
    records = CampaignProvisioning.objects.filter(
        sequence__created_by=profile, state=ProvisioningState.READY, campaign_id__isnull=False
    ).select_related("sequence")
    if only is not None:
        records = records.filter(campaign_id__in=only)
    known = SyncChange.objects.known_campaign_states({r.campaign_id for r in records})
    failed = []
    with interactive_client(api_key, priority=Priority.CHANGE) as client:
        for record in records:
            if known.get(record.campaign_id, outbox.campaign_state(record)) != outbox.ACTIVE:
                continue
            change = SyncChange.objects.request(
                SyncAction.PAUSE_CAMPAIGN,
                sequence_id=record.sequence_id,
                profile_id=profile.pk,
                campaign_id=record.campaign_id,
            )
            change.attempts += 1
            try:
                client.set_status(record.campaign_id, "PAUSED")
            except SmartleadError as exc:
                why = f"Not paused before {occasion} (no key to retry with): {exc}"
                _close(change, SyncState.FAILED, why)
                failed.append(f"campaign {record.campaign_id}: {exc}")
                continue
            _close(change, SyncState.DONE, f"Paused with the old key as {occasion}.")
    return failed


def on_disconnect(sender: object, *, profile: Profile, api_key: str, **_: object) -> None:
    """The `disconnecting` signal: never stops the disconnect itself (the SDR asked for it)."""
    try:
        failed = pause_before_disconnect(profile, api_key)
    except Exception:  # noqa: BLE001 - the key is forgotten whatever Smartlead does
        log.exception("Pausing user %s's campaigns before they disconnected failed", profile.pk)
        return
    for failure in failed:
        log.warning("User %s disconnected; %s was not paused", profile.pk, failure)
