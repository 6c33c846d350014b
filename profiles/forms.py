"""The admin's two-step Smartlead connection: a key (never shown again), then a mailbox."""

from __future__ import annotations

from typing import Any

from django import forms

from profiles.serializers import api_key_problem
from smartlead.api import EmailAccount


class SmartleadKeyForm(forms.Form):
    # render_value=False: a form shown again after an error must not carry the key in its HTML.
    api_key = forms.CharField(
        label="Smartlead API key",
        max_length=200,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Checked with Smartlead and saved only if it is accepted.",
    )

    def clean_api_key(self) -> str:
        value = self.cleaned_data["api_key"]
        problem = api_key_problem(value)
        if problem:
            raise forms.ValidationError(f"The key {problem}")
        return value


class EmailAccountForm(forms.Form):
    email_account_ids = forms.TypedMultipleChoiceField(
        label="Send from",
        coerce=int,
        widget=forms.CheckboxSelectMultiple,
        choices=[],
        help_text="Smartlead rotates a campaign's mailboxes. Those that are not healthy are "
        "kept but not attached to campaigns until a health read shows them healthy.",
    )

    def __init__(
        self, *args: Any, accounts: list[EmailAccount], current: list[int], **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.current = current
        self.fields["email_account_ids"].choices = [(a.id, account_label(a)) for a in accounts]

    def chosen(self) -> list[int]:
        """The ticked mailboxes: those already chosen first, in their order (the first stays the
        profile's own), then the others in the listing's order."""
        ticked = set(self.cleaned_data["email_account_ids"])
        listed = [i for i, _ in self.fields["email_account_ids"].choices]
        kept = [i for i in self.current if i in ticked]
        return kept + [i for i in listed if i in ticked and i not in kept]


def account_label(account: EmailAccount) -> str:
    details = [
        f"#{account.id}",
        account.type,
        "SMTP ok" if account.smtp_ok else "SMTP failing",
        "IMAP ok" if account.imap_ok else "IMAP failing",
        "suspended" if account.suspended else "",
    ]
    if account.warmup_reputation is not None:
        details.append(f"warmup {account.warmup_reputation:g}%")
    if account.daily_limit:
        details.append(f"{account.daily_limit}/day")
    return f"{account.from_name} <{account.from_email}> ({', '.join(filter(None, details))})"
