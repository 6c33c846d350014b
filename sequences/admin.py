from __future__ import annotations

from operator import attrgetter
from typing import Any

from django.contrib import admin, messages
from django.db import models
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils.safestring import SafeString

from outboundhq.links import change, changelist, links, sdr, sdr_url
from outboundhq.listing import ListTools, autocomplete, date_range
from profiles.models import Profile
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

SDR_SOURCE = Sequence._meta.get_field("created_by")
# A run's counts, as the CSV of runs lists them: every counter the record has.
RUN_COUNTS = [
    f.name for f in ExecutorRun._meta.fields if isinstance(f, models.PositiveIntegerField)
]


def sdr_filter(narrow: Any) -> type:
    """The SDR, chosen by typing their email or name (never a list of every SDR)."""
    return autocomplete(title="SDR", parameter="sdr", source=SDR_SOURCE, narrow=narrow)


def with_sdr_email(queryset: QuerySet, column: str = "profile_id") -> QuerySet:
    """Rows that carry an SDR's id (no foreign key) get their email in the same query."""
    email = Profile.objects.filter(pk=OuterRef(column)).values("email")[:1]
    return queryset.annotate(sdr_email=Subquery(email))


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
        return links(
            (obj.created_by.label, sdr_url(obj.created_by_id)),
            ("profile", change("profiles_profile", obj.created_by_id)),
        )

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
class EnrollmentAdmin(ListTools, admin.ModelAdmin):
    list_display = [
        "contact",
        "sequence",
        "status",
        "step",
        "next_send_at",
        "why_not_sent",
        "records",
    ]
    list_filter = [
        "status",
        autocomplete(
            title="sequence",
            parameter="sequence",
            source=Enrollment._meta.get_field("sequence"),
            narrow=lambda rows, pk: rows.filter(sequence_id=pk),
        ),
        sdr_filter(lambda rows, pk: rows.filter(sequence__created_by_id=pk)),
        date_range("enrolled_at", "enrolled"),
    ]
    list_select_related = ["contact", "sequence"]
    search_fields = ["contact__email"]
    raw_id_fields = ["sequence", "contact", "enrolled_by"]
    readonly_fields = ["request_budget", "records"]
    change_form_template = "admin/outboundhq/enrollment_change_form.html"
    csv_columns = [
        ("id", attrgetter("id")),
        ("contact", lambda e: e.contact.email if e.contact_id else ""),
        ("sequence", lambda e: e.sequence.name if e.sequence_id else ""),
        ("sdr", lambda e: creator(e).email if creator(e) else ""),
        ("status", attrgetter("status")),
        ("current_step", attrgetter("current_step")),
        ("next_send_at", attrgetter("next_send_at")),
        ("why_not_sent", explain.explain),
        ("enrolled_at", attrgetter("enrolled_at")),
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Enrollment]:
        # Everything the why-not-sent column reads, in a fixed number of queries per page. The
        # changelist skips list_select_related once a queryset has any select_related: add it.
        queryset = super().get_queryset(request).select_related(*self.list_select_related)
        return explain.for_explanation(queryset)

    def render_change_form(
        self, request: HttpRequest, context: dict[str, Any], *args: Any, obj: Any = None, **kw: Any
    ) -> TemplateResponse:
        # Read-only, above the form: what ops open the page for.
        if obj is not None:
            owner = creator(obj)
            context["why_not_sent"] = explain.explain(obj)
            context["sdr_link"] = sdr(owner.pk, owner.label) if owner else "—"
        return super().render_change_form(request, context, *args, obj=obj, **kw)

    @admin.display(description="Step", ordering="current_step")
    def step(self, obj: Enrollment) -> int:
        return obj.current_step

    @admin.display(description="Why not sent")
    def why_not_sent(self, obj: Enrollment) -> str:
        return explain.explain(obj)

    @admin.display(description="Smartlead request budget")
    def request_budget(self, obj: Enrollment) -> str:
        """On one enrollment's page only: it asks the budget's store."""
        return explain.budget_note(obj) or "Room for new pushes now."

    @admin.display(description="Records")
    def records(self, obj: Enrollment) -> SafeString:
        if obj.pk is None:
            return SafeString("—")
        sequence = obj.sequence if obj.sequence_id else None
        return links(
            ("Sequence", change("sequences_sequence", obj.sequence_id)) if sequence else None,
            ("SDR", sdr_url(sequence.created_by_id))
            if sequence and sequence.created_by_id
            else None,
            ("Pushes", changelist("sequences_push", enrollment_id=obj.pk)),
            webhook_events(
                sequence.campaign if sequence else None,
                obj.contact.email if obj.contact_id else None,
            ),
        )


def creator(enrollment: Enrollment) -> Profile | None:
    sequence = enrollment.sequence if enrollment.sequence_id else None
    return sequence.created_by if sequence and sequence.created_by_id else None


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
