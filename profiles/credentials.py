"""An SDR's Smartlead credentials as values: what sending needs, the verdicts about a key, and
the short-budget client people wait on. No model here (profiles/models.py has the rows)."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import Any

from django.db import models

from outboundhq.logs import mask
from smartlead.api import (
    EmailAccount,
    InvalidApiKey,
    NoApiAccess,
    SmartleadClient,
    SmartleadError,
    limits,
)
from smartlead.api.limits import Priority

# Why an SDR cannot send, in the one wording every per-SDR loop uses (`Profile.objects.senders`);
# the first is also the executor's log line for them. %s is the SDR as people know them
# (`Profile.label`: email and name), never a bare id.
NOT_CONNECTED = "SDR %s has not connected their Smartlead account"
UNREADABLE = (
    "SDR %s cannot send: their stored Smartlead key cannot be decrypted (the key that "
    "encrypted it is missing from SMARTLEAD_KEY_ENCRYPTION_KEYS)"
)

# A person is waiting on these calls: retry a blip once or twice, then answer; and wait no
# longer than this for the key's request budget (the answer then says when to try again).
INTERACTIVE_RETRY_BUDGET = 3.0
INTERACTIVE_WAIT = 10.0


@dataclass(frozen=True)
class SmartleadCredentials:
    """What the executor needs to act as one SDR. `repr` never shows the key.

    `email_account_id` is the profile's own mailbox; `email_account_ids` the SDR's mailboxes that
    may send now (profiles/mailboxes.py), which campaigns get. Empty: the SDR is held (no
    healthy mailbox): the key still pauses, moves and reads, but nothing new is sent.
    """

    profile_id: uuid.UUID
    api_key: str
    email_account_id: int
    email_account_ids: tuple[int, ...] = ()

    def __repr__(self) -> str:
        return (
            f"SmartleadCredentials(profile_id={self.profile_id}, api_key={mask(self.api_key)!r}, "
            f"email_account_id={self.email_account_id}, "
            f"email_account_ids={self.email_account_ids})"
        )


class SmartleadStatus(models.TextChoices):
    """What the admin and the connect API say about an SDR's Smartlead connection."""

    CONNECTED = "connected", "Connected"
    NO_API_KEY = "no_api_key", "No API key"
    NO_EMAIL_ACCOUNT = "no_email_account", "No email account"
    # Mailboxes chosen, none of them healthy (profiles/mailboxes.py): held, not disconnected.
    NO_HEALTHY_MAILBOX = "no_healthy_mailbox", "No healthy mailbox"
    INVALID_KEY = "invalid_key", "Invalid key"
    NO_API_ACCESS = "no_api_access", "No API access"
    UNCHECKED = "unchecked", "Unchecked"
    # Never recorded: worked out on reading the key, so restoring the lost key heals it at once.
    UNREADABLE_KEY = "unreadable_key", "Key cannot be decrypted"


def key_fingerprint(api_key: str) -> str:
    """A stable, non-reversible id for a key, so a check can tell whether the key changed since."""
    return hashlib.sha256(api_key.encode()).hexdigest()


def interactive_client(api_key: str, **options: Any) -> SmartleadClient:
    """A Smartlead client for the web app and the admin: a person is waiting, so it gives up
    after a short retry budget and draws on the key's budget before new pushes do."""
    defaults = {
        "retry_budget": INTERACTIVE_RETRY_BUDGET,
        "deadline": limits.clock() + INTERACTIVE_WAIT,
        "priority": Priority.INTERACTIVE,
    }
    return SmartleadClient(api_key, **(defaults | options))


def fetch_email_accounts(api_key: str) -> list[EmailAccount]:
    """The email accounts a key can send from; raises SmartleadError when Smartlead says no."""
    with interactive_client(api_key) as client:
        return client.list_email_accounts()


def refusal_status(exc: SmartleadError) -> SmartleadStatus | None:
    """The credential verdict a Smartlead error amounts to; None when it says nothing of the key."""
    if isinstance(exc, InvalidApiKey):
        return SmartleadStatus.INVALID_KEY
    if isinstance(exc, NoApiAccess):
        return SmartleadStatus.NO_API_ACCESS
    return None


# The statuses the SQL rule can give (UNREADABLE_KEY needs the key decrypted): list filters and
# the dashboard's bars count these.
SQL_STATUSES = [s for s in SmartleadStatus if s != SmartleadStatus.UNREADABLE_KEY]
# Verdicts about the current key that stop sending until the SDR reconnects or picks a mailbox.
REFUSED = (
    SmartleadStatus.INVALID_KEY,
    SmartleadStatus.NO_API_ACCESS,
    SmartleadStatus.NO_EMAIL_ACCOUNT,
)
# The statuses that send: a verified key, or one Smartlead has not been asked about yet (it
# will say, and the verdict is recorded the first time it refuses).
SENDING = (SmartleadStatus.CONNECTED, SmartleadStatus.UNCHECKED)
# The key works but no mailbox may send: nothing new goes out, but the outbox and the reconcile
# pass still act with the key (pausing leads, reading health, which releases the hold).
HELD = SmartleadStatus.NO_HEALTHY_MAILBOX
# A mailbox id is an integer stored as text. ASCII digits only: "12²" passes str.isdigit() and
# then fails int(); 18 digits always fit Smartlead's (and Postgres's) bigint.
# \A and \Z (not ^ and $) mean the same on Postgres and in Python (SQLite's REGEXP), with no
# "123\n" slipping through.
MAILBOX_ID = r"\A[0-9]{1,18}\Z"
