"""Links between admin records: each page points at the filtered lists of its related records.

The hosted tables and the ledger are joined by plain ids (the push ledger and the webhook log
have no foreign keys), so the links are filtered changelist URLs built from a row's own
columns: rendering one costs no query.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString


def changelist(model: str, **filters: Any) -> str:
    """`model` as `app_model`, e.g. `changelist("sequences_push", run_id=run.id)`."""
    url = reverse(f"admin:{model}_changelist")
    return f"{url}?{urlencode(filters)}" if filters else url


def change(model: str, pk: Any) -> str:
    return reverse(f"admin:{model}_change", args=[pk])


def link(href: str, text: object) -> SafeString:
    return format_html('<a href="{}">{}</a>', href, text)


def links(*pairs: tuple[str, str] | None) -> SafeString:
    """`(text, href)` pairs as links separated by dots; None entries are left out."""
    shown = [(href, text) for text, href in (p for p in pairs if p)]
    return format_html_join(" · ", '<a href="{}">{}</a>', shown) if shown else SafeString("—")


def sdr_url(profile_id: Any) -> str:
    """An SDR's own page (outboundhq/drilldown.py)."""
    return reverse("ops-sdr", args=[profile_id])


def sdr(profile_id: Any, text: object) -> SafeString | str:
    """An SDR's name linked to their page: wherever the admin names an SDR."""
    if profile_id is None:
        return "—"
    return link(sdr_url(profile_id), text or profile_id)
