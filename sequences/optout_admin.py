"""The admin list of opt-outs (sequences/optouts.py): where each came from, whom it reached,
and lifting one that was a mistake. Registered by sequences/admin.py."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.utils import timezone

from outboundhq.links import change, changelist, link, links
from sequences import optouts
from sequences.models import OptOut


@admin.register(OptOut)
class OptOutAdmin(admin.ModelAdmin):
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

    # A record of what happened: only lifting changes it.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: OptOut | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: OptOut | None = None) -> bool:
        return False

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
