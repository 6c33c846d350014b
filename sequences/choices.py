"""Every status and kind value of the sequences app, named once, with no model behind them.

The hosted tables' values match ../shared/docs/supabase-schema.md exactly; the backend's own
records' values are ours. They live apart from the models so that the querysets (managers.py,
outbox.py), which the models import, can use them without importing the models back.
"""

from __future__ import annotations

from django.db import models


class SequenceStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    ACTIVE = "active", "Active"
    PAUSED = "paused", "Paused"
    ARCHIVED = "archived", "Archived"


class StepType(models.TextChoices):
    EMAIL = "email", "Email"
    CALL = "call", "Call"


class EnrollmentStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    PAUSED = "paused", "Paused"
    COMPLETED = "completed", "Completed"
    REPLIED = "replied", "Replied"
    BOUNCED = "bounced", "Bounced"
    UNSUBSCRIBED = "unsubscribed", "Unsubscribed"
    FAILED = "failed", "Failed"


class EngagementType(models.TextChoices):
    EMAIL_SENT = "email_sent", "Email sent"
    EMAIL_OPENED = "email_opened", "Email opened"
    EMAIL_CLICKED = "email_clicked", "Email clicked"
    EMAIL_REPLIED = "email_replied", "Email replied"
    EMAIL_BOUNCED = "email_bounced", "Email bounced"
    EMAIL_UNSUBSCRIBED = "email_unsubscribed", "Email unsubscribed"
    LEAD_CATEGORY_UPDATED = "lead_category_updated", "Lead category updated"
    CALL_SCHEDULED = "call_scheduled", "Call scheduled"


# The engagements a step's conditions look at.
SIGNALS = (EngagementType.EMAIL_OPENED, EngagementType.EMAIL_CLICKED, EngagementType.EMAIL_REPLIED)


class CallStatus(models.TextChoices):
    SCHEDULED = "scheduled", "Scheduled"
    COMPLETED = "completed", "Completed"
    SKIPPED = "skipped", "Skipped"


class ProvisioningState(models.TextChoices):
    PENDING = "pending", "Pending"
    IN_PROGRESS = "in_progress", "In progress"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed (retried next run)"
    UNSUPPORTED = "unsupported", "Cannot be expressed in Smartlead"
    # Smartlead no longer has the campaign for the SDR's key: nothing is sent until ops
    # re-provision it knowingly (admin), so no lead is started over in a new campaign.
    NEEDS_ATTENTION = "needs_attention", "Needs attention: campaign gone from Smartlead"


class PushState(models.TextChoices):
    PENDING = "pending", "Sending (or interrupted: re-sent next run)"
    PUSHED = "pushed", "Pushed"
    REJECTED = "rejected", "Rejected by Smartlead"


class RunTrigger(models.TextChoices):
    SCHEDULE = "schedule", "Schedule"
    COMMAND = "command", "Command"
    CRON = "cron", "Cron endpoint"


class SyncAction(models.TextChoices):
    """What a change made in the app does at Smartlead (sequences/sync.py)."""

    PAUSE_LEAD = "pause_lead", "Pause the lead"
    RESUME_LEAD = "resume_lead", "Resume the lead"
    UNSUBSCRIBE_LEAD = "unsubscribe_lead", "Unsubscribe the lead"
    REMOVE_LEAD = "remove_lead", "Remove the lead"
    PAUSE_CAMPAIGN = "pause_campaign", "Pause the campaign"
    RESUME_CAMPAIGN = "resume_campaign", "Resume the campaign"
    # The campaign's mailboxes made the SDR's healthy ones; leads on a mailbox that left are
    # moved to one that stays, or paused when none is left (sequences/mailboxes.py).
    SYNC_MAILBOXES = "sync_mailboxes", "Bring the campaign's mailboxes in line with the SDR's"
    MOVE_MAILBOX = "move_mailbox", "Move the campaign's mailboxes (older rows)"
    APPLY_SETTINGS = "apply_settings", "Apply the campaign settings (out-of-office, categories)"


class SyncState(models.TextChoices):
    PENDING = "pending", "Pending (retried every run)"
    DONE = "done", "Done"
    SUPERSEDED = "superseded", "Superseded by a later change"
    FAILED = "failed", "Failed for good"


class Job(models.TextChoices):
    """The jobs whose runs are shared out per SDR to any number of workers."""

    EXECUTE = "execute", "Executor run"
    RECONCILE = "reconcile", "Reconcile pass"


class ShareState(models.TextChoices):
    WAITING = "waiting", "Waiting for a worker"
    WORKING = "working", "Being worked on"
    DONE = "done", "Done"
    LEFT = "left", "Left for the next run (time ran out)"


class HoldKind(models.TextChoices):
    """Why the backend paused an enrollment (`EnrollmentHold`); its hosted status is `paused`."""

    OUT_OF_OFFICE = "out_of_office", "Out of office (resumes by itself)"
    SAME_COMPANY = "same_company", "Someone at the same company replied"


class OptOutOrigin(models.TextChoices):
    """Where a prospect opted out (sequences/optouts.py)."""

    UNSUBSCRIBED = "smartlead_unsubscribe", "Unsubscribed in a Smartlead campaign"
    DO_NOT_CONTACT = "smartlead_category", "Marked Do Not Contact in Smartlead"
    APP = "app", "Unsubscribed in the app"


class OptOutScope(models.TextChoices):
    """Whom an opt-out reaches: OPT_OUT_SCOPE."""

    ORGANISATION = "organisation", "Every SDR's contact with the address"
    SDR = "sdr", "The contacts of the SDR it happened with"
