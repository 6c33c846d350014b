"""Plain functions that create hosted-table rows for tests (real rows, no mocks)."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

from django.utils import timezone

from profiles.models import Profile
from sequences.models import Contact, Enrollment, Sequence, SequenceStep

_counter = itertools.count(1)

EMAIL_THEN_CALL = [
    {"step_type": "email", "subject": "Hi {{first_name}}", "body": "About {{company}}..."},
    {"step_type": "email", "subject": "", "body": "Following up", "delay_days": 3},
    {"step_type": "call", "delay_days": 2, "call_objective": "Book a meeting"},
]


def make_profile(*, connected: bool = True, **fields: Any) -> Profile:
    n = next(_counter)
    defaults: dict[str, Any] = {"email": f"sdr{n}@example.test", "first_name": f"Sdr{n}"}
    if connected:
        defaults |= {
            "smartlead_api_key": f"test-key-{n:04d}-abcdefgh",
            "smartlead_email_account_id": str(1000 + n),
        }
    return Profile.objects.create(**(defaults | fields))


def make_sequence(
    *, creator: Profile | None, steps: list[dict[str, Any]] | None = None, **fields: Any
) -> Sequence:
    n = next(_counter)
    sequence = Sequence.objects.create(
        **({"name": f"Sequence {n}", "status": "active", "created_by": creator} | fields)
    )
    for number, step in enumerate(EMAIL_THEN_CALL if steps is None else steps, start=1):
        SequenceStep.objects.create(sequence=sequence, step_number=number, **step)
    return sequence


def make_contact(**fields: Any) -> Contact:
    n = next(_counter)
    return Contact.objects.create(
        **(
            {
                "email": f"lead{n}@prospect.test",
                "first_name": f"Lead{n}",
                "last_name": "Test",
                "company": f"Company {n}",
            }
            | fields
        )
    )


def make_enrollment(
    *,
    sequence: Sequence,
    contact: Contact | None = None,
    due_in: timedelta = timedelta(minutes=-1),
    **fields: Any,
) -> Enrollment:
    return Enrollment.objects.create(
        sequence=sequence,
        contact=contact or make_contact(),
        next_send_at=timezone.now() + due_in,
        **fields,
    )
