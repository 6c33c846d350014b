from __future__ import annotations

import time
from collections import Counter

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import URLPattern, path, reverse
from django.utils.decorators import method_decorator
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.views.decorators.debug import sensitive_post_parameters

from outboundhq.links import changelist, links, sdr_url
from profiles.credentials import SQL_STATUSES, SmartleadStatus, refusal_status
from profiles.forms import EmailAccountForm, SmartleadKeyForm
from profiles.models import Profile
from profiles.serializers import smartlead_failure
from smartlead.api import SmartleadError

# The action checks profiles one after another: stop well inside gunicorn's 60 s timeout.
VERIFY_SECONDS = 40.0
FORM_TEMPLATE = "admin/profiles/profile/smartlead_form.html"


class SmartleadStatusFilter(admin.SimpleListFilter):
    title = "Smartlead"
    parameter_name = "smartlead"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [(s.value, s.label) for s in SQL_STATUSES]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Profile]) -> QuerySet[Profile]:
        if self.value():
            return queryset.filter(connection_status=self.value())
        return queryset


def verify(profile: Profile, deadline: float) -> str | None:
    """Checks one profile's key with Smartlead (the verdict is recorded); else why it was not."""
    if not profile.has_smartlead_key:
        return "no API key"
    if not profile.key_is_readable():
        return "key cannot be decrypted"
    if time.monotonic() >= deadline:
        return "time ran out (select fewer profiles)"
    try:
        profile.check_smartlead(release=True)  # a health read: a mended mailbox sends again
    except SmartleadError as exc:
        if refusal_status(exc) is None:
            return "Smartlead unreachable or failing"
    return None


def report(verdicts: Counter[str], skipped: Counter[str]) -> str:
    """E.g. `Checked 3 profile(s) with Smartlead: 2 Connected, 1 Invalid key. Not checked: …`"""
    parts = [f"Checked {sum(verdicts.values())} profile(s) with Smartlead"]
    if verdicts:
        parts[0] += ": " + ", ".join(f"{n} {label}" for label, n in sorted(verdicts.items()))
    if skipped:
        parts.append(
            "Not checked: " + ", ".join(f"{n} {why}" for why, n in sorted(skipped.items()))
        )
    return ". ".join(parts) + "."


def refusal_in_words(exc: SmartleadError) -> str:
    """The same words the web app shows for this Smartlead error."""
    return str(smartlead_failure(exc).detail["error"])


@admin.register(Profile)
class ProfileAdmin(admin.ModelAdmin):
    list_display = [
        "email",
        "full_name",
        "role",
        "smartlead",
        "api_key",
        "mailboxes",
        "last_checked",
        "records",
    ]
    list_filter = [SmartleadStatusFilter, "role"]
    list_select_related = ["credential_check"]
    search_fields = ["email", "first_name", "last_name"]
    actions = ["verify_credentials"]
    # The key column is never a form field: the admin shows only its last 4 characters, and a
    # new key goes through the connect page, which checks it with Smartlead first.
    fields = [
        "id",
        "email",
        "first_name",
        "last_name",
        "role",
        "api_key",
        "smartlead_email_account_id",
        "smartlead",
        "mailbox_health",
        "check_detail",
        "connect",
        "records",
        "created_at",
        "updated_at",
    ]
    readonly_fields = [
        "id",
        "api_key",
        "smartlead",
        "mailbox_health",
        "check_detail",
        "connect",
        "records",
        "created_at",
        "updated_at",
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Profile]:
        return super().get_queryset(request).with_smartlead_status().with_mailboxes()

    @admin.display(description="Smartlead", ordering="connection_status")
    def smartlead(self, obj: Profile) -> str:
        return obj.smartlead_status().label

    @admin.display(description="API key")
    def api_key(self, obj: Profile) -> str:
        return obj.api_key_hint or "—"

    @admin.display(description="Mailboxes")
    def mailboxes(self, obj: Profile) -> str:
        """Each mailbox by address, ✓ when it may send."""
        rows = obj.mailbox_rows()
        return (
            ", ".join(
                f"{row.address or row.mailbox_id} {'✓' if row.healthy else '✗'}" for row in rows
            )
            or "—"
        )

    @admin.display(description="Mailbox health")
    def mailbox_health(self, obj: Profile) -> SafeString | str:
        """One line per mailbox: its state, why, and when Smartlead was last read for it."""
        rows = obj.mailbox_rows()
        if not rows:
            return "No mailbox chosen."
        return format_html_join(
            SafeString("<br>"),
            "{} — {} (read {})",
            ((row.describe(), row.state, row.read_at or "never") for row in rows),
        )

    @admin.display(description="Last checked", ordering="credential_check__checked_at")
    def last_checked(self, obj: Profile) -> object:
        check = getattr(obj, "credential_check", None)
        return check.checked_at if check else "never"

    @admin.display(description="What Smartlead said")
    def check_detail(self, obj: Profile) -> str:
        check = getattr(obj, "credential_check", None)
        return check.detail if check else "Not checked yet."

    @admin.display(description="Connect")
    def connect(self, obj: Profile) -> str:
        if obj.pk is None:
            return "Save the profile first."
        return format_html(
            '<a href="{}">Connect a Smartlead key</a> · <a href="{}">Choose the email accounts</a>',
            reverse("admin:profiles_profile_smartlead_connect", args=[obj.pk]),
            reverse("admin:profiles_profile_smartlead_account", args=[obj.pk]),
        )

    @admin.display(description="Records")
    def records(self, obj: Profile) -> str:
        if obj.pk is None:
            return "—"
        return links(
            ("SDR page", sdr_url(obj.pk)),
            ("Sequences", changelist("sequences_sequence", created_by__id__exact=obj.pk)),
            ("Pushes", changelist("sequences_push", profile_id=obj.pk)),
        )

    # --- The action ---------------------------------------------------------------------
    # It calls Smartlead and records a verdict for each profile: a change, not a view.
    @admin.action(description="Verify Smartlead credentials", permissions=["change"])
    def verify_credentials(self, request: HttpRequest, queryset: QuerySet[Profile]) -> None:
        deadline = time.monotonic() + VERIFY_SECONDS
        outcomes = {profile.pk: verify(profile, deadline) for profile in queryset}
        checked = [pk for pk, outcome in outcomes.items() if outcome is None]
        verdicts = Counter(
            SmartleadStatus(status).label
            for status in Profile.objects.filter(pk__in=checked)
            .with_smartlead_status()
            .values_list("connection_status", flat=True)
        )
        skipped = Counter(outcome for outcome in outcomes.values() if outcome is not None)
        healthy = not skipped and set(verdicts) <= {SmartleadStatus.CONNECTED.label}
        self.message_user(
            request, report(verdicts, skipped), messages.SUCCESS if healthy else messages.WARNING
        )

    # --- The connect pages --------------------------------------------------------------
    def get_urls(self) -> list[URLPattern]:
        own = [
            path(
                "<path:object_id>/smartlead/connect/",
                self.admin_site.admin_view(self.connect_view),
                name="profiles_profile_smartlead_connect",
            ),
            path(
                "<path:object_id>/smartlead/email-account/",
                self.admin_site.admin_view(self.email_account_view),
                name="profiles_profile_smartlead_account",
            ),
        ]
        return own + super().get_urls()

    @method_decorator(sensitive_post_parameters("api_key"))
    def connect_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Step 1: a key, checked with Smartlead and saved only if accepted."""
        profile = self.changeable(request, object_id)
        form = SmartleadKeyForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                accounts = profile.connect_smartlead(form.cleaned_data["api_key"])
            except SmartleadError as exc:
                form.add_error("api_key", refusal_in_words(exc))
            else:
                self.log_change(request, profile, f"Connected Smartlead key {profile.api_key_hint}")
                self.message_user(
                    request,
                    f"Smartlead accepted the key {profile.api_key_hint}; it can send from "
                    f"{len(accounts)} email account(s). Now choose the ones to send from.",
                )
                return self.redirect("smartlead_account", profile)
        return self.page(request, profile, form, "Connect a Smartlead API key", "Check and save")

    def email_account_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Step 2: the saved key's email accounts to send from, listed live from Smartlead.

        Asking Smartlead records a verdict, so only a POST (CSRF-checked) does: a GET, which any
        page can make the admin's browser send (an image), only offers to ask. The list comes
        with the first POST; choosing is the second."""
        profile = self.changeable(request, object_id)
        title = "Choose the Smartlead email accounts"
        if not profile.has_smartlead_key or not profile.key_is_readable():
            self.message_user(request, "Connect a key first.", messages.WARNING)
            return self.redirect("smartlead_connect", profile)
        if request.method != "POST":
            return self.page(request, profile, None, title, "List its email accounts")
        try:
            # A key check: it may find a mailbox failing, never makes one healthy again.
            accounts = profile.check_smartlead()
        except SmartleadError as exc:
            self.message_user(request, refusal_in_words(exc), messages.ERROR)
            return self.redirect("change", profile)
        current = [row.mailbox_id for row in profile.mailbox_rows()]
        # The list's own POST carries no choice; the form's carries `choose` (hidden).
        chosen = request.POST if "choose" in request.POST else None
        form = EmailAccountForm(
            chosen, accounts=accounts, current=current, initial={"email_account_ids": current}
        )
        if form.is_bound and form.is_valid():
            return self.choose(request, profile, form.chosen())
        return self.page(request, profile, form, title, "Save")

    def choose(self, request: HttpRequest, profile: Profile, ids: list[int]) -> HttpResponse:
        try:
            chosen, missing = profile.choose_smartlead_email_accounts(ids)
        except SmartleadError as exc:
            self.message_user(request, refusal_in_words(exc), messages.ERROR)
            return self.redirect("smartlead_account", profile)
        if missing:
            gone = ", ".join(map(str, missing))
            self.message_user(request, f"No longer in Smartlead: {gone}.", messages.ERROR)
            return self.redirect("smartlead_account", profile)
        self.log_change(request, profile, f"Chose Smartlead email accounts {ids}")
        held = [row.describe() for row in profile.mailbox_rows() if not row.healthy]
        self.message_user(
            request,
            f"{profile} now sends from {', '.join(a.from_email for a in chosen)}."
            + (f" Not sending until healthy: {'; '.join(held)}." if held else ""),
            messages.WARNING if held else messages.SUCCESS,
        )
        return self.redirect("change", profile)

    def changeable(self, request: HttpRequest, object_id: str) -> Profile:
        profile = self.get_object(request, object_id)
        if profile is None:
            raise Http404("No such profile.")
        if not self.has_change_permission(request, profile):
            raise PermissionDenied
        return profile

    def page(
        self, request: HttpRequest, profile: Profile, form: object | None, title: str, submit: str
    ) -> HttpResponse:
        context = self.admin_site.each_context(request) | {
            "title": title,
            "profile": profile,
            "form": form,
            "submit_label": submit,
            "opts": self.model._meta,
        }
        return render(request, FORM_TEMPLATE, context)

    def redirect(self, view: str, profile: Profile) -> HttpResponseRedirect:
        return HttpResponseRedirect(reverse(f"admin:profiles_profile_{view}", args=[profile.pk]))
