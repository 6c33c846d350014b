"""`manage.py resave_webhooks`: every provisioned campaign's webhook at its current URL.

For the switch-over to per-campaign tokens and for rotating SMARTLEAD_WEBHOOK_SECRET
(docs/DEPLOY.md). Each campaign is saved through its SDR's own key, by the same
`ensure_webhook` the executor uses; a webhook already at its URL is left alone, so running it
twice changes nothing. One line per SDR says what was done and what failed; keys never appear.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from django.core.management.base import BaseCommand, CommandError

from outboundhq.logs import redact
from profiles.models import Profile, Sender
from sequences import webhook_switch
from sequences.models import Sequence
from sequences.provisioning import ensure_webhook, receiver_url
from smartlead.api import SmartleadClient, SmartleadError


@dataclass
class SdrReport:
    name: str
    done: Counter[str] = field(default_factory=Counter)
    failed: list[str] = field(default_factory=list)

    def line(self) -> str:
        done = ", ".join(f"{n} {what}" for what, n in sorted(self.done.items())) or "nothing done"
        failed = f"; failed: {'; '.join(self.failed)}" if self.failed else ""
        return f"SDR {self.name}: {done}{failed}"


class Command(BaseCommand):
    help = "Re-saves every provisioned campaign's Smartlead webhook with its per-campaign URL."

    def handle(self, *args: object, **options: object) -> None:
        if receiver_url() is None:
            raise CommandError("Set PUBLIC_BASE_URL and SMARTLEAD_WEBHOOK_SECRET first.")
        by_sdr = self.by_sdr()
        reports = [
            self.resave(sender, by_sdr[sender.profile_id])
            for sender in Profile.objects.senders(by_sdr)
        ]
        for report in reports:
            self.stdout.write(report.line())
        failures = sum(len(r.failed) for r in reports)
        if failures:
            raise CommandError(f"{failures} campaign(s) not re-saved; run it again once fixed.")
        self.stdout.write(f"All webhooks of {len(reports)} SDR(s) are at their current URL.")

    def by_sdr(self) -> dict[object, list[Sequence]]:
        """Step 1: the sequences whose campaign we provisioned (or adopted), per creator."""
        return webhook_switch.by_sdr(webhook_switch.provisioned().order_by("created_by_id", "id"))

    def resave(self, sender: Sender, sequences: list[Sequence]) -> SdrReport:
        """Step 2: one SDR's campaigns, with their key; a failure stops only that campaign."""
        report = SdrReport(sender.name)
        if sender.credentials is None:
            report.failed.append(f"{sender.why_not} ({len(sequences)} campaign(s))")
            return report
        with SmartleadClient(sender.credentials.api_key) as client:
            for sequence in sequences:
                try:
                    report.done[ensure_webhook(sequence, client, resave=True)] += 1
                except SmartleadError as exc:
                    campaign = sequence.provisioning.campaign_id
                    report.failed.append(f"campaign {campaign}: {redact(str(exc))[:300]}")
        return report
