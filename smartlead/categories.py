"""Smartlead's lead categories by name: what each one we act on is called, and an account's ids.

A LEAD_CATEGORY_UPDATED carries the category's name (`lead_category.new_name`), which is what
the backend acts on. Where only an id is given (the campaign lead list's `lead_category_id`,
a reply's `reply_category`), the id is the SDR's account's: it is read through that account's
`GET /leads/fetch-categories`, cached a day in `AccountCategory`. Smartlead's nine default
categories look alike in every account (Interested = 1 … Sender Originated Bounce = 9); those
ids are only the fallback for an account not read yet.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from smartlead.api import SmartleadClient
from smartlead.models import AccountCategory

INTERESTED = "interested"
MEETING_REQUEST = "meeting request"
NOT_INTERESTED = "not interested"
DO_NOT_CONTACT = "do not contact"
OUT_OF_OFFICE = "out of office"
DEFAULTS = {
    1: "Interested",
    2: "Meeting Request",
    3: "Not Interested",
    4: "Do Not Contact",
    5: "Information Request",
    6: "Out Of Office",
    7: "Wrong Person",
    8: "Uncategorizable by AI",
    9: "Sender Originated Bounce",
}
# An account's names are read again after this.
FRESH_FOR = timedelta(days=1)


def normal(name: str) -> str:
    """Names are compared so: sources spell "Out Of Office" and "Out of Office"."""
    return " ".join(name.split()).casefold()


def cached(profile_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, dict[int, str]]:
    """Each SDR's account's names by id, as last read (any age; none for an account never read)."""
    found: dict[uuid.UUID, dict[int, str]] = {}
    rows = AccountCategory.objects.filter(profile_id__in=set(profile_ids))
    for profile_id, category_id, name in rows.values_list("profile_id", "category_id", "name"):
        found.setdefault(profile_id, {})[category_id] = name
    return found


def name_of(category_id: int | None, names: dict[int, str]) -> str:
    if category_id is None:
        return ""
    return names.get(category_id) or DEFAULTS.get(category_id, "")


def read(client: SmartleadClient, profile_id: uuid.UUID) -> dict[int, str]:
    """The account's names by id: the cache while it is fresh, else Smartlead's (one request),
    which replaces it."""
    rows = AccountCategory.objects.filter(profile_id=profile_id)
    if rows.filter(fetched_at__gt=timezone.now() - FRESH_FOR).exists():
        return dict(rows.values_list("category_id", "name"))
    categories = list({c.id: c for c in client.lead_categories()}.values())
    now = timezone.now()
    with transaction.atomic():
        rows.delete()
        AccountCategory.objects.bulk_create(
            AccountCategory(
                profile_id=profile_id,
                category_id=c.id,
                name=c.name[:200],
                sentiment=c.sentiment[:16],
                fetched_at=now,
            )
            for c in categories
        )
    return {c.id: c.name for c in categories}
