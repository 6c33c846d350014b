"""Provisioning: the Smartlead campaign that sends one sequence's email steps.

The campaign lives in the sequence creator's Smartlead account. Setting it up takes several
calls; each accepted stage is recorded on `CampaignProvisioning`, so a run that dies half-way
leaves a record the next run completes. Two guards keep it to one campaign per sequence:

1. a lease (conditional UPDATE) lets only one executor provision a sequence at a time;
2. the campaign's name carries a tag with the sequence id, so if we crash after Smartlead created
   the campaign but before we stored its id, the next attempt finds it instead of creating another.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable
from collections.abc import Sequence as Seq
from urllib.parse import urlencode, urlsplit

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from profiles.credentials import SmartleadCredentials
from sequences import campaign_settings
from sequences.models import (
    CampaignProvisioning,
    Enrollment,
    ProvisioningState,
    Push,
    PushState,
    Sequence,
    SequenceStatus,
    SequenceStep,
    StepType,
    lease_length,
)
from smartlead.api import NotFound, SequenceStepSpec, SmartleadClient, events, tokens

log = logging.getLogger(__name__)

STAGES = ("created", "sequences", "email_accounts", "schedule", "settings", "webhook", "started")
# Not a stage: recorded once our webhook on the campaign is at its own token URL. A campaign
# without it may still carry the global secret (sequences/webhook_switch.py moves those).
PER_CAMPAIGN_URL = "per_campaign_url"
# A campaign in one of these states never sends again: never adopt it.
DEAD_CAMPAIGNS = {"STOPPED", "COMPLETED", "ARCHIVED"}
# The contract's variables and Smartlead's lead fields; `company` is `company_name` there.
VARIABLES = {
    "first_name": "first_name",
    "last_name": "last_name",
    "company": "company_name",
    "email": "email",
}
_VARIABLE = re.compile(r"\{\{\s*(\w+)\s*\}\}")


class ProvisioningBlocked(Exception):
    """The sequence cannot be provisioned as it is; the message says why, for people."""


class CampaignNeedsAttention(ProvisioningBlocked):
    """The sequence's campaign is gone from its SDR's Smartlead account (see `campaign_gone`)."""


class ProvisioningBusy(Exception):
    """Another executor holds the lease on this sequence right now."""


def unsupported_reason(sequence: Sequence, steps: Seq[SequenceStep] | None = None) -> str | None:
    """Why Smartlead cannot send this sequence, or None when it can."""
    steps = list(steps if steps is not None else sequence.steps.order_by("step_number"))
    emails = [s for s in steps if s.step_type == StepType.EMAIL]
    if not emails:
        return "The sequence has no email step, so Smartlead has nothing to send."
    first = emails[0]
    if first.condition_previous_opened or first.condition_previous_clicked:
        return (
            f"Step {first.step_number} is the first email but waits for an earlier email to be "
            "opened or clicked, and there is none. Remove that condition."
        )
    for step in emails[1:]:
        if step.condition_previous_opened or step.condition_previous_clicked:
            kind = "opened" if step.condition_previous_opened else "clicked"
            return (
                f"Step {step.step_number} is an email that waits for the previous email to be "
                f"{kind}; Smartlead sends follow-ups on its own schedule and cannot branch on "
                "opens or clicks. Remove that condition or make the step a call."
            )
    return None


def campaign_tag(sequence: Sequence) -> str:
    return f"[ohq-{sequence.id.hex[:12]}]"


def campaign_name(sequence: Sequence) -> str:
    return f"{sequence.name[:180]} {campaign_tag(sequence)}"


def _smartlead_field(name: str) -> str:
    return VARIABLES.get(name, name)


def to_smartlead_text(text: str | None, *, html: bool) -> str:
    mapped = _VARIABLE.sub(lambda m: f"{{{{{_smartlead_field(m.group(1))}}}}}", text or "")
    # Bodies typed as plain text keep their line breaks in Smartlead's HTML editor.
    if html and "<" not in mapped:
        mapped = mapped.replace("\n", "<br>")
    return mapped


def smartlead_steps(steps: Seq[SequenceStep]) -> list[SequenceStepSpec]:
    """The email steps in order; each delay is the whole days since the previous email step."""
    specs: list[SequenceStepSpec] = []
    hours_since_email = 0
    for step in steps:
        hours_since_email += (step.delay_days or 0) * 24 + (step.delay_hours or 0)
        if step.step_type != StepType.EMAIL:
            continue
        # Smartlead sends the first email when the lead is added; follow-ups need >= 1 day.
        days = 0 if not specs else max(1, math.ceil(hours_since_email / 24))
        specs.append(
            SequenceStepSpec(
                seq_number=len(specs) + 1,
                delay_in_days=days,
                subject=to_smartlead_text(step.subject, html=False),
                email_body=to_smartlead_text(step.body, html=True),
            )
        )
        hours_since_email = 0
    return specs


def receiver_url() -> str | None:
    """Our webhook receiver's public URL, without a query; None until it can be registered."""
    if not settings.PUBLIC_BASE_URL or not settings.SMARTLEAD_WEBHOOK_SECRET:
        return None
    return settings.PUBLIC_BASE_URL.rstrip("/") + reverse("smartlead-webhook")


def webhook_url(campaign_id: int) -> str | None:
    """The campaign's own webhook URL; its token works for no other campaign (tokens.py)."""
    base = receiver_url()
    if base is None:
        return None
    return (
        f"{base}?{urlencode({'campaign': campaign_id, 'token': tokens.current_token(campaign_id)})}"
    )


ClientFactory = Callable[..., SmartleadClient]


def provision(
    sequence: Sequence,
    credentials: SmartleadCredentials,
    *,
    deadline: float | None = None,
    client_factory: ClientFactory = SmartleadClient,
    holder: str = "",
) -> CampaignProvisioning:
    """Creates, completes or repairs the sequence's campaign. Idempotent. `holder`: the worker
    taking the lease, freed at once if that worker stops (sequences/workers.py).

    Raises ProvisioningBlocked (cannot be expressed), ProvisioningBusy (another executor is on
    it) or a SmartleadError (recorded on the provisioning row, retried by the next run).
    """
    record = _adopt_or_get(sequence)
    if record.state == ProvisioningState.READY:
        return record
    if record.state == ProvisioningState.NEEDS_ATTENTION:
        raise CampaignNeedsAttention(record.reason)
    steps = list(sequence.steps.order_by("step_number"))
    reason = unsupported_reason(sequence, steps)
    if reason:
        _settle(record, ProvisioningState.UNSUPPORTED, reason)
        raise ProvisioningBlocked(reason)
    if not _take_lease(record, holder):
        raise ProvisioningBusy(f"Sequence {sequence.id} is being provisioned by another run.")
    record.refresh_from_db()
    with client_factory(credentials.api_key, deadline=deadline) as client:
        try:
            _run_stages(record, sequence, steps, credentials, client)
        except Exception as exc:
            _settle(record, ProvisioningState.FAILED, str(exc))
            raise
    _settle(record, ProvisioningState.READY, "")
    log.info("Sequence %s is provisioned as Smartlead campaign %s", sequence.id, record.campaign_id)
    return record


def _adopt_or_get(sequence: Sequence) -> CampaignProvisioning:
    """A campaign id set without our record (set by hand, or before this backend) is trusted."""
    adopted = sequence.has_campaign
    stale = CampaignProvisioning.objects.filter(
        sequence_id=sequence.id, state=ProvisioningState.READY
    )
    if not adopted and stale.exists():
        # Someone cleared the campaign id: set up a new campaign rather than trust the record.
        forget_campaign(sequence.id, "The sequence's campaign id was cleared.")
    record, _ = CampaignProvisioning.objects.get_or_create(
        sequence_id=sequence.id,
        defaults={
            "state": ProvisioningState.READY if adopted else ProvisioningState.PENDING,
            "campaign_id": sequence.campaign,
            "completed_stages": ["adopted"] if adopted else [],
        },
    )
    return record


def _take_lease(record: CampaignProvisioning, holder: str) -> bool:
    now = timezone.now()
    return bool(
        CampaignProvisioning.objects.filter(pk=record.pk)
        .exclude(state=ProvisioningState.READY)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .update(
            lease_until=now + lease_length(),
            lease_holder=holder,
            state=ProvisioningState.IN_PROGRESS,
        )
    )


def _settle(record: CampaignProvisioning, state: str, reason: str) -> None:
    record.state = state
    record.reason = reason[:2000]
    record.lease_until, record.lease_holder = None, ""
    record.attempts += 1
    fields = ["state", "reason", "lease_until", "lease_holder", "attempts", "updated_at"]
    record.save(update_fields=fields)


def _stage_done(record: CampaignProvisioning, stage: str) -> None:
    if stage not in record.completed_stages:
        record.completed_stages = [*record.completed_stages, stage]
    record.save(
        update_fields=["completed_stages", "campaign_id", "mailbox_id", "mailbox_ids", "updated_at"]
    )


def _run_stages(
    record: CampaignProvisioning,
    sequence: Sequence,
    steps: list[SequenceStep],
    credentials: SmartleadCredentials,
    client: SmartleadClient,
) -> None:
    actions: dict[str, Callable[[], object]] = {
        "created": lambda: _create_or_find(record, sequence, client),
        "sequences": lambda: client.save_sequences(record.campaign_id, smartlead_steps(steps)),
        "email_accounts": lambda: _attach_mailboxes(record, client, credentials),
        "schedule": lambda: client.set_schedule(
            record.campaign_id,
            timezone=settings.SMARTLEAD_SCHEDULE_TIMEZONE,
            days_of_the_week=[1, 2, 3, 4, 5],
            start_hour="09:00",
            end_hour="17:00",
        ),
        "settings": lambda: _apply_settings(record, client),
        "webhook": lambda: _register_webhook(record, sequence, client),
        "started": lambda: _start_unless_paused(record, sequence, client),
    }
    for stage in STAGES:
        # A skipped webhook (no public URL yet) stays undone: ensure_webhook adds it later.
        if stage not in record.completed_stages and actions[stage]() is not False:
            _stage_done(record, stage)


def _attach_mailboxes(
    record: CampaignProvisioning, client: SmartleadClient, credentials: SmartleadCredentials
) -> None:
    """All the SDR's healthy mailboxes (Smartlead rotates them); saved with the stage, and
    kept in line by the outbox when they change (sequences/mailboxes.py)."""
    mailboxes = list(credentials.email_account_ids)
    if not mailboxes:
        raise ProvisioningBlocked("None of the SDR's mailboxes is healthy: nothing can send.")
    client.add_email_accounts(record.campaign_id, mailboxes)
    record.mailbox_id, record.mailbox_ids = mailboxes[0], mailboxes


def _apply_settings(record: CampaignProvisioning, client: SmartleadClient) -> None:
    # Out-of-office handling and the same-company pause: sequences/campaign_settings.py.
    record.settings_applied = campaign_settings.apply(client, record.campaign_id)
    record.save(update_fields=["settings_applied", "updated_at"])


def _start_unless_paused(
    record: CampaignProvisioning, sequence: Sequence, client: SmartleadClient
) -> bool:
    """The last stage starts the campaign unless the sequence was paused meanwhile: a pause that
    arrived while provisioning ran is not undone. The stage then stays undone, and the outbox
    starts the campaign when the sequence is active again."""
    status = Sequence.objects.filter(pk=sequence.pk).values_list("status", flat=True).first()
    if status in (SequenceStatus.PAUSED, SequenceStatus.ARCHIVED):  # draft: being activated
        log.info(
            "Campaign %s is not started: sequence %s is %s", record.campaign_id, sequence.pk, status
        )
        return False
    client.set_status(record.campaign_id, "START")
    return True


def _create_or_find(
    record: CampaignProvisioning, sequence: Sequence, client: SmartleadClient
) -> None:
    if record.campaign_id is None:
        tag = campaign_tag(sequence)
        found = next(
            (
                c
                for c in client.list_campaigns()
                if tag in (c.name or "") and (c.status or "").upper() not in DEAD_CAMPAIGNS
            ),
            None,
        )
        campaign = found or client.create_campaign(campaign_name(sequence))
        record.campaign_id = campaign.id
        if found and found.status not in (None, "DRAFTED"):
            # Already set up and sending: Smartlead refuses sequence edits on a live campaign.
            record.completed_stages = list(STAGES)
    with transaction.atomic():
        record.save(update_fields=["campaign_id", "updated_at"])
        Sequence.objects.filter(pk=sequence.pk).update(
            smartlead_campaign_id=str(record.campaign_id), updated_at=timezone.now()
        )


def _register_webhook(
    record: CampaignProvisioning, sequence: Sequence, client: SmartleadClient
) -> str | bool:
    """Our webhook on the campaign, at its current URL: "current", "updated", "created", or
    False when it cannot be registered yet. A webhook of ours at an older URL (the global
    secret, a rotated token) is updated in place: a second one would deliver everything twice."""
    url = webhook_url(record.campaign_id)
    if url is None:
        log.warning(
            "Campaign %s has no webhook yet: set PUBLIC_BASE_URL and SMARTLEAD_WEBHOOK_SECRET",
            record.campaign_id,
        )
        return False
    name = f"OutboundHQ {campaign_tag(sequence)}"
    webhooks = client.list_campaign_webhooks(record.campaign_id)
    same_url = next((w for w in webhooks if w.webhook_url == url), None)
    # Current only if it also has every event and category we subscribe to now (new ones are
    # added in place): the categories filter which LEAD_CATEGORY_UPDATED events reach us.
    categories = campaign_settings.WEBHOOK_CATEGORIES
    done = "current"
    if not (
        same_url is not None
        and set(events.SUBSCRIBED) <= set(same_url.event_types)
        and set(categories) <= set(same_url.categories)
    ):
        ours = same_url or next(
            (w for w in webhooks if w.name == name or _points_at_us(w.webhook_url)), None
        )
        client.save_campaign_webhook(
            record.campaign_id,
            name=name,
            url=url,
            event_types=events.SUBSCRIBED,
            categories=categories,
            webhook_id=ours.id if ours else None,
        )
        done = "updated" if ours else "created"
    if PER_CAMPAIGN_URL not in record.completed_stages:  # saved with the stage by the caller
        record.completed_stages = [*record.completed_stages, PER_CAMPAIGN_URL]
    return done


def _points_at_us(url: str) -> bool:
    parts = urlsplit(url or "")
    return f"{parts.scheme}://{parts.netloc}{parts.path}" == receiver_url()


def ensure_webhook(sequence: Sequence, client: SmartleadClient, *, resave: bool = False) -> str:
    """A campaign set up before PUBLIC_BASE_URL was configured gets its webhook now; with
    `resave`, one that has a webhook gets it at its current URL (manage.py resave_webhooks).

    Returns what it did: "skipped" (no campaign record, or nothing to do), or what
    _register_webhook did."""
    record = getattr(sequence, "provisioning", None)
    if record is None or record.campaign_id is None or receiver_url() is None:
        return "skipped"
    if "webhook" in record.completed_stages and not resave:
        return "skipped"
    done = _register_webhook(record, sequence, client)
    if done:
        _stage_done(record, "webhook")
    return done or "skipped"


def campaign_gone(client: SmartleadClient, campaign_id: int, mailbox_id: int) -> str | None:
    """Asked after a 404 that names the campaign, since a 404 alone does not prove it is gone:
    None while Smartlead still has it, otherwise why not, in words. Raises SmartleadError
    when Smartlead cannot say."""
    try:
        client.get_campaign(campaign_id)
        return None
    except NotFound:
        pass
    try:
        client.get_email_account(mailbox_id)
        why = "it was deleted or archived there"
    except NotFound:
        why = (
            f"the key no longer sees the SDR's mailbox {mailbox_id} either, so it now belongs to "
            "another Smartlead account"
        )
    return (
        f"Smartlead has no campaign {campaign_id} for the SDR's key: {why}. Nothing more is sent "
        "for this sequence until it is re-provisioned from the admin; its leads are not started "
        "over in a new campaign."
    )


def needs_attention(sequence_id: object, reason: str) -> None:
    """The campaign is gone (`campaign_gone`): the sequence stops sending, its campaign id kept."""
    CampaignProvisioning.objects.update_or_create(
        sequence_id=sequence_id,
        defaults={
            "state": ProvisioningState.NEEDS_ATTENTION,
            "reason": reason[:2000],
            "lease_until": None,
        },
    )
    log.warning("Sequence %s needs attention: %s", sequence_id, reason)


def reprovision(sequence_id: object, reason: str) -> int:
    """Ops' knowing choice after `needs_attention`: the next run sets up a new campaign. The
    sequence's active enrollments that were already sent to the lost campaign are paused, so
    none gets the first email again unless someone resumes it. Returns how many were paused."""
    with transaction.atomic():
        lost = (
            CampaignProvisioning.objects.select_for_update()
            .filter(sequence_id=sequence_id)
            .values_list("campaign_id", flat=True)
            .first()
        )
        sent = Push.objects.filter(campaign_id=lost, state=PushState.PUSHED).values("enrollment_id")
        ours = Enrollment.objects.filter(sequence_id=sequence_id, id__in=sent).values("id")
        paused = Enrollment.objects.pause(ours, timezone.now())
        forget_campaign(sequence_id, reason)
    return paused


def forget_campaign(sequence_id: object, reason: str) -> None:
    """The campaign is gone from Smartlead: the next run provisions a new one."""
    with transaction.atomic():
        Sequence.objects.filter(pk=sequence_id).update(smartlead_campaign_id=None)
        CampaignProvisioning.objects.filter(sequence_id=sequence_id).update(
            state=ProvisioningState.PENDING, campaign_id=None, completed_stages=[], reason=reason
        )
