"""The backend's own records, beside the hosted tables (managed models, app `sequences`):
campaign provisioning, the push ledger, step records, executor runs and the outbox.

None of these has a database foreign key to a hosted table: deleting a user, contact or
sequence in the web app must never be blocked by the backend's records. They are defined here
and imported by sequences/models.py, which is where Django and the rest of the code find them.
"""

from __future__ import annotations

import uuid

from django.apps import apps
from django.db import models
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from sequences.choices import (
    HoldKind,
    Job,
    OptOutOrigin,
    OptOutScope,
    ProvisioningState,
    PushState,
    RunTrigger,
    ShareState,
    SyncAction,
    SyncState,
)
from sequences.holds import HoldQuerySet
from sequences.ledger import PushQuerySet
from sequences.managers import CampaignProvisioningQuerySet
from sequences.outbox import SyncChangeQuerySet
from sequences.shares import ShareQuerySet, WorkerQuerySet


class CampaignProvisioning(models.Model):
    """How far the Smartlead campaign of one sequence has been set up, so a half-done setup
    is resumed by the next run instead of creating a second campaign."""

    sequence = models.OneToOneField(
        "sequences.Sequence",
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        primary_key=True,
        related_name="provisioning",
    )
    state = models.CharField(
        max_length=16, choices=ProvisioningState.choices, default=ProvisioningState.PENDING
    )
    campaign_id = models.BigIntegerField(null=True, blank=True)
    completed_stages = models.JSONField(
        default=list, blank=True, help_text="Setup stages Smartlead has accepted, in order."
    )
    reason = models.TextField(blank=True, help_text="Why the last attempt failed or cannot work.")
    lease_until = models.DateTimeField(
        null=True, blank=True, help_text="Another executor is provisioning until then."
    )
    attempts = models.PositiveIntegerField(default=0)
    # db_default: a version still running during a deploy inserts rows without it.
    lease_holder = models.CharField(
        max_length=120, blank=True, db_default="", help_text="The worker holding the lease."
    )
    updated_at = models.DateTimeField(auto_now=True)
    # What Smartlead last said about the campaign itself (CAMPAIGN_STATUS_CHANGED, or a bounce
    # breach): e.g. it paused the campaign for bounces. Shown to ops; sending is Smartlead's.
    mailbox_id = models.BigIntegerField(
        null=True, blank=True, help_text="The SDR's first email account the campaign sends from."
    )
    # Null on records from before several mailboxes: `mailbox_id` alone was attached.
    mailbox_ids = models.JSONField(
        null=True,
        blank=True,
        help_text="The SDR's healthy mailboxes the campaign was last brought in line with "
        "(empty: none was healthy, its in-progress leads paused).",
    )
    # db_default: a version still running during a deploy inserts rows without these columns.
    smartlead_status = models.CharField(max_length=32, blank=True, db_default="")
    smartlead_status_detail = models.TextField(blank=True, db_default="")
    smartlead_status_at = models.DateTimeField(null=True, blank=True)
    reconciled_at = models.DateTimeField(
        null=True, blank=True, help_text="When the reconcile pass last read the campaign's leads."
    )
    settings_applied = models.CharField(
        max_length=64,
        blank=True,
        db_default="",
        help_text="What the campaign's settings were last set to (sequences/campaign_settings.py); "
        "another value makes the outbox apply the current ones.",
    )

    objects = CampaignProvisioningQuerySet.as_manager()

    class Meta:
        db_table = "outboundhq_campaign_provisioning"

    def __str__(self) -> str:
        return f"{self.sequence_id}: {self.state}"


class Push(models.Model):
    """The ledger: one row per enrollment pushed to a campaign. Written as `pending` before the
    request and `pushed` after it, so a crash in between re-sends (Smartlead de-duplicates) and
    nothing is ever pushed twice by design."""

    enrollment_id = models.UUIDField()
    campaign_id = models.BigIntegerField()
    sequence_id = models.UUIDField()
    profile_id = models.UUIDField(help_text="The SDR whose key pushed it.")
    email = models.TextField()
    state = models.CharField(max_length=16, choices=PushState.choices, default=PushState.PENDING)
    outcome = models.CharField(max_length=32, blank=True)
    counts = models.JSONField(
        default=dict, blank=True, help_text="Smartlead's counts for the batch."
    )
    attempts = models.PositiveIntegerField(
        default=1,
        help_text="Times it was reserved for a request: above 1, it may have gone out again "
        "(Smartlead keeps one copy per campaign).",
    )
    run_id = models.UUIDField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    pushed_at = models.DateTimeField(null=True, blank=True)

    objects = PushQuerySet.as_manager()
    State = PushState
    # A row in these states is sent again: interrupted before, or rejected and fixed since.
    RESENDABLE = (PushState.PENDING, PushState.REJECTED)

    class Meta:
        db_table = "outboundhq_push"
        constraints = [
            models.UniqueConstraint(
                fields=["enrollment_id", "campaign_id"], name="outboundhq_push_once_per_campaign"
            )
        ]

    def __str__(self) -> str:
        return f"{self.email} → campaign {self.campaign_id} ({self.state})"


class StepRecord(models.Model):
    """Steps the executor has carried out per enrollment, so a call task is created once."""

    enrollment_id = models.UUIDField()
    step_number = models.IntegerField()
    action = models.CharField(max_length=16)
    detail = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "outboundhq_step_record"
        constraints = [
            models.UniqueConstraint(
                fields=["enrollment_id", "step_number"], name="outboundhq_step_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.enrollment_id} step {self.step_number}: {self.action}"


class SharedOutRun(models.Model):
    """What a run shared out to workers records of its spread (an executor run, a reconcile
    pass). db_default: a version still running during a deploy inserts rows without these."""

    tasks = models.PositiveIntegerField(
        default=0, db_default=0, help_text="django-q2 tasks it was shared out to (0: one process)."
    )
    workers = models.PositiveIntegerField(
        default=0, db_default=0, help_text="Worker processes that took a share of it."
    )
    started_by = models.CharField(
        max_length=120, blank=True, db_default="", help_text="The worker process that started it."
    )

    class Meta:
        abstract = True

    def left_alone(self) -> bool:
        """A run of one process (no tasks) whose process is gone: nobody takes its waiting
        SDRs."""
        return not self.tasks and Worker.objects.is_gone(self.started_by, since=self.started_at)


class ExecutorRun(SharedOutRun):
    """One executor run and what it did: the record ops read in the admin."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    trigger = models.CharField(max_length=16, choices=RunTrigger.choices)
    dry_run = models.BooleanField(default=False)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    due = models.PositiveIntegerField(default=0)
    pushed = models.PositiveIntegerField(default=0)
    skipped_no_credentials = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    call_tasks = models.PositiveIntegerField(default=0)
    completed = models.PositiveIntegerField(default=0)
    advanced = models.PositiveIntegerField(default=0)
    deferred = models.PositiveIntegerField(
        default=0, help_text="Claimed but left for the next run (Smartlead errors, time budget)."
    )
    campaigns_provisioned = models.PositiveIntegerField(default=0)
    smartlead_requests = models.PositiveIntegerField(
        default=0, help_text="Add-leads requests sent to Smartlead by this run."
    )
    skipped = models.JSONField(
        default=dict,
        blank=True,
        help_text="Leads Smartlead turned away, by reason (blocked, bounced, in another campaign, "
        "unsubscribed, invalid).",
    )
    errors = models.JSONField(default=list, blank=True)
    propagated = models.PositiveIntegerField(
        default=0,
        db_default=0,  # a version still running during a deploy inserts runs without it
        help_text="Changes made in the app that reached Smartlead (the outbox).",
    )
    deadline = models.DateTimeField(
        null=True, blank=True, help_text="Its workers take no new SDR after this."
    )
    scope = models.JSONField(
        default=dict, blank=True, db_default={}, help_text="--user / --sequence, if given."
    )

    class Meta:
        db_table = "outboundhq_executor_run"
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"{self.trigger} run {self.started_at:%Y-%m-%d %H:%M:%S}"


class SyncChange(models.Model):
    """The outbox: one change made in the app that Smartlead must learn, applied idempotently.

    A row is written before Smartlead is called, so a process killed mid-way leaves it pending
    and the next run applies it. Project-owned table.
    """

    action = models.CharField(max_length=24, choices=SyncAction.choices)
    state = models.CharField(max_length=16, choices=SyncState.choices, default=SyncState.PENDING)
    sequence_id = models.UUIDField()
    enrollment_id = models.UUIDField(null=True, blank=True)
    profile_id = models.UUIDField(help_text="The SDR whose key applies it.")
    campaign_id = models.BigIntegerField()
    email = models.TextField(blank=True, help_text="The lead, for lead actions.")
    mailbox_id = models.BigIntegerField(null=True, blank=True, help_text="For a mailbox move.")
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    done_at = models.DateTimeField(null=True, blank=True)

    objects = SyncChangeQuerySet.as_manager()

    class Meta:
        db_table = "outboundhq_sync_change"
        indexes = [
            models.Index(fields=["state", "profile_id"], name="sync_change_pending"),
            models.Index(fields=["enrollment_id", "campaign_id"], name="sync_change_lead"),
        ]

    def __str__(self) -> str:
        target = self.email or f"campaign {self.campaign_id}"
        return f"{self.get_action_display()}: {target} ({self.state})"


class Worker(models.Model):
    """A process that holds leases (SDRs' shares of a run, a campaign being provisioned), with
    its heartbeat. One whose beat is older than WORKER_TIMEOUT_SECONDS, or whose process is
    gone from this host, is dead: its work is taken over (sequences/workers.py)."""

    id = models.CharField(primary_key=True, max_length=120, help_text="host:pid:start")
    host = models.CharField(max_length=100)
    pid = models.PositiveIntegerField()
    started_at = models.DateTimeField(default=timezone.now)
    beat_at = models.DateTimeField(default=timezone.now)

    objects = WorkerQuerySet.as_manager()

    class Meta:
        db_table = "outboundhq_worker"

    def __str__(self) -> str:
        return self.id


class Share(models.Model):
    """One SDR's share of a run (the executor's or the reconcile pass's), taken by one worker at
    a time, so a run spreads over every process that takes its tasks. Its own `lease_until` is
    the time its claims wrote on the SDR's enrollments: a dead worker's are found by it."""

    job = models.CharField(max_length=16, choices=Job.choices)
    run_id = models.CharField(max_length=40)
    profile_id = models.UUIDField()
    sequence_ids = models.JSONField(
        default=list, blank=True, help_text="The SDR's sequences with ready work, at share-out."
    )
    state = models.CharField(max_length=16, choices=ShareState.choices, default=ShareState.WAITING)
    worker_id = models.CharField(max_length=120, blank=True)
    run_started = models.DateTimeField(help_text="Its run's start: what its released claims get.")
    deadline = models.DateTimeField(help_text="Its run's deadline: taken over after it, left.")
    shared = models.BooleanField(
        default=True, help_text="Its run has tasks that take over a stopped worker's share."
    )
    lease_until = models.DateTimeField(null=True, blank=True, unique=True)
    attempts = models.PositiveIntegerField(default=0)
    taken_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    counts = models.JSONField(default=dict, blank=True)
    errors = models.JSONField(default=list, blank=True)

    objects = ShareQuerySet.as_manager()
    State = ShareState

    class Meta:
        db_table = "outboundhq_run_share"
        constraints = [
            models.UniqueConstraint(
                fields=["job", "run_id", "profile_id"], name="outboundhq_share_once"
            )
        ]
        indexes = [
            models.Index(fields=["job", "run_id", "state"], name="share_run_state"),
            models.Index(fields=["state", "worker_id"], name="share_worker"),
        ]

    def __str__(self) -> str:
        return f"{self.job} {self.run_id}: {self.profile_id} ({self.state})"


class EnrollmentHold(models.Model):
    """Why the backend paused an enrollment (its hosted status is `paused`): an out-of-office
    reply, until its return date, or a reply from someone at the same company. One open row
    per enrollment; released when the enrollment resumes or is no longer paused."""

    enrollment_id = models.UUIDField(unique=True)
    kind = models.CharField(max_length=16, choices=HoldKind.choices)
    until = models.DateTimeField(
        null=True, blank=True, help_text="Out of office: resumed by itself from then."
    )
    message_id = models.TextField(blank=True, help_text="The reply that made it.")
    detail = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    released_at = models.DateTimeField(null=True, blank=True)

    objects = HoldQuerySet.as_manager()

    class Meta:
        db_table = "outboundhq_enrollment_hold"
        indexes = [models.Index(fields=["kind", "until"], name="enrollment_hold_due")]

    def __str__(self) -> str:
        return f"{self.enrollment_id}: {self.get_kind_display()}"


class OptOutQuerySet(models.QuerySet):
    def live(self) -> OptOutQuerySet:
        """Opt-outs in force: not lifted by ops."""
        return self.filter(lifted_at__isnull=True)

    def where_it_happened(self) -> models.QuerySet:
        """The enrollments where these opt-outs happened, whose lead is unsubscribed at
        Smartlead rather than paused: the contact's in the sequence of Smartlead's event, or
        every one of the contact it was set on in the app."""
        here = self.filter(contact_id=OuterRef("contact_id")).filter(
            Q(sequence_id__isnull=True) | Q(sequence_id=OuterRef("sequence_id"))
        )
        # The uncorrelated IN first: hosted enrollments have no index on contact_id, and a
        # hashed list of a few contacts makes the scan cheap before any row is probed.
        enrollments = apps.get_model("sequences", "Enrollment").objects
        return enrollments.filter(contact_id__in=self.values("contact_id")).filter(Exists(here))


class OptOut(models.Model):
    """One prospect's opt-out, where it came from and what it did (sequences/optouts.py): shown
    to ops (admin), and what lifting a mistaken one undoes."""

    email = models.TextField(help_text="The address, lowercased.")
    origin = models.CharField(max_length=24, choices=OptOutOrigin.choices)
    scope = models.CharField(
        max_length=16, choices=OptOutScope.choices, help_text="OPT_OUT_SCOPE when it was applied."
    )
    opted_out_at = models.DateTimeField(help_text="When the prospect opted out.")
    recorded_at = models.DateTimeField(default=timezone.now)
    contact_id = models.UUIDField(null=True, blank=True, help_text="The contact it happened on.")
    sequence_id = models.UUIDField(null=True, blank=True)
    campaign_id = models.BigIntegerField(null=True, blank=True)
    profile_id = models.UUIDField(null=True, blank=True, help_text="The SDR it happened with.")
    webhook_event_id = models.BigIntegerField(null=True, blank=True)
    enrollments = models.JSONField(
        default=dict,
        blank=True,
        help_text="Enrollments it ended elsewhere, with the status each had (lifting restores).",
    )
    lifted_at = models.DateTimeField(null=True, blank=True)
    lifted_by = models.TextField(blank=True)

    objects = OptOutQuerySet.as_manager()

    class Meta:
        db_table = "outboundhq_opt_out"
        ordering = ["-opted_out_at"]
        indexes = [
            models.Index(fields=["email"], name="opt_out_email"),
            models.Index(fields=["contact_id"], name="opt_out_contact"),
        ]

    def __str__(self) -> str:
        return f"{self.email}: {self.get_origin_display()} ({self.opted_out_at:%Y-%m-%d})"


class OptOutContact(models.Model):
    """A contact an opt-out reached: what tells an opt-out set in the app from one already
    recorded, and what lifting gives back."""

    opt_out = models.ForeignKey(OptOut, on_delete=models.CASCADE, related_name="reached")
    contact_id = models.UUIDField()
    unsubscribed_by_it = models.BooleanField(
        default=False, help_text="Its unsubscribed_at was set by this opt-out."
    )

    class Meta:
        db_table = "outboundhq_opt_out_contact"
        constraints = [
            models.UniqueConstraint(fields=["opt_out", "contact_id"], name="opt_out_contact_once")
        ]
        indexes = [models.Index(fields=["contact_id"], name="opt_out_reached_contact")]

    def __str__(self) -> str:
        return f"{self.contact_id} ({self.opt_out_id})"
