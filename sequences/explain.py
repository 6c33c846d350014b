"""Why an enrollment has not been sent (yet), in words, for ops in the admin and on the shell.

`explain()` reads only what `for_explanation()` loads, so the enrollments admin list costs the
same few queries however many rows it shows. Called on an enrollment loaded any other way, it
still answers, at the price of a few queries for that one row.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from operator import attrgetter

from django.conf import settings
from django.db.models import OuterRef, Prefetch, QuerySet, Subquery
from django.utils import timezone

from profiles.credentials import SmartleadStatus
from profiles.health import why_held
from profiles.models import Profile
from sequences.claimed import Claimed
from sequences.models import (
    SIGNALS,
    CampaignProvisioning,
    Engagement,
    Enrollment,
    EnrollmentHold,
    EnrollmentStatus,
    HoldKind,
    MailboxPause,
    ProvisioningState,
    Push,
    PushState,
    Sequence,
    SequenceStatus,
    StepRecord,
)
from sequences.provisioning import unsupported_reason
from sequences.steps import Steps, decide, describe
from smartlead.api.limits import Limits, budget_for

FINISHED = {
    EnrollmentStatus.COMPLETED: "Completed: every step is done.",
    EnrollmentStatus.REPLIED: "Stopped: the contact replied.",
    EnrollmentStatus.BOUNCED: "Stopped: the email bounced.",
    EnrollmentStatus.UNSUBSCRIBED: "Stopped: the contact unsubscribed.",
    EnrollmentStatus.PAUSED: "Paused: this enrollment is paused.",
}
NOT_CONNECTED = {
    SmartleadStatus.NO_API_KEY: "has not connected Smartlead (no API key)",
    SmartleadStatus.NO_EMAIL_ACCOUNT: "has not chosen a Smartlead email account to send from",
    SmartleadStatus.INVALID_KEY: "has Smartlead credentials that are invalid (key rejected)",
    SmartleadStatus.NO_API_ACCESS: "has a Smartlead plan without API access",
    SmartleadStatus.UNREADABLE_KEY: "has a saved Smartlead key the server cannot decrypt",
}
PUSH_FIELDS = ("state", "campaign_id", "outcome", "pushed_at")
HOLD_FIELDS = ("kind", "until", "detail")


def for_explanation(queryset: QuerySet[Enrollment]) -> QuerySet[Enrollment]:
    """Loads everything `explain` reads, in a fixed number of queries for any number of rows."""
    latest_push = Push.objects.filter(enrollment_id=OuterRef("pk")).order_by("-created_at")
    failure = StepRecord.objects.filter(enrollment_id=OuterRef("pk"), action="failed")
    held = MailboxPause.objects.filter(enrollment_id=OuterRef("pk")).values("reason")[:1]
    hold = EnrollmentHold.objects.open().filter(enrollment_id=OuterRef("pk"))
    # The annotated status and the mailboxes, so no row asks for its creator's again.
    creators = Profile.objects.with_smartlead_status().with_mailboxes()
    return (
        queryset.select_related("sequence__provisioning", "contact")
        .prefetch_related(
            Prefetch("sequence__created_by", queryset=creators),
            "sequence__steps",
            Prefetch(
                "engagements",
                queryset=Engagement.objects.filter(engagement_type__in=SIGNALS),
                to_attr="signals",
            ),
        )
        .annotate(
            **{f"push_{name}": Subquery(latest_push.values(name)[:1]) for name in PUSH_FIELDS},
            failure_detail=Subquery(failure.order_by("-created_at").values("detail")[:1]),
            mailbox_pause=Subquery(held),
            **{f"hold_{name}": Subquery(hold.values(name)[:1]) for name in HOLD_FIELDS},
        )
    )


def explain(enrollment: Enrollment) -> str:
    """What this enrollment is waiting for, or why it stopped, in one sentence or two."""
    if enrollment.status == EnrollmentStatus.FAILED:
        return f"Failed because: {failure_reason(enrollment)}"
    paused = enrollment.status == EnrollmentStatus.PAUSED
    if paused and (held := paused_for_mailbox(enrollment) or why_paused(enrollment)):
        return held
    if enrollment.status in FINISHED:
        return FINISHED[enrollment.status]
    sequence = enrollment.sequence
    blocker = sequence_blocker(sequence) if sequence else "Its sequence no longer exists."
    return blocker or progress(enrollment)


def sequence_blocker(sequence: Sequence) -> str | None:
    """What stops every enrollment of this sequence from being sent, if anything."""
    if sequence.status != SequenceStatus.ACTIVE:
        return f"Waiting: the sequence is {sequence.get_status_display().lower()}, not active."
    creator = sequence.created_by
    if creator is None:
        return "Blocked: the sequence has no creator, so no Smartlead account to send from."
    status = creator.smartlead_status()
    if status == SmartleadStatus.NO_HEALTHY_MAILBOX:
        return (
            f"Held: none of the mailboxes of the sequence's creator ({creator}) may send "
            f"({why_held(creator)}). Nothing new is sent until a health read shows one healthy "
            "(verifying in the admin, or the hourly reconcile pass) or they choose another."
        )
    if status in NOT_CONNECTED:
        return f"Blocked: the sequence's creator ({creator}) {NOT_CONNECTED[status]}."
    return provisioning_blocker(sequence)


def provisioning_blocker(sequence: Sequence) -> str | None:
    # The steps as they are now, not the last attempt's verdict: the SDR may have fixed them.
    steps = sorted(sequence.steps.all(), key=attrgetter("step_number"))
    reason = unsupported_reason(sequence, steps)
    if reason:
        return f"Blocked: the sequence cannot be provisioned in Smartlead. {reason}"
    record = _provisioning(sequence)
    if record is not None and record.state == ProvisioningState.NEEDS_ATTENTION:
        return f"Blocked: its Smartlead campaign needs attention. {record.reason}"
    if record is not None and record.state == ProvisioningState.FAILED:
        return f"Waiting: its Smartlead campaign setup failed (retried next run): {record.reason}"
    return None


def progress(enrollment: Enrollment) -> str:
    """For an enrollment nothing blocks: where it stands with Smartlead and what comes next."""
    push = _latest_push(enrollment)
    parts = []
    if push and push["state"] == PushState.PUSHED:
        parts.append(f"Pushed to campaign {push['campaign_id']} at {when(push['pushed_at'])}.")
    elif push and push["state"] == PushState.PENDING:
        parts.append(f"Being pushed to campaign {push['campaign_id']} (re-sent if interrupted).")
    due = enrollment.next_send_at
    if due and due > timezone.now():
        parts.append(f"Step {enrollment.current_step} is scheduled for {when(due)}.")
    else:
        parts.append(f"Step {enrollment.current_step} is due now: the next executor run takes it.")
    parts.append(next_step(enrollment, pushed=bool(push and push["state"] == PushState.PUSHED)))
    record = _provisioning(enrollment.sequence)
    if record is not None and record.smartlead_status:
        at = when(record.smartlead_status_at) if record.smartlead_status_at else "lately"
        parts.append(f"Smartlead, {at}: {record.smartlead_status_detail}")
    return " ".join(parts)


def next_step(enrollment: Enrollment, *, pushed: bool) -> str:
    """What the due step will do, by the rule the executor applies (`steps.decide`)."""
    sequence = enrollment.sequence
    steps = Steps(sequence.steps.all())
    item = as_claimed(enrollment, pushed=pushed)
    if hasattr(enrollment, "signals"):
        signals = frozenset(e.engagement_type for e in enrollment.signals)
    elif steps.has_conditions:
        signals = Engagement.objects.signals_for(sequence.id, [item]).get(item.id, frozenset())
    else:
        signals = frozenset()
    return describe(decide(steps, item, signals), item.current_step, sequence.campaign)


def as_claimed(enrollment: Enrollment, *, pushed: bool) -> Claimed:
    """An enrollment loaded as a model (with its contact), as the step rule reads a claimed one."""
    contact = enrollment.contact
    return Claimed(
        enrollment.id,
        enrollment.contact_id,
        enrollment.current_step,
        *(
            getattr(contact, name, None)
            for name in ("email", "first_name", "last_name", "company", "phone", "title")
        ),
        getattr(contact, "unsubscribed_at", None),
        pushed,
    )


def budget_note(enrollment: Enrollment) -> str | None:
    """When the sequence's SDR's key has no request budget left for new pushes (the hour's or
    the minute's, shared by every process using the key): what this enrollment waits for.
    Asks the budget's store, so only for one enrollment at a time (the command, the admin's
    page of one enrollment), never a list."""
    sequence = enrollment.sequence
    creator = sequence.created_by if sequence is not None else None
    credentials = creator.smartlead_credentials() if creator is not None else None
    if credentials is None or enrollment.status != EnrollmentStatus.ACTIVE:
        return None
    budget = budget_for(
        credentials.api_key,
        Limits(
            per_minute=settings.SMARTLEAD_REQUESTS_PER_MINUTE,
            per_hour=settings.SMARTLEAD_REQUESTS_PER_HOUR,
        ),
    )
    usage = budget.usage()
    if usage["wait"] <= 0:
        return None
    until = timezone.now() + timedelta(seconds=usage["wait"])
    return (
        f"Waiting: the SDR's Smartlead request budget for new pushes is spent "
        f"({usage['minute']} requests in the last minute, {usage['hour']} in the last hour; "
        f"{budget.describe()} for new pushes, shared by every process using the key). The "
        f"first run after {when(until)} sends it."
    )


def paused_for_mailbox(enrollment: Enrollment) -> str | None:
    """Why the backend paused it (no mailbox of its SDR could send), if it did."""
    if hasattr(enrollment, "mailbox_pause"):
        return enrollment.mailbox_pause
    held = MailboxPause.objects.filter(enrollment_id=enrollment.id)
    return held.values_list("reason", flat=True).first()


def why_paused(enrollment: Enrollment) -> str | None:
    """The backend's own pause (EnrollmentHold), in words; None for any other pause."""
    if hasattr(enrollment, "hold_kind"):
        hold = {name: getattr(enrollment, f"hold_{name}") for name in HOLD_FIELDS}
    else:
        holds = EnrollmentHold.objects.open().filter(enrollment_id=enrollment.id)
        hold = holds.values(*HOLD_FIELDS).first() or {"kind": None}
    if hold["kind"] == HoldKind.OUT_OF_OFFICE:
        return (
            f"Paused: out of office until {when(hold['until'])} (an auto-reply); it resumes by "
            "itself then, here and at Smartlead, and its next step follows."
        )
    if hold["kind"] == HoldKind.SAME_COMPANY:
        return f"Paused: {hold['detail']}, someone at the same company. Resume it to go on."
    return None


def failure_reason(enrollment: Enrollment) -> str:
    """The executor's words (StepRecord), else the push ledger's outcome."""
    if hasattr(enrollment, "failure_detail"):
        detail = enrollment.failure_detail
    else:
        failures = StepRecord.objects.filter(enrollment_id=enrollment.id, action="failed")
        detail = failures.order_by("-created_at").values_list("detail", flat=True).first()
    if detail:
        return detail
    push = _latest_push(enrollment)
    if push and push["state"] == PushState.REJECTED:
        return f"Smartlead rejected the lead ({push['outcome']})."
    return "no reason was recorded."


def when(moment: datetime | None) -> str:
    return f"{timezone.localtime(moment, UTC):%Y-%m-%d %H:%M} UTC" if moment else "?"


def _latest_push(enrollment: Enrollment) -> dict | None:
    if hasattr(enrollment, "push_state"):
        if enrollment.push_state is None:
            return None
        return {name: getattr(enrollment, f"push_{name}") for name in PUSH_FIELDS}
    pushes = Push.objects.filter(enrollment_id=enrollment.id).order_by("-created_at")
    return pushes.values(*PUSH_FIELDS).first()


def _provisioning(sequence: Sequence) -> CampaignProvisioning | None:
    try:
        return sequence.provisioning
    except CampaignProvisioning.DoesNotExist:
        return None
