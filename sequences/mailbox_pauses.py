"""Enrollments the backend paused because their SDR had no mailbox left that may send (a
managed table of our own, imported by sequences/models.py; the rules are sequences/mailboxes.py).

A lead Smartlead pins to a mailbox that fails, with no healthy mailbox to move it to, would sit
in its campaign getting nothing while the app shows it active. Such an enrollment is paused
instead, with the reason here (explain shows it), and resumed by the backend once one of the
SDR's mailboxes is healthy again and the lead is on it.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class MailboxPause(models.Model):
    enrollment_id = models.UUIDField(primary_key=True)
    profile_id = models.UUIDField(help_text="The SDR whose mailboxes failed.")
    campaign_id = models.BigIntegerField()
    reason = models.TextField()
    paused_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "outboundhq_mailbox_pause"
        indexes = [models.Index(fields=["campaign_id"], name="mailbox_pause_campaign")]

    def __str__(self) -> str:
        return f"{self.enrollment_id}: {self.reason[:60]}"
