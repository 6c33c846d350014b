from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.safestring import SafeString

from outboundhq.links import change, changelist, link, links
from sequences import explain, optouts, provisioning
from sequences.models import (
    CallTask,
    CampaignProvisioning,
    Contact,
    Engagement,
    Enrollment,
    ExecutorRun,
    OptOut,
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


def webhook_events(campaign_id: int | None, email: str | None = None) -> tuple[str, str] | None:
    """The webhook log of a campaign (and lead): the log stores emails lowercased."""
    if campaign_id is None and not email:
        return None
    filters: dict[str, object] = {"campaign_id": campaign_id} if campaign_id is not None else {}
    if email:
        filters["lead_email"] = email.lower()
    return ("Webhook events", changelist("smartlead_webhookevent", **filters))


@admin.register(Sequence)
class SequenceAdmin(admin.ModelAdmin):
    list_display = ["name", "status", "sdr", "smartlead_campaign_id", "updated_at", "records"]
    list_filter = ["status"]
    list_select_related = ["created_by"]
    search_fields = ["name", "created_by__email", "smartlead_campaign_id"]
    raw_id_fields = ["created_by"]
    readonly_fields = ["records"]
    inlines = [SequenceStepInline]

    @admin.display(description="SDR", ordering="created_by__email")
    def sdr(self, obj: Sequence) -> SafeString | str:
        if obj.created_by_id is None:
            return "—"
        return link(change("profiles_profile", obj.created_by_id), obj.created_by)

    @admin.display(description="Records")
    def records(self, obj: Sequence) -> SafeString:
        if obj.pk is None:
            return SafeString("—")
        return links(
            ("Enrollments", changelist("sequences_enrollment", sequence__id__exact=obj.pk)),
            ("Pushes", changelist("sequences_push", sequence_id=obj.pk)),
            webhook_events(obj.campaign),
        )


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
        "records",
    ]
    list_filter = ["status", "sequence"]
    list_select_related = ["contact", "sequence"]
    search_fields = ["contact__email"]
    raw_id_fields = ["sequence", "contact", "enrolled_by"]
    readonly_fields = ["why_not_sent", "opt_out", "records"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Enrollment]:
        # Everything the why-not-sent column reads, in a fixed number of queries per page. The
        # changelist skips list_select_related once a queryset has any select_related: add it.
        queryset = super().get_queryset(request).select_related(*self.list_select_related)
        return explain.for_explanation(queryset)

    @admin.display(description="Why not sent")
    def why_not_sent(self, obj: Enrollment) -> str:
        return explain.explain(obj)

    @admin.display(description="Opt-out")
    def opt_out(self, obj: Enrollment) -> str:
        return opted_out(obj.contact_id) if obj.contact_id else "—"

    @admin.display(description="Records")
    def records(self, obj: Enrollment) -> SafeString:
        if obj.pk is None:
            return SafeString("—")
        sequence = obj.sequence if obj.sequence_id else None
        return links(
            ("Sequence", change("sequences_sequence", obj.sequence_id)) if sequence else None,
            ("Pushes", changelist("sequences_push", enrollment_id=obj.pk)),
            webhook_events(
                sequence.campaign if sequence else None,
                obj.contact.email if obj.contact_id else None,
            ),
        )


def opted_out(contact_id: object) -> str:
    """Where the contact's opt-out came from (sequences/optouts.py), for its pages."""
    found = optouts.of_contacts([contact_id]).get(contact_id, [])
    return "\n".join(optouts.describe(o) for o in found) or "—"


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
    readonly_fields = ["opt_out"]

    @admin.display(description="Opt-out")
    def opt_out(self, obj: Contact) -> str:
        return opted_out(obj.pk) if obj.pk else "—"


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
        "records",
    ]
    list_filter = ["trigger"]
    date_hierarchy = "started_at"
    readonly_fields = ["records"]

    @admin.display(description="Records")
    def records(self, obj: ExecutorRun) -> SafeString:
        return links(("Pushes", changelist("sequences_push", run_id=obj.pk)))

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
        "records",
    ]
    list_filter = ["state", "outcome"]
    search_fields = ["email", "=campaign_id", "=enrollment_id"]
    readonly_fields = ["records"]

    @admin.display(description="Records")
    def records(self, obj: Push) -> SafeString:
        return links(
            ("Enrollment", change("sequences_enrollment", obj.enrollment_id)),
            ("Sequence", change("sequences_sequence", obj.sequence_id)),
            ("SDR", change("profiles_profile", obj.profile_id)),
            ("Run", change("sequences_executorrun", obj.run_id)) if obj.run_id else None,
            webhook_events(obj.campaign_id, obj.email),
        )


@admin.register(CampaignProvisioning)
class CampaignProvisioningAdmin(ReadOnlyAdmin):
    list_display = [
        "sequence",
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


@admin.register(OptOut)
class OptOutAdmin(ReadOnlyAdmin):
    """Every opt-out (sequences/optouts.py): where it came from, whom it reached; a record of
    what happened, which only lifting changes."""

    list_display = [
        "email",
        "origin",
        "campaign_id",
        "sdr",
        "opted_out_at",
        "scope",
        "contacts_reached",
        "lifted_at",
    ]
    list_filter = ["origin", "scope", ("lifted_at", admin.EmptyFieldListFilter)]
    search_fields = ["email", "=campaign_id", "=contact_id", "=profile_id"]
    date_hierarchy = "opted_out_at"
    actions = ["lift"]
    readonly_fields = ["where_from", "records"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[OptOut]:
        return super().get_queryset(request).annotate(_reached=Count("reached"))

    def has_lift_permission(self, request: HttpRequest) -> bool:
        # The admin is read-only, but the model's change permission is what lifting needs.
        return request.user.has_perm("sequences.change_optout")

    @admin.display(description="SDR")
    def sdr(self, obj: OptOut) -> object:
        return link(change("profiles_profile", obj.profile_id), "SDR") if obj.profile_id else "—"

    @admin.display(description="Contacts reached", ordering="_reached")
    def contacts_reached(self, obj: OptOut) -> int:
        return obj._reached

    @admin.display(description="Where it came from")
    def where_from(self, obj: OptOut) -> str:
        return optouts.describe(obj)

    @admin.display(description="Records")
    def records(self, obj: OptOut) -> object:
        return links(
            ("Contacts", changelist("sequences_contact", q=obj.email)),
            ("Enrollments", changelist("sequences_enrollment", q=obj.email)),
            ("Webhook event", change("smartlead_webhookevent", obj.webhook_event_id))
            if obj.webhook_event_id
            else None,
        )

    @admin.action(description="Lift the opt-out (it was a mistake)", permissions=["lift"])
    def lift(self, request: HttpRequest, queryset: QuerySet[OptOut]) -> None:
        live = list(queryset.filter(lifted_at__isnull=True))
        if not live:
            self.message_user(request, "None of those is in force.", messages.WARNING)
        for opt_out in live:
            words = optouts.lift(opt_out, by=str(request.user), now=timezone.now())
            self.message_user(request, words)
