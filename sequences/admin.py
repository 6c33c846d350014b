from __future__ import annotations

from django.contrib import admin

from sequences.models import CallTask, Contact, Engagement, Enrollment, Sequence, SequenceStep


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
    list_display = ["contact", "sequence", "status", "current_step", "next_send_at", "enrolled_at"]
    list_filter = ["status", "sequence"]
    list_select_related = ["contact", "sequence"]
    search_fields = ["contact__email"]
    raw_id_fields = ["sequence", "contact", "enrolled_by"]


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
