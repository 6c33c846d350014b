"""The admin of the app's tables (sequences, enrollments, contacts, engagements, call tasks) and
of opt-outs; the backend's own records are in sequences/records_admin.py."""

from __future__ import annotations

from operator import attrgetter
from typing import Any

from django.contrib import admin, messages
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.safestring import SafeString

from outboundhq.links import change, changelist, links, sdr, sdr_url
from outboundhq.listing import ListTools, ReadOnlyAdmin, autocomplete, date_range
from profiles.models import Profile
from sequences import (
    explain,
    optouts,
    records_admin,  # noqa: F401 - registers the records' admins
)
from sequences.listing import sdr_filter, webhook_events, with_sdr_email
from sequences.models import (
    CallTask,
    Contact,
    Engagement,
    Enrollment,
    OptOut,
    Sequence,
    SequenceStep,
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
    readonly_fields = ["request_budget", "opt_out", "records"]
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
        return with_sdr_email(super().get_queryset(request).annotate(_reached=Count("reached")))

    def has_lift_permission(self, request: HttpRequest) -> bool:
        # The admin is read-only, but the model's change permission is what lifting needs.
        return request.user.has_perm("sequences.change_optout")

    @admin.display(description="SDR", ordering="sdr_email")
    def sdr(self, obj: OptOut) -> SafeString | str:
        return sdr(obj.profile_id, obj.sdr_email)

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
