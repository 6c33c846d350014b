"""The hosted Supabase tables of sequences, contacts and their activity (unmanaged models).

Field names and status values match ../shared/docs/supabase-schema.md exactly. The backend's own
records (provisioning, the push ledger, runs, the outbox) are managed models in
sequences/records.py, imported here; every status value is in sequences/choices.py.
"""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

from django.db import models
from django.utils import timezone

from profiles.models import Profile
from sequences.choices import (
    SIGNALS,
    CallStatus,
    EngagementType,
    EnrollmentStatus,
    HoldKind,
    Job,
    OptOutOrigin,
    OptOutScope,
    ProvisioningState,
    PushState,
    RunTrigger,
    SequenceStatus,
    ShareState,
    StepType,
    SyncAction,
    SyncState,
)
from sequences.claimed import lease_length

# The querysets, and the backend's own records (mailbox_pauses.py, records.py), registered
# with this app and importable from here like the rest.
from sequences.mailbox_pauses import MailboxPause
from sequences.managers import (
    CallTaskQuerySet,
    EngagementQuerySet,
    EnrollmentQuerySet,
)
from sequences.records import (
    CampaignProvisioning,
    EnrollmentHold,
    ExecutorRun,
    OptOut,
    OptOutContact,
    Push,
    Share,
    StepRecord,
    SyncChange,
    Worker,
)

# Smartlead campaign ids are integers; the hosted column is text anyone could have typed into.
CAMPAIGN_ID = re.compile(r"[0-9]{1,18}")


class Contact(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    email = models.TextField(null=True, blank=True, help_text="Typed by people: may be malformed.")
    first_name = models.TextField(null=True, blank=True)
    last_name = models.TextField(null=True, blank=True)
    company = models.TextField(null=True, blank=True)
    title = models.TextField(null=True, blank=True)
    phone = models.TextField(null=True, blank=True)
    engagement_score = models.IntegerField(null=True, default=0)
    unsubscribed_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        Profile,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_column="created_by",
        related_name="+",
    )
    created_at = models.DateTimeField(null=True, default=timezone.now)

    class Meta:
        managed = False
        db_table = "contacts"
        ordering = ["email"]

    def __str__(self) -> str:
        return self.email or f"contact {self.id}"


class Sequence(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.TextField()
    description = models.TextField(null=True, blank=True)
    status = models.TextField(choices=SequenceStatus.choices, default=SequenceStatus.DRAFT)
    created_by = models.ForeignKey(
        Profile,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_column="created_by",
        related_name="sequences",
        help_text="The SDR whose Smartlead account sends this sequence.",
    )
    smartlead_campaign_id = models.TextField(
        null=True, blank=True, help_text="The Smartlead campaign (in the creator's account)."
    )
    created_at = models.DateTimeField(null=True, default=timezone.now)
    updated_at = models.DateTimeField(null=True, default=timezone.now)

    Status = SequenceStatus

    class Meta:
        managed = False
        db_table = "sequences"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def campaign(self) -> int | None:
        """The Smartlead campaign id as a number; None without one (or with a value that is
        not a campaign id, such as text typed by hand)."""
        value = (self.smartlead_campaign_id or "").strip()
        return int(value) if CAMPAIGN_ID.fullmatch(value) else None

    @property
    def has_campaign(self) -> bool:
        return self.campaign is not None


class SequenceStep(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    sequence = models.ForeignKey(
        Sequence, null=True, on_delete=models.CASCADE, related_name="steps"
    )
    step_number = models.IntegerField(help_text="1-based position in the sequence.")
    step_type = models.TextField(choices=StepType.choices, default=StepType.EMAIL)
    subject = models.TextField(null=True, blank=True)
    body = models.TextField(null=True, blank=True)
    delay_days = models.IntegerField(null=True, default=0)
    delay_hours = models.IntegerField(null=True, default=0)
    call_objective = models.TextField(null=True, blank=True)
    call_script = models.TextField(null=True, blank=True)
    condition_previous_opened = models.BooleanField(null=True, default=False)
    condition_previous_clicked = models.BooleanField(null=True, default=False)
    condition_not_replied = models.BooleanField(null=True, default=False)

    class Meta:
        managed = False
        db_table = "sequence_steps"
        ordering = ["sequence_id", "step_number"]
        constraints = [
            models.UniqueConstraint(
                fields=["sequence", "step_number"],
                name="sequence_steps_sequence_id_step_number_key",
            )
        ]

    def __str__(self) -> str:
        return f"{self.step_number}. {self.step_type}"

    @property
    def delay(self) -> timedelta:
        return timedelta(days=self.delay_days or 0, hours=self.delay_hours or 0)

    @property
    def is_email(self) -> bool:
        return self.step_type == StepType.EMAIL


class Enrollment(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    sequence = models.ForeignKey(
        Sequence, null=True, on_delete=models.CASCADE, related_name="enrollments"
    )
    contact = models.ForeignKey(
        Contact, null=True, on_delete=models.CASCADE, related_name="enrollments"
    )
    enrolled_by = models.ForeignKey(
        Profile,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_column="enrolled_by",
        related_name="+",
    )
    status = models.TextField(choices=EnrollmentStatus.choices, default=EnrollmentStatus.ACTIVE)
    current_step = models.IntegerField(default=1, help_text="The step_number due next.")
    next_send_at = models.DateTimeField(null=True, default=timezone.now)
    enrolled_at = models.DateTimeField(null=True, default=timezone.now)
    completed_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(null=True, default=timezone.now)

    objects = EnrollmentQuerySet.as_manager()
    Status = EnrollmentStatus
    # The ladder: what Smartlead says of a lead (a bounce, a reply, an unsubscribe) moves its
    # enrollment up, never down: a late bounce does not undo a reply, nothing undoes an
    # unsubscribe. Every other status is the bottom rung. Being order-free also lets a batch of
    # events apply in any order. `Enrollment.objects.end_by_event` writes by it. An out-of-office
    # reply is not on it: it pauses an active enrollment until a date (`hold_out_of_office`,
    # the date on `EnrollmentHold`), and any rung ends that pause. It never ends or undoes a real
    # reply; a reply Smartlead itself later categorises as out-of-office was never one.
    LADDER = (EnrollmentStatus.BOUNCED, EnrollmentStatus.REPLIED, EnrollmentStatus.UNSUBSCRIBED)

    class Meta:
        managed = False
        db_table = "sequence_enrollments"
        ordering = ["-enrolled_at"]

    def __str__(self) -> str:
        return f"enrollment {self.id}"

    @classmethod
    def rung(cls, status: str) -> int:
        """How high `status` is on the ladder (0: not on it)."""
        return cls.LADDER.index(status) + 1 if status in cls.LADDER else 0

    @classmethod
    def replaced_by(cls, status: str) -> list[str]:
        """The statuses an event that ends an enrollment as `status` may replace."""
        return [s for s in EnrollmentStatus if cls.rung(s) < cls.rung(status)]

    @classmethod
    def open_to_events(cls) -> list[str]:
        """The statuses Smartlead's word about a lead can still change (the lowest rung)."""
        return cls.replaced_by(cls.LADDER[0])


class Engagement(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    contact = models.ForeignKey(
        Contact, null=True, on_delete=models.CASCADE, related_name="engagements"
    )
    sequence = models.ForeignKey(
        Sequence, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    enrollment = models.ForeignKey(
        Enrollment, null=True, blank=True, on_delete=models.SET_NULL, related_name="engagements"
    )
    engagement_type = models.TextField(choices=EngagementType.choices)
    metadata = models.JSONField(null=True, default=dict, blank=True)
    engaged_at = models.DateTimeField(null=True, default=timezone.now)

    objects = EngagementQuerySet.as_manager()
    Type = EngagementType

    class Meta:
        managed = False
        db_table = "engagements"
        ordering = ["-engaged_at"]

    def __str__(self) -> str:
        return f"{self.engagement_type} {self.engaged_at:%Y-%m-%d %H:%M}"


class CallTask(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    contact = models.ForeignKey(Contact, null=True, on_delete=models.DO_NOTHING, related_name="+")
    sequence = models.ForeignKey(
        Sequence, null=True, blank=True, on_delete=models.DO_NOTHING, related_name="+"
    )
    enrollment = models.ForeignKey(
        Enrollment, null=True, blank=True, on_delete=models.DO_NOTHING, related_name="calls"
    )
    call_objective = models.TextField(null=True, blank=True)
    call_script = models.TextField(null=True, blank=True)
    status = models.TextField(choices=CallStatus.choices, default=CallStatus.SCHEDULED)
    scheduled_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(null=True, default=timezone.now)

    objects = CallTaskQuerySet.as_manager()

    class Meta:
        managed = False
        db_table = "calls"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"call {self.id}"


__all__ = [
    "CAMPAIGN_ID",
    "SIGNALS",
    "CallStatus",
    "CallTask",
    "CampaignProvisioning",
    "Contact",
    "Engagement",
    "EngagementType",
    "Enrollment",
    "EnrollmentHold",
    "EnrollmentStatus",
    "ExecutorRun",
    "HoldKind",
    "MailboxPause",
    "OptOut",
    "OptOutContact",
    "OptOutOrigin",
    "OptOutScope",
    "ProvisioningState",
    "Push",
    "PushState",
    "Job",
    "RunTrigger",
    "Share",
    "ShareState",
    "Sequence",
    "SequenceStatus",
    "SequenceStep",
    "StepRecord",
    "StepType",
    "SyncAction",
    "SyncChange",
    "SyncState",
    "Worker",
    "lease_length",
]
