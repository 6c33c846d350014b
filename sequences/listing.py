"""What this app's admin lists share with smartlead's: the SDR filter (typed, never listed), the
SDR's email on rows that carry only their id, and the link to a campaign's webhook log."""

from __future__ import annotations

from typing import Any

from django.db.models import OuterRef, QuerySet, Subquery

from outboundhq.links import changelist
from outboundhq.listing import autocomplete
from profiles.models import Profile
from sequences.models import Sequence

SDR_SOURCE = Sequence._meta.get_field("created_by")


def sdr_filter(narrow: Any) -> type:
    """The SDR, chosen by typing their email or name (never a list of every SDR)."""
    return autocomplete(title="SDR", parameter="sdr", source=SDR_SOURCE, narrow=narrow)


def with_sdr_email(queryset: QuerySet, column: str = "profile_id") -> QuerySet:
    """Rows that carry an SDR's id (no foreign key) get their email in the same query."""
    email = Profile.objects.filter(pk=OuterRef(column)).values("email")[:1]
    return queryset.annotate(sdr_email=Subquery(email))


def webhook_events(campaign_id: int | None, email: str | None = None) -> tuple[str, str] | None:
    """The webhook log of a campaign (and lead): the log stores emails lowercased."""
    if campaign_id is None and not email:
        return None
    filters: dict[str, object] = {"campaign_id": campaign_id} if campaign_id is not None else {}
    if email:
        filters["lead_email"] = email.lower()
    return ("Webhook events", changelist("smartlead_webhookevent", **filters))
