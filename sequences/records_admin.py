"""The admin of this backend's own records: executor runs, the push ledger, campaign
provisioning and the outbox. Read-only logs, registered from sequences/admin.py."""

from __future__ import annotations

from operator import attrgetter

from django.contrib import admin, messages
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.safestring import SafeString

from outboundhq.links import change, changelist, links, sdr
from outboundhq.listing import ListTools, ReadOnlyAdmin, date_range
from sequences import provisioning
from sequences.listing import sdr_filter, webhook_events, with_sdr_email
from sequences.models import (
    CampaignProvisioning,
    ExecutorRun,
    ProvisioningState,
    Push,
    SyncChange,
)

# A run's counts, as the CSV of runs lists them: every counter the record has.
RUN_COUNTS = [
    f.name for f in ExecutorRun._meta.fields if isinstance(f, models.PositiveIntegerField)
]


@admin.register(ExecutorRun)
class ExecutorRunAdmin(ListTools, ReadOnlyAdmin):
    # What ops look for first (when, errors, how long) on the left, where 1400 px shows it.
    list_display = [
        "started_at",
        "trigger",
        "errors_in_short",
        "duration",
        "due",
        "pushed",
        "skipped_no_credentials",
        "failed",
        "deferred",
        "records",
    ]
    list_filter = [
        "trigger",
        sdr_filter(
            lambda rows, pk: rows.filter(pk__in=Push.objects.filter(profile_id=pk).values("run_id"))
        ),
        date_range("started_at", "started"),
    ]
    date_hierarchy = "started_at"
    readonly_fields = ["records"]
    csv_columns = [
        ("id", attrgetter("id")),
        ("started_at", attrgetter("started_at")),
        ("finished_at", attrgetter("finished_at")),
        ("trigger", attrgetter("trigger")),
        *((name, attrgetter(name)) for name in RUN_COUNTS),
        (
            "turned_away",
            lambda r: "; ".join(f"{n} {why}" for why, n in sorted((r.skipped or {}).items())),
        ),
        ("errors", lambda r: " | ".join(map(str, r.errors or []))),
    ]

    @admin.display(description="Records")
    def records(self, obj: ExecutorRun) -> SafeString:
        return links(("Pushes", changelist("sequences_push", run_id=obj.pk)))

    @admin.display(description="Errors")
    def errors_in_short(self, obj: ExecutorRun) -> str:
        errors = [str(e) for e in obj.errors or []]
        if not errors:
            return "0"
        first = errors[0] if len(errors[0]) <= 90 else errors[0][:89] + "…"
        return f"{len(errors)}: {first}"

    @admin.display(description="Duration")
    def duration(self, obj: ExecutorRun) -> str:
        if not obj.finished_at:
            return "running"
        return f"{(obj.finished_at - obj.started_at).total_seconds():.1f} s"


@admin.register(Push)
class PushAdmin(ListTools, ReadOnlyAdmin):
    # When it was pushed is on its page and in the CSV: at 1400 px the SDR and records first.
    list_display = [
        "email",
        "sdr",
        "campaign_id",
        "state",
        "outcome",
        "created_at",
        "records",
    ]
    list_filter = [
        "state",
        "outcome",
        sdr_filter(lambda rows, pk: rows.filter(profile_id=pk)),
        date_range("created_at", "created"),
    ]
    search_fields = ["email", "=campaign_id", "=enrollment_id"]
    readonly_fields = ["sdr", "records"]
    csv_columns = [
        ("id", attrgetter("id")),
        ("email", attrgetter("email")),
        ("sdr", attrgetter("sdr_email")),
        ("campaign_id", attrgetter("campaign_id")),
        ("state", attrgetter("state")),
        ("outcome", attrgetter("outcome")),
        ("attempts", attrgetter("attempts")),
        ("created_at", attrgetter("created_at")),
        ("pushed_at", attrgetter("pushed_at")),
        ("enrollment_id", attrgetter("enrollment_id")),
        ("sequence_id", attrgetter("sequence_id")),
        ("run_id", attrgetter("run_id")),
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Push]:
        return with_sdr_email(super().get_queryset(request))

    @admin.display(description="SDR", ordering="sdr_email")
    def sdr(self, obj: Push) -> SafeString | str:
        return sdr(obj.profile_id, obj.sdr_email)

    @admin.display(description="Records")
    def records(self, obj: Push) -> SafeString:
        return links(
            ("Enrollment", change("sequences_enrollment", obj.enrollment_id)),
            ("Sequence", change("sequences_sequence", obj.sequence_id)),
            ("Profile", change("profiles_profile", obj.profile_id)),
            ("Run", change("sequences_executorrun", obj.run_id)) if obj.run_id else None,
            webhook_events(obj.campaign_id, obj.email),
        )


@admin.register(CampaignProvisioning)
class CampaignProvisioningAdmin(ReadOnlyAdmin):
    list_display = [
        "sequence",
        "sdr",
        "state",
        "campaign_id",
        "mailboxes",
        "stages",
        "reason",
        "smartlead_status",
        "attempts",
        "updated_at",
        "reconciled_at",
    ]
    list_filter = ["state", "smartlead_status"]
    list_select_related = ["sequence__created_by"]
    actions = ["reprovision"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[CampaignProvisioning]:
        return super().get_queryset(request).prefetch_related("sequence__created_by__mailboxes")

    @admin.display(description="Mailboxes")
    def mailboxes(self, obj: CampaignProvisioning) -> str:
        """The SDR's mailboxes the campaign was last brought in line with, by address."""
        ids = obj.mailbox_ids if obj.mailbox_ids is not None else [obj.mailbox_id]
        creator = obj.sequence.created_by
        rows = {row.mailbox_id: row for row in creator.mailboxes.all()} if creator else {}
        if obj.mailbox_ids == []:
            return "none healthy: its leads in progress are paused"
        return (
            ", ".join(
                f"{rows[i].address or i} {'✓' if rows[i].healthy else '✗'}" if i in rows else str(i)
                for i in ids
                if i is not None
            )
            or "—"
        )

    @admin.display(description="SDR", ordering="sequence__created_by__email")
    def sdr(self, obj: CampaignProvisioning) -> SafeString | str:
        owner = obj.sequence.created_by if obj.sequence.created_by_id else None
        return sdr(owner.pk, owner.label) if owner else "—"

    def has_reprovision_permission(self, request: HttpRequest) -> bool:
        # The admin is read-only, but the model's change permission is what this needs.
        return request.user.has_perm("sequences.change_campaignprovisioning")

    @admin.action(
        description="Re-provision in a new campaign (leads sent to the lost one are paused)",
        permissions=["reprovision"],
    )
    def reprovision(self, request: HttpRequest, queryset: QuerySet[CampaignProvisioning]) -> None:
        lost = list(queryset.filter(state=ProvisioningState.NEEDS_ATTENTION))
        paused = sum(
            provisioning.reprovision(
                record.sequence_id,
                f"Re-provisioned by {request.user} after campaign {record.campaign_id} was lost.",
            )
            for record in lost
        )
        ignored = queryset.count() - len(lost)
        self.message_user(
            request,
            f"{len(lost)} sequences get a new campaign on the next run; {paused} enrollments "
            "already sent to the lost campaign were paused (resume them to send them again from "
            f"the first email). {ignored} selected did not need attention and were left as they "
            "are.",
            messages.SUCCESS if lost else messages.WARNING,
        )

    @admin.display(description="Stages done")
    def stages(self, obj: CampaignProvisioning) -> str:
        return ", ".join(obj.completed_stages or []) or "—"


@admin.register(SyncChange)
class SyncChangeAdmin(ReadOnlyAdmin):
    """The outbox: what the app changed and Smartlead must learn. Pending rows are retried every
    run; failed ones say why (e.g. a campaign not paused before its SDR disconnected)."""

    list_display = [
        "action",
        "state",
        "email",
        "sdr",
        "campaign_id",
        "attempts",
        "last_error",
        "created_at",
        "done_at",
    ]
    list_filter = ["state", "action"]
    search_fields = ["email", "=campaign_id", "=enrollment_id", "=sequence_id", "=profile_id"]
    readonly_fields = ["sdr"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[SyncChange]:
        return with_sdr_email(super().get_queryset(request))

    @admin.display(description="SDR", ordering="sdr_email")
    def sdr(self, obj: SyncChange) -> SafeString | str:
        return sdr(obj.profile_id, obj.sdr_email)
