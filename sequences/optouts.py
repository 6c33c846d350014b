"""The opt-out policy, in one place: a prospect who opts out has opted out of the company.

What counts as an opt-out: a Smartlead unsubscribe (LEAD_UNSUBSCRIBED, from a webhook or found
by the reconcile pass), a lead marked "Do Not Contact" in Smartlead, or `contacts.unsubscribed_at`
set in the app (found at the start of every executor run, `record_app_opt_outs`).

Whom it reaches is OPT_OUT_SCOPE: `organisation` (the default) is every SDR's contact with that
address, as Outreach and Salesloft treat an opt-out and as CAN-SPAM and GDPR expect of a sender;
`sdr` is the contacts of the SDR it happened with (theirs, or enrolled in their sequences).

What it does, whatever its origin (`apply`):
1. the contacts it reaches get `unsubscribed_at`, which the app shows;
2. every enrollment of theirs still going ends `unsubscribed` (`EnrollmentQuerySet.opt_out`):
   no further step, no call task (a contact enrolled again later is ended the same way);
3. at Smartlead, through the outbox with each SDR's own key (sequences/outbox.py): the lead is
   unsubscribed in the campaign where it happened (Smartlead did that itself for its own
   unsubscribe), and paused everywhere else, which ops can undo;
4. an `OptOut` keeps where it came from (event or app, campaign, SDR, time) and what it did; the
   admin lists them, and lifting a mistaken one (`lift`) clears the contacts' unsubscribed_at,
   restores the enrollments and so resumes the paused leads. A lead unsubscribed at Smartlead
   stays unsubscribed there: Smartlead has no undo.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.db.models.functions import Lower

from sequences.models import (
    Contact,
    Enrollment,
    EnrollmentStatus,
    OptOut,
    OptOutContact,
    OptOutOrigin,
    OptOutScope,
    Sequence,
)

GOING = (EnrollmentStatus.ACTIVE, EnrollmentStatus.PAUSED)
# Opt-outs from the app recorded per run, oldest first: the first run after this policy was
# deployed finds every contact unsubscribed until then, and works through them a few runs long.
PER_RUN = 500


@dataclass(frozen=True)
class Origin:
    """Where and when a prospect opted out: the contact, and for Smartlead's word the sequence
    (and campaign) it happened in."""

    kind: str  # an OptOutOrigin
    email: str
    when: datetime
    contact_id: uuid.UUID | None
    sequence_id: uuid.UUID | None = None
    campaign_id: int | None = None
    webhook_event_id: int | None = None


def apply(origin: Origin, now: datetime) -> OptOut | None:
    """The policy for one opt-out (see the module's docstring); None without an address. The
    same origin twice (a reprocessed event) is applied once."""
    email = (origin.email or "").strip().lower()
    if not email:
        return None
    same = OptOut.objects.live().filter(
        email=email,
        origin=origin.kind,
        contact_id=origin.contact_id,
        campaign_id=origin.campaign_id,
    )
    if (found := same.first()) is not None:
        return found
    sdr = _sdr_of(origin)
    with transaction.atomic():
        opt_out = OptOut.objects.create(
            email=email,
            origin=origin.kind,
            scope=settings.OPT_OUT_SCOPE,
            opted_out_at=origin.when,
            contact_id=origin.contact_id,
            sequence_id=origin.sequence_id,
            campaign_id=origin.campaign_id,
            profile_id=sdr,
            webhook_event_id=origin.webhook_event_id,
        )
        reach(opt_out, _contacts_reached(email, opt_out.scope, sdr, origin.contact_id), now)
    return opt_out


def reach(opt_out: OptOut, contact_ids: Iterable[uuid.UUID], now: datetime) -> None:
    """Steps 1 and 2 for these contacts, remembered on the opt-out. Contacts are locked
    before enrollments, in id order, as applying webhook events does."""
    ids = sorted(set(contact_ids) - set(opt_out.reached.values_list("contact_id", flat=True)))
    if not ids:
        return
    unset = set(
        Contact.objects.filter(pk__in=ids, unsubscribed_at__isnull=True)
        .order_by("pk")
        .select_for_update()
        .values_list("pk", flat=True)
    )
    Contact.objects.filter(pk__in=unset).update(unsubscribed_at=opt_out.opted_out_at)
    OptOutContact.objects.bulk_create(
        OptOutContact(opt_out=opt_out, contact_id=pk, unsubscribed_by_it=pk in unset) for pk in ids
    )
    enrollments = Enrollment.objects.filter(contact_id__in=ids)
    if opt_out.scope == OptOutScope.SDR:
        enrollments = enrollments.filter(sequence__created_by_id=opt_out.profile_id)
    ended = Enrollment.objects.opt_out(enrollments.values("pk"), now)
    here = OptOut.objects.filter(pk=opt_out.pk).where_it_happened().filter(contact_id__in=ids)
    where = set(here.values_list("pk", flat=True))
    # Only those ended elsewhere come back when it is lifted: where it happened, the lead is
    # unsubscribed at Smartlead, which cannot be undone.
    elsewhere = {str(pk): status for pk, status in ended.items() if pk not in where}
    if elsewhere:
        opt_out.enrollments = opt_out.enrollments | elsewhere
        opt_out.save(update_fields=["enrollments"])


def record_app_opt_outs(now: datetime) -> int:
    """Step 0 of every run, before the outbox: contacts whose unsubscribed_at the app set (no
    opt-out of ours reached them) become opt-outs from the app, and contacts enrolled since
    under an address that opted out are reached too. Returns how many opt-outs were new."""
    covered = OptOutContact.objects.filter(contact_id=OuterRef("pk"), opt_out__lifted_at=None)
    found = (
        Contact.objects.filter(unsubscribed_at__isnull=False)
        .exclude(Q(email__isnull=True) | Q(email=""))
        .exclude(Exists(covered))
        .order_by("unsubscribed_at")
        .values_list("pk", "email", "unsubscribed_at")
    )
    new = 0
    for pk, email, when in found[:PER_RUN]:
        new += apply(Origin(OptOutOrigin.APP, email, when, pk), now) is not None
    reach_newcomers(now)
    return new


def reach_newcomers(now: datetime) -> None:
    """Contacts not reached yet by a live opt-out of their address, with an enrollment going:
    a contact created (or enrolled) after the address opted out."""
    live = OptOut.objects.live().filter(email=Lower(OuterRef("email")))
    going = Enrollment.objects.filter(contact_id=OuterRef("pk"), status__in=GOING)
    newcomers = (
        Contact.objects.filter(unsubscribed_at__isnull=True)
        .filter(Exists(live), Exists(going))
        .values_list("pk", Lower("email"))
    )
    for pk, email in newcomers:
        for opt_out in OptOut.objects.live().filter(email=email).order_by("opted_out_at"):
            sdr_only = opt_out.scope == OptOutScope.SDR
            if not sdr_only or pk in _contacts_of(opt_out.profile_id, email):
                with transaction.atomic():
                    reach(opt_out, [pk], now)
                break


def lift(opt_out: OptOut, *, by: str, now: datetime) -> str:
    """Ops lift a mistaken opt-out: the contacts it unsubscribed get their unsubscribed_at
    cleared and the enrollments it ended elsewhere their status back (the outbox then resumes
    their paused leads), except where another opt-out still in force reaches them. Returns
    what was done, in words."""
    with transaction.atomic():
        locked = OptOut.objects.select_for_update().get(pk=opt_out.pk)
        if locked.lifted_at is not None:
            return f"{locked} was lifted already."
        locked.lifted_at, locked.lifted_by = now, by[:200]
        locked.save(update_fields=["lifted_at", "lifted_by"])
        still = OptOutContact.objects.filter(
            contact_id=OuterRef("contact_id"), opt_out__lifted_at=None
        )
        free = locked.reached.exclude(Exists(still))
        cleared = Contact.objects.filter(
            pk__in=free.filter(unsubscribed_by_it=True).values("contact_id"),
            unsubscribed_at=locked.opted_out_at,
        ).update(unsubscribed_at=None)
        if locked.origin == OptOutOrigin.APP and locked.contact_id in set(
            free.values_list("contact_id", flat=True)
        ):
            cleared += Contact.objects.filter(
                pk=locked.contact_id, unsubscribed_at=locked.opted_out_at
            ).update(unsubscribed_at=None)
        back = Enrollment.objects.filter(
            pk__in=list(locked.enrollments), contact_id__in=free.values("contact_id")
        ).values_list("pk", flat=True)
        previous = {pk: locked.enrollments[str(pk)] for pk in back}
        restored = Enrollment.objects.restore(previous, now)
    kept = ""
    if locked.campaign_id is not None or locked.origin == OptOutOrigin.APP:
        kept = " Where it happened, the lead stays unsubscribed at Smartlead (it has no undo)."
    return (
        f"Lifted the opt-out of {locked.email}: {cleared} contact(s) no longer unsubscribed, "
        f"{restored} enrollment(s) restored (their paused leads are resumed on the next run)."
        + kept
    )


def describe(opt_out: OptOut) -> str:
    """Where an opt-out came from, for people: origin, campaign, SDR, time, reach."""
    where = f" in campaign {opt_out.campaign_id}" if opt_out.campaign_id else ""
    who = f" (SDR {opt_out.profile_id})" if opt_out.profile_id else ""
    reach_words = dict(OptOutScope.choices)[opt_out.scope].lower()
    lifted = ""
    if opt_out.lifted_at is not None:
        lifted = f"; lifted {opt_out.lifted_at:%Y-%m-%d %H:%M} by {opt_out.lifted_by}"
    return (
        f"{opt_out.get_origin_display()}{where}{who} at {opt_out.opted_out_at:%Y-%m-%d %H:%M %Z}"
        f"; reaches {reach_words}{lifted}"
    )


def of_contacts(contact_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, list[OptOut]]:
    """The opt-outs that reached each of these contacts, newest first."""
    found: dict[uuid.UUID, list[OptOut]] = {}
    rows = (
        OptOutContact.objects.filter(contact_id__in=list(contact_ids))
        .select_related("opt_out")
        .order_by("-opt_out__opted_out_at")
    )
    for row in rows:
        found.setdefault(row.contact_id, []).append(row.opt_out)
    return found


def _sdr_of(origin: Origin) -> uuid.UUID | None:
    if origin.sequence_id is not None:
        return (
            Sequence.objects.filter(pk=origin.sequence_id)
            .values_list("created_by_id", flat=True)
            .first()
        )
    if origin.contact_id is not None:
        return (
            Contact.objects.filter(pk=origin.contact_id)
            .values_list("created_by_id", flat=True)
            .first()
        )
    return None


def _same_address(email: str) -> QuerySet[Contact]:
    # Compared case-insensitively, as contacts_lower_email_idx in
    # migrations/PROPOSED_INDEXES.sql indexes it (an expression must match an index exactly).
    return Contact.objects.annotate(_email=Lower("email")).filter(_email=email)


def _contacts_reached(
    email: str, scope: str, sdr: uuid.UUID | None, contact_id: uuid.UUID | None
) -> list[uuid.UUID]:
    same = _same_address(email)
    if scope == OptOutScope.ORGANISATION:
        found = set(same.values_list("pk", flat=True))
    else:
        found = _contacts_of(sdr, email)
    return sorted(found | ({contact_id} if contact_id else set()))


def _contacts_of(sdr: uuid.UUID | None, email: str) -> set[uuid.UUID]:
    """The SDR's contacts with this address: created by them, or enrolled in their sequences."""
    if sdr is None:
        return set()
    theirs = Q(created_by_id=sdr) | Q(enrollments__sequence__created_by_id=sdr)
    return set(_same_address(email).filter(theirs).values_list("pk", flat=True))
