"""Seed a small demo: SDRs with and without Smartlead credentials, sequences, contacts, enrollments.

Idempotent: fixed ids, so running it twice changes nothing. The keys are the sandbox's demo keys
(smartlead/sandbox/demo.json); they are worthless against the real Smartlead.
"""

from __future__ import annotations

import json
import secrets
import uuid
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction
from django.utils import timezone

from profiles.models import Profile
from sequences.models import Contact, Enrollment, Sequence, SequenceStep

DEMO_ACCOUNTS = Path(__file__).resolve().parents[3] / "smartlead" / "sandbox" / "demo.json"
NAMESPACE = uuid.UUID("6f1c1a52-3b7e-4c1e-9a55-2c3f3f0d0a11")


def demo_id(*parts: object) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, "/".join(str(p) for p in parts))


def demo_sdrs() -> list[dict[str, Any]]:
    accounts = json.loads(DEMO_ACCOUNTS.read_text())["accounts"]
    alice, bruno = accounts[0], accounts[1]
    return [
        {
            "email": "alice@outbound-demo.test",
            "first_name": "Alice",
            "last_name": "Adams",
            "key": alice["api_key"],
            "account": alice["email_accounts"][0]["id"],
        },
        {
            "email": "bruno@outbound-demo.test",
            "first_name": "Bruno",
            "last_name": "Baker",
            "key": bruno["api_key"],
            "account": bruno["email_accounts"][0]["id"],
        },
        {
            "email": "carla@outbound-demo.test",
            "first_name": "Carla",
            "last_name": "Cruz",
            "key": None,
            "account": None,
        },
    ]


STEPS = [
    {
        "step_type": "email",
        "subject": "Quick question, {{first_name}}",
        "body": "Hi {{first_name}},\n\nHow does {{company}} handle outbound today?",
    },
    {
        "step_type": "email",
        "subject": "",
        "delay_days": 3,
        "body": "Following up, {{first_name}}: worth a 15-minute call?",
    },
    {
        "step_type": "call",
        "delay_days": 2,
        "call_objective": "Book a discovery meeting",
        "call_script": "Reference the two emails; ask about their current tooling.",
    },
]


class Command(BaseCommand):
    help = "Seed demo SDRs, sequences, contacts and enrollments (and an admin login)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--contacts", type=int, default=8, help="Contacts per SDR.")
        parser.add_argument("--admin-password", help="Password for the 'admin' login.")

    @transaction.atomic
    def handle(self, *args: Any, contacts: int, admin_password: str | None, **options: Any) -> None:
        for sdr in demo_sdrs():
            profile = self.seed_profile(sdr)
            sequence = self.seed_sequence(profile)
            created = self.seed_enrollments(profile, sequence, contacts)
            self.stdout.write(
                f"SDR {profile.email} ({profile.id}): sequence '{sequence.name}', "
                f"{created} new enrollments"
            )
        password = self.seed_admin(admin_password)
        if password:
            self.stdout.write(f"Admin login: admin / {password}")

    def seed_profile(self, sdr: dict[str, Any]) -> Profile:
        profile, _ = Profile.objects.get_or_create(
            id=demo_id("profile", sdr["email"]),
            defaults={
                "email": sdr["email"],
                "first_name": sdr["first_name"],
                "last_name": sdr["last_name"],
                # In plain text, as the web app used to write it: the executor encrypts it on
                # first use (profiles/crypto.py).
                "smartlead_api_key": sdr["key"],
                "smartlead_email_account_id": str(sdr["account"]) if sdr["account"] else None,
            },
        )
        return profile

    def seed_sequence(self, profile: Profile) -> Sequence:
        sequence, created = Sequence.objects.get_or_create(
            id=demo_id("sequence", profile.id),
            defaults={
                "name": f"{profile.first_name}'s Q4 outreach",
                "status": "active",
                "created_by": profile,
            },
        )
        if created:
            for number, step in enumerate(STEPS, start=1):
                SequenceStep.objects.create(sequence=sequence, step_number=number, **step)
        return sequence

    def seed_enrollments(self, profile: Profile, sequence: Sequence, count: int) -> int:
        created = 0
        for n in range(count):
            # One contact per SDR has an address people typed wrong, as happens in real data.
            email = (
                f"lead{n}.{profile.first_name.lower()}@prospect-demo.test" if n else "not-an-email"
            )
            contact, _ = Contact.objects.get_or_create(
                id=demo_id("contact", profile.id, n),
                defaults={
                    "email": email,
                    "first_name": f"Lead{n}",
                    "last_name": "Demo",
                    "company": f"Prospect {n} Inc",
                    "created_by": profile,
                },
            )
            _, was_created = Enrollment.objects.get_or_create(
                id=demo_id("enrollment", profile.id, n),
                defaults={
                    "sequence": sequence,
                    "contact": contact,
                    "enrolled_by": profile,
                    "next_send_at": timezone.now(),
                },
            )
            created += was_created
        return created

    def seed_admin(self, password: str | None) -> str | None:
        user_model = get_user_model()
        if user_model.objects.filter(username="admin").exists() and not password:
            self.stdout.write("Admin login: admin (password unchanged; pass --admin-password)")
            return None
        password = password or secrets.token_urlsafe(9)
        user, _ = user_model.objects.get_or_create(
            username="admin", defaults={"is_staff": True, "is_superuser": True}
        )
        user.set_password(password)
        user.save()
        return password
