from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from profiles.models import Profile, SmartleadStatus


class SmartleadStatusFilter(admin.SimpleListFilter):
    title = "Smartlead"
    parameter_name = "smartlead"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return list(SmartleadStatus.choices)

    def queryset(self, request: HttpRequest, queryset: QuerySet[Profile]) -> QuerySet[Profile]:
        if self.value():
            return queryset.filter(smartlead_status=self.value())
        return queryset


@admin.register(Profile)
class ProfileAdmin(admin.ModelAdmin):
    list_display = ["email", "full_name", "role", "smartlead", "api_key", "email_account"]
    list_filter = [SmartleadStatusFilter, "role"]
    search_fields = ["email", "first_name", "last_name"]
    # The key column is never a form field: the admin shows only its last 4 characters.
    fields = [
        "id",
        "email",
        "first_name",
        "last_name",
        "role",
        "api_key",
        "smartlead_email_account_id",
        "smartlead",
        "created_at",
        "updated_at",
    ]
    readonly_fields = ["id", "api_key", "smartlead", "created_at", "updated_at"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Profile]:
        return super().get_queryset(request).with_smartlead_status()

    @admin.display(description="Smartlead", ordering="smartlead_status")
    def smartlead(self, obj: Profile) -> str:
        return SmartleadStatus(obj.smartlead_status).label

    @admin.display(description="API key")
    def api_key(self, obj: Profile) -> str:
        return obj.api_key_hint or "—"

    @admin.display(description="Email account")
    def email_account(self, obj: Profile) -> str:
        return obj.smartlead_email_account_id or "—"
