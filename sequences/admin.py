from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from sequences import explain, provisioning
from sequences.models import (
    CallTask,
    CampaignProvisioning,
    Contact,
    Engagement,
    Enrollment,
    ExecutorRun,
    ProvisioningState,
    Push,
    Sequence,
    SequenceStep,
    SyncChange,
)


class SequenceStepInline(admin.TabularInline):
    model = SequenceStep
    extra = 0
    fields = [
        "step_number",
        "step_type",
        "subject",
        "delay_days",
        "delay_hours",
        "condition_previous_opened",
        "condition_previous_clicked",
        "condition_not_replied",
    ]


@admin.register(Sequence)
class SequenceAdmin(admin.ModelAdmin):
    list_display = ["name", "status", "created_by", "smartlead_campaign_id", "updated_at"]
    list_filter = ["status"]
    list_select_related = ["created_by"]
    search_fields = ["name", "created_by__email", "smartlead_campaign_id"]
    raw_id_fields = ["created_by"]
    inlines = [SequenceStepInline]


@admin.register(Enrollment)
class EnrollmentAdmin(admin.ModelAdmin):
    list_display = [
        "contact",
        "sequence",
        "status",
        "current_step",
        "next_send_at",
        "why_not_sent",
        "enrolled_at",
    ]
    list_filter = ["status", "sequence"]
    list_select_related = ["contact", "sequence"]
    search_fields = ["contact__email"]
    raw_id_fields = ["sequence", "contact", "enrolled_by"]
    readonly_fields = ["why_not_sent"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Enrollment]:
        # Everything the why-not-sent column reads, in a fixed number of queries per page. The
        # changelist skips list_select_related once a queryset has any select_related: add it.
        queryset = super().get_queryset(request).select_related(*self.list_select_related)
        return explain.for_explanation(queryset)

    @admin.display(description="Why not sent")
    def why_not_sent(self, obj: Enrollment) -> str:
        return explain.explain(obj)


@admin.register(Contact)
class ContactAdmin(admin.ModelAdmin):
    list_display = [
        "email",
        "first_name",
        "last_name",
        "company",
        "engagement_score",
        "unsubscribed_at",
    ]
    search_fields = ["email", "first_name", "last_name", "company"]
    raw_id_fields = ["created_by"]


@admin.register(Engagement)
class EngagementAdmin(admin.ModelAdmin):
    list_display = ["engagement_type", "contact", "sequence", "engaged_at"]
    list_filter = ["engagement_type"]
    list_select_related = ["contact", "sequence"]
    search_fields = ["contact__email"]
    raw_id_fields = ["contact", "sequence", "enrollment"]


@admin.register(CallTask)
class CallTaskAdmin(admin.ModelAdmin):
    list_display = ["contact", "sequence", "status", "scheduled_at", "created_at"]
    list_filter = ["status"]
    list_select_related = ["contact", "sequence"]
    search_fields = ["contact__email"]
    raw_id_fields = ["contact", "sequence", "enrollment"]


class ReadOnlyAdmin(admin.ModelAdmin):
    """Logs are for reading: no adding, editing or deleting from the admin."""

    def has_add_permission(self, request: object) -> bool:
        return False

    def has_change_permission(self, request: object, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: object, obj: object = None) -> bool:
        return False


@admin.register(ExecutorRun)
class ExecutorRunAdmin(ReadOnlyAdmin):
    list_display = [
        "started_at",
        "trigger",
        "due",
        "pushed",
        "skipped_no_credentials",
        "failed",
        "call_tasks",
        "completed",
        "deferred",
        "error_count",
        "duration",
    ]
    list_filter = ["trigger"]
    date_hierarchy = "started_at"

    @admin.display(description="Errors")
    def error_count(self, obj: ExecutorRun) -> int:
        return len(obj.errors or [])

    @admin.display(description="Duration")
    def duration(self, obj: ExecutorRun) -> str:
        if not obj.finished_at:
            return "running"
        return f"{(obj.finished_at - obj.started_at).total_seconds():.1f} s"


@admin.register(Push)
class PushAdmin(ReadOnlyAdmin):
    list_display = [
        "email",
        "campaign_id",
        "state",
        "outcome",
        "attempts",
        "created_at",
        "pushed_at",
    ]
    list_filter = ["state", "outcome"]
    search_fields = ["email", "=campaign_id", "=enrollment_id"]


@admin.register(CampaignProvisioning)
class CampaignProvisioningAdmin(ReadOnlyAdmin):
    list_display = [
        "sequence",
        "state",
        "campaign_id",
        "stages",
        "reason",
        "smartlead_status",
        "attempts",
        "updated_at",
    ]
    list_filter = ["state", "smartlead_status"]
    list_select_related = ["sequence"]
    actions = ["reprovision"]

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
        "campaign_id",
        "attempts",
        "last_error",
        "created_at",
        "done_at",
    ]
    list_filter = ["state", "action"]
    search_fields = ["email", "=campaign_id", "=enrollment_id", "=sequence_id", "=profile_id"]
