"""Smartlead's notices about a campaign or a mailbox rather than a lead, applied to our rows.

- `CAMPAIGN_STATUS_CHANGED` (a campaign webhook event: `previous_status`/`current_status`) and
  `CAMPAIGN_BOUNCE_BREACH` (an account notification: `eventType`, `campaignId`) are kept on the
  campaign's provisioning record, so ops and explain see e.g. that Smartlead paused it for bounces.
- `EMAIL_ACCOUNT_DISCONNECTED` (an account notification: `accountId`) and a bounce Smartlead marks
  `is_sender_originated_bounce` (the SDR's own mailbox failed, not the lead's address) record a
  failure on the mailbox (`mailbox_failed`; for a bounce, the one its `from_email` names, or all
  the SDR's when it names none of theirs). A failed mailbox stops sending until a health read
  shows it healthy, never by a key check (profiles/mailboxes.py); the outbox detaches it from the
  SDR's campaigns and moves its leads to a healthy one (sequences/mailboxes.py). Such a bounce
  never bounces the lead.

Tenancy: a notice reaches only the SDR who owns the campaign it came for (`notice_owner`), and a
mailbox notice only a mailbox of theirs. A campaign's URL is readable by its SDR, so a notice
posted there with someone else's mailbox id must not stop that someone's sending.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any
from uuid import UUID

from profiles.models import Profile
from sequences.models import CampaignProvisioning, ProvisioningState, Sequence
from smartlead.api import events
from smartlead.models import Outcome, WebhookEvent
from smartlead.webhooks import campaign_id_of, clean

Verdict = tuple[str, str]  # (outcome, detail) for the event row
# CampaignProvisioning.smartlead_status's length: Smartlead's word is clipped to fit it (the
# whole word stays in the detail), so an odd status can never fail the event on Postgres.
STATUS_LENGTH = CampaignProvisioning._meta.get_field("smartlead_status").max_length


def _word(payload: dict[str, Any], *names: str) -> str:
    for name in names:
        value = payload.get(name)
        if isinstance(value, str | int | float) and not isinstance(value, bool) and str(value):
            return clean(str(value).strip(), 200)
    return ""


def campaign_status_changed(event: WebhookEvent, payload: dict[str, Any], now: datetime) -> Verdict:
    current = _word(payload, "current_status", "new_status", "campaign_status").upper()
    previous = _word(payload, "previous_status", "old_status").upper()
    if not current:
        return Outcome.UNMATCHED, "The payload has no current_status."
    was = f" (was {previous})" if previous else ""
    detail = f"Smartlead reports the campaign {current}{was}."
    return _on_campaign(event.campaign_id, current[:STATUS_LENGTH], detail, event.event_time or now)


def bounce_breach(event: WebhookEvent, payload: dict[str, Any], now: datetime) -> Verdict:
    rate = _word(payload, "bounceRate", "bounce_rate")
    detail = (
        "Smartlead flagged the campaign for its bounce rate"
        + (f" ({rate})" if rate else "")
        + "; it pauses a campaign that keeps bouncing. Check the leads' addresses and the mailbox."
    )
    return _on_campaign(event.campaign_id, "BOUNCE_BREACH", detail, event.event_time or now)


def _on_campaign(campaign_id: int | None, status: str, detail: str, when: datetime) -> Verdict:
    if campaign_id is None:
        return Outcome.UNMATCHED, "The payload has no campaign id."
    owner = CampaignProvisioning.objects.owners({campaign_id}).get(campaign_id)
    if owner is None:
        return Outcome.UNMATCHED, f"No sequence of ours owns campaign {campaign_id}."
    CampaignProvisioning.objects.update_or_create(
        sequence_id=owner,
        defaults={
            "smartlead_status": status,
            "smartlead_status_detail": detail,
            "smartlead_status_at": when,
        },
        # A campaign set up before this backend (no record yet) is adopted, as provisioning does.
        create_defaults={
            "state": ProvisioningState.READY,
            "campaign_id": campaign_id,
            "completed_stages": ["adopted"],
            "smartlead_status": status,
            "smartlead_status_detail": detail,
            "smartlead_status_at": when,
        },
    )
    return Outcome.APPLIED, detail


def notice_owner(campaign_id: int | None) -> Profile | str:
    """The SDR who owns the campaign a notice came for (the campaign of the URL's token: the
    receiver refuses a payload naming another), by the link provisioning wrote; else why
    nobody. A notice touches this SDR and nobody else."""
    if campaign_id is None:
        return (
            "The notice names no campaign: it is applied only to the SDR who owns the campaign "
            "whose webhook URL received it."
        )
    sequence_id = CampaignProvisioning.objects.owners({campaign_id}).get(campaign_id)
    owner = Profile.objects.filter(sequences=sequence_id).first() if sequence_id else None
    return owner or f"No SDR's sequence of ours owns campaign {campaign_id}."


def mailbox_disconnected(event: WebhookEvent, payload: dict[str, Any], now: datetime) -> Verdict:
    mailbox = campaign_id_of(payload.get("accountId", payload.get("email_account_id")))
    if mailbox is None:
        return Outcome.UNMATCHED, "The payload has no accountId."
    owner = notice_owner(event.campaign_id)
    if isinstance(owner, str):
        return Outcome.UNMATCHED, owner
    sdrs = Profile.objects.sending_from(mailbox).filter(pk=owner.pk)  # theirs, or nobody
    error = _word(payload, "error", "reason")
    detail = (
        f"Smartlead reports email account {mailbox} disconnected"
        + (f" ({error})" if error else "")
        + ": reconnect it in Smartlead; it sends again once a health read finds it working."
    )
    nobody = (
        f"Email account {mailbox} is not a mailbox of the SDR who owns campaign "
        f"{event.campaign_id}; nobody else's sending is touched by this campaign's notices."
    )
    return mailbox_failed(sdrs, mailbox, detail, nobody)


def flag_mailboxes(
    sequence_ids: Iterable[UUID], reasons: Iterable[str], senders: Iterable[str] = ()
) -> None:
    """Sender-originated bounces: the mailboxes that sent them (`from_email`) fail; every mailbox
    of the campaign's SDR when the bounce names none of theirs."""
    why = "; ".join(sorted(set(reasons))) or "no reason given"
    detail = (
        f"Smartlead reports a bounce caused by the SDR's own mailbox ({why}), not by the lead: "
        "fix the mailbox in Smartlead; it sends again once a health read finds it working."
    )
    sdrs = Profile.objects.filter(
        pk__in=Sequence.objects.filter(pk__in=list(sequence_ids)).values("created_by_id")
    )
    mailbox_failed(sdrs, None, detail, "", addresses=set(senders))


def mailbox_failed(
    sdrs: Iterable[Profile],
    mailbox_id: int | None,
    detail: str,
    nobody: str,
    *,
    addresses: set[str] | frozenset[str] = frozenset(),
) -> Verdict:
    """Records Smartlead's report that a mailbox failed on each of these SDRs' own row of it:
    `mailbox_id`, else theirs at these `addresses`, else every one of theirs. Nothing is cleared
    here, and no key check clears it: only a health read finding it working
    (profiles/mailboxes.py)."""
    flagged = 0
    for profile in sdrs:
        rows = profile.mailbox_rows()
        named = [r.mailbox_id for r in rows if r.address.lower() in addresses]
        ids = [mailbox_id] if mailbox_id is not None else named or [r.mailbox_id for r in rows]
        flagged += sum(profile.record_mailbox_failure(i, detail) for i in ids) > 0
    if not flagged:
        return Outcome.UNMATCHED, nobody
    return Outcome.APPLIED, detail


NOTICES: dict[str, Callable[[WebhookEvent, dict[str, Any], datetime], Verdict]] = {
    events.CAMPAIGN_STATUS_CHANGED: campaign_status_changed,
    events.CAMPAIGN_BOUNCE_BREACH: bounce_breach,
    events.EMAIL_ACCOUNT_DISCONNECTED: mailbox_disconnected,
}
