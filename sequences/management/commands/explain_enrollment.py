"""`manage.py explain_enrollment <id>`: why one enrollment has not been sent, as the admin says."""

from __future__ import annotations

import uuid

from django.core.management.base import BaseCommand, CommandError, CommandParser

from sequences.explain import budget_note, explain, for_explanation, when
from sequences.models import Enrollment, EnrollmentStatus


class Command(BaseCommand):
    help = "Explains in words what an enrollment is waiting for, or why it stopped."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("enrollment_id", help="The enrollment's id (a UUID).")

    def handle(self, *args: object, enrollment_id: str, **options: object) -> None:
        enrollment = self.load(self.parse(enrollment_id))
        self.stdout.write(self.summary(enrollment))
        self.stdout.write(explain(enrollment))
        note = budget_note(enrollment)
        if note:
            self.stdout.write(note)

    def parse(self, value: str) -> uuid.UUID:
        try:
            return uuid.UUID(value.strip())
        except ValueError:
            raise CommandError(f"{value!r} is not an enrollment id (expected a UUID).") from None

    def load(self, enrollment_id: uuid.UUID) -> Enrollment:
        queryset = for_explanation(Enrollment.objects.select_related("contact"))
        enrollment = queryset.filter(pk=enrollment_id).first()
        if enrollment is None:
            raise CommandError(f"No enrollment has the id {enrollment_id}.")
        return enrollment

    def summary(self, enrollment: Enrollment) -> str:
        sequence = enrollment.sequence
        owner = sequence.created_by if sequence and sequence.created_by_id else None
        # An ended enrollment is never sent again: its old next_send_at would mislead.
        ended = enrollment.status != EnrollmentStatus.ACTIVE
        upcoming = "no next send" if ended else f"next send {when(enrollment.next_send_at)}"
        return (
            f"Enrollment {enrollment.id}: {enrollment.contact or 'no contact'} in "
            f"{sequence or 'no sequence'} (SDR {owner.label if owner else 'none'}), "
            f"{enrollment.status}, step {enrollment.current_step}, {upcoming}"
        )
