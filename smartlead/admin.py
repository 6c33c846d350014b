from __future__ import annotations

from operator import attrgetter

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import SafeString

from outboundhq.links import changelist, links
from outboundhq.listing import ListTools, ReadOnlyAdmin, date_range
from sequences.listing import sdr_filter
from sequences.models import CampaignProvisioning
from smartlead import applying, webhooks
from smartlead.api import tokens
from smartlead.models import IDENTITY_FIELDS, ReconcileRun, WebhookEvent


@admin.register(WebhookEvent)
class WebhookEventAdmin(ListTools, admin.ModelAdmin):
    """The delivery log: read-only, like a log should be; only reprocessing changes it."""

    # The step, the delivery count and the id are on each event's page and in the CSV: at
    # 1400 px the detail and the records are worth the room more.
    list_display = [
        "received_at",
        "event_type",
        "outcome",
        "campaign_id",
        "lead_email",
        "short_detail",
        "records",
    ]
    # By SDR (their campaigns), not by campaign id: that list would name every campaign. The
    # Records links still open one campaign's events (?campaign_id=).
    list_filter = [
        "outcome",
        "event_type",
        sdr_filter(
            lambda rows, pk: rows.filter(
                campaign_id__in=CampaignProvisioning.objects.campaigns_of(pk)
            )
        ),
        date_range("received_at", "received"),
    ]
    # Part of an address finds it ("acme.com", "jane@"); ids match whole.
    search_fields = ["lead_email", "=stats_id", "=dedupe_key", "=source"]
    csv_columns = [
        (name, attrgetter(name))
        for name in (
            "id",
            "received_at",
            "event_type",
            "outcome",
            "campaign_id",
            "lead_email",
            "sequence_number",
            "stats_id",
            "event_time",
            "deliveries",
            "source",
            "detail",
        )
    ]
    list_display_links = ["received_at"]
    show_full_result_count = False
    actions = ["reprocess"]
    fields = [
        "id",
        "outcome",
        "detail",
        *IDENTITY_FIELDS,
        "dedupe_key",
        "received_at",
        "last_received_at",
        "deliveries",
        "source",
        "attempts",
        "processed_at",
        "records",
        "headers",
        "body",
    ]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: WebhookEvent | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: WebhookEvent | None = None) -> bool:
        return False

    def has_reprocess_permission(self, request: HttpRequest) -> bool:
        # The admin is read-only, but the model's change permission is what reprocessing needs.
        return request.user.has_perm("smartlead.change_webhookevent")

    @admin.display(description="Detail")
    def short_detail(self, obj: WebhookEvent) -> str:
        return obj.detail[:80] + ("…" if len(obj.detail) > 80 else "")

    @admin.display(description="Records")
    def records(self, obj: WebhookEvent) -> SafeString:
        """Back to the campaign's sequence and the lead's pushes and enrollments. Enrollments are
        found by the lead's email (their search): the admin filters only their own columns."""
        campaign, email = obj.campaign_id, obj.lead_email
        return links(
            ("Sequence", changelist("sequences_sequence", smartlead_campaign_id=campaign))
            if campaign is not None
            else None,
            ("Pushes", changelist("sequences_push", campaign_id=campaign, email__iexact=email))
            if campaign is not None and email
            else None,
            ("Enrollments", changelist("sequences_enrollment", q=email)) if email else None,
        )

    @admin.display(description="Body")
    def body(self, obj: WebhookEvent) -> str:
        # Rows stored before bodies were redacted on arrival are redacted here; after the
        # pretty-printing too, which can turn an escaped "secret\u005fkey" into a plain one.
        text = webhooks.pretty(webhooks.redact_body(obj.raw_body, tokens.server_secrets()))
        return format_html("<pre>{}</pre>", webhooks.redact_body(text, tokens.server_secrets()))

    @admin.action(description="Reprocess selected events", permissions=["reprocess"])
    def reprocess(self, request: HttpRequest, queryset: QuerySet[WebhookEvent]) -> None:
        selected = queryset.count()
        counts = applying.apply(WebhookEvent.objects.filter(pk__in=queryset.values("pk")))
        level = messages.WARNING if counts.get("failed") else messages.SUCCESS
        skipped = selected - sum(counts.values())
        self.message_user(request, applying.reprocess_summary(counts, skipped), level)


@admin.register(ReconcileRun)
class ReconcileRunAdmin(ReadOnlyAdmin):
    """What each reconcile pass found that no webhook had brought."""

    list_display = ["started_at", "trigger", "campaigns", "repaired", "completed", "finished_at"]
    list_filter = ["trigger"]
