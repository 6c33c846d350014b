"""An SDR's mailbox health for the passes and for people: the hourly health read, and why an SDR
is held (profiles/mailboxes.py has the rule and the rows)."""

from __future__ import annotations

from profiles.models import Profile
from smartlead.api import SmartleadClient, SmartleadError


def read_mailbox_health(client: SmartleadClient, profile: Profile) -> list[str]:
    """The reconcile pass's hourly health read of one SDR's mailboxes, with their own key's
    client: a failure Smartlead no longer reports is cleared, a new one holds the mailbox.
    Returns what went wrong, in words (nothing raised: one SDR never stops the pass)."""
    try:
        accounts = client.list_email_accounts()
    except SmartleadError as exc:
        profile.record_smartlead_refusal(exc)
        return [f"User {profile.pk}: mailbox health not read: {exc}"]
    profile.record_accounts(accounts, release=True)
    return []


def why_held(profile: Profile) -> str:
    """Why none of the SDR's mailboxes may send, mailbox by mailbox, e.g. `sam@acme.test: SMTP
    failing (535 …); sam2@acme.test: suspended`."""
    return "; ".join(row.describe() for row in profile.mailbox_rows()) or "no mailbox is chosen"
