"""What the admin's lists share: the read-only base of every log, a filter that looks its value
up as you type (an SDR, a sequence) instead of listing every value, a date range, and a CSV
download of exactly what the list shows.

Imports no app: each admin says which field and lookup a filter uses (sequences/admin.py,
smartlead/admin.py), so these pieces sit below the apps like the rest of outboundhq's helpers.
"""

from __future__ import annotations

import csv
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from urllib.parse import parse_qsl

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.widgets import AutocompleteSelect
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Field, Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, StreamingHttpResponse
from django.urls import URLPattern, path
from django.utils import timezone

from outboundhq.site import label_of

DEFAULT_DAYS = 7
# Cells a spreadsheet would run as a formula (people type contact data; Smartlead sends text).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class ReadOnlyAdmin(admin.ModelAdmin):
    """Logs are for reading: no adding, editing or deleting from the admin."""

    def has_add_permission(self, request: object) -> bool:
        return False

    def has_change_permission(self, request: object, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: object, obj: object = None) -> bool:
        return False


# --- Dates --------------------------------------------------------------------------------
@dataclass(frozen=True)
class DateRange:
    """Whole days in the admin's time zone, both ends included: `?from=2026-07-01&to=...`."""

    first: date | None
    last: date | None

    @property
    def start(self) -> datetime | None:
        return _midnight(self.first) if self.first else None

    @property
    def end(self) -> datetime | None:
        """The first moment after the range."""
        return _midnight(self.last + timedelta(days=1)) if self.last else None

    def query(self) -> dict[str, str]:
        found = {"from": self.first, "to": self.last}
        return {name: day.isoformat() for name, day in found.items() if day}

    def q(self, field: str) -> Q:
        """`field` within the range, as a condition (for filtered counts)."""
        found = Q()
        if self.start:
            found &= Q(**{f"{field}__gte": self.start})
        if self.end:
            found &= Q(**{f"{field}__lt": self.end})
        return found

    def filter(self, queryset: QuerySet, field: str) -> QuerySet:
        return queryset.filter(self.q(field))

    @classmethod
    def parse(cls, params: dict[str, Any], *, default_days: int | None = None) -> DateRange:
        """Raises ValueError naming what to fix; `default_days` fills a missing start."""
        first, last = (_day(params, name) for name in ("from", "to"))
        if first is None and default_days:
            first = timezone.localdate() - timedelta(days=default_days - 1)
        if first and last and first > last:
            raise ValueError(f"The range starts ({first}) after it ends ({last}).")
        return cls(first, last)


def _day(params: dict[str, Any], name: str) -> date | None:
    raw = params.get(name)
    value = (raw[-1] if isinstance(raw, list) else raw) or ""
    if not value.strip():
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"'{name}' must be a date like 2026-07-01, not {value!r}.") from None


def _midnight(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def hidden_params(changelist: Any, remove: Iterable[str]) -> list[tuple[str, str]]:
    """The list's other filters, kept as hidden inputs by a filter's own little form."""
    return parse_qsl(changelist.get_query_string(remove=[*remove, "p"]).lstrip("?"))


class DateRangeFilter(admin.ListFilter):
    """From and to dates on one column (set by `date_range`); a bad date is said, not a 500."""

    template = "admin/outboundhq/date_range_filter.html"
    field_name = ""

    def __init__(self, request: HttpRequest, params: dict, model: Any, model_admin: Any):
        super().__init__(request, params, model, model_admin)
        given = {name: params.pop(name) for name in ("from", "to") if name in params}
        try:
            self.range = DateRange.parse(given)
        except ValueError as exc:
            messages.warning(request, f"Date range ignored: {exc}")
            self.range = DateRange(None, None)
        self.used_parameters = self.range.query()

    def has_output(self) -> bool:
        return True

    def expected_parameters(self) -> list[str]:
        return ["from", "to"]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return self.range.filter(queryset, self.field_name)

    def choices(self, changelist: Any) -> Iterator[dict[str, Any]]:
        yield {
            "from": self.range.first.isoformat() if self.range.first else "",
            "to": self.range.last.isoformat() if self.range.last else "",
            "hidden": hidden_params(changelist, self.expected_parameters()),
            "clear": changelist.get_query_string(remove=self.expected_parameters()),
            "selected": bool(self.used_parameters),
        }


def date_range(field_name: str, title: str) -> type[DateRangeFilter]:
    attrs = {"field_name": field_name, "title": title}
    return type(f"{field_name}Range", (DateRangeFilter,), attrs)


# --- Look-up-as-you-type filters -----------------------------------------------------------
class AutocompleteFilter(admin.ListFilter):
    """One record chosen by typing (the admin's own autocomplete: the related model's admin
    search), never a list of every value. Made by `autocomplete`."""

    template = "admin/outboundhq/autocomplete_filter.html"
    parameter_name = ""
    source: Field  # a foreign key to the record chosen, for the autocomplete view and its media
    narrow: Callable[[QuerySet, Any], QuerySet]

    def __init__(self, request: HttpRequest, params: dict, model: Any, model_admin: Any):
        super().__init__(request, params, model, model_admin)
        self.admin_site = model_admin.admin_site
        self.value = None
        if self.parameter_name in params:
            raw = params.pop(self.parameter_name)[-1]
            try:
                self.value = self.remote._meta.pk.to_python(raw)
            except ValidationError:
                raise IncorrectLookupParameters(f"{raw!r} is not a {self.title} id.") from None
            self.used_parameters[self.parameter_name] = raw

    @property
    def remote(self) -> Any:
        return self.source.remote_field.model

    def has_output(self) -> bool:
        return True

    def expected_parameters(self) -> list[str]:
        return [self.parameter_name]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset if self.value is None else type(self).narrow(queryset, self.value)

    def choices(self, changelist: Any) -> Iterator[dict[str, Any]]:
        widget = AutocompleteSelect(self.source, self.admin_site, attrs={"data-width": "100%"})
        field = forms.ModelChoiceField(self.remote._default_manager.all(), widget=widget)
        field.label_from_instance = label_of
        form = forms.Form(initial={self.parameter_name: self.value})
        form.fields[self.parameter_name] = field
        yield {
            "widget": form[self.parameter_name],
            "hidden": hidden_params(changelist, [self.parameter_name]),
            "clear": changelist.get_query_string(remove=[self.parameter_name]),
            "selected": self.value is not None,
        }


def autocomplete(
    *, title: str, parameter: str, source: Field, narrow: Callable[[QuerySet, Any], QuerySet]
) -> type[AutocompleteFilter]:
    """A filter on one `source.remote_field.model` record; `narrow(queryset, its pk)` filters."""
    attrs = {
        "title": title,
        "parameter_name": parameter,
        "source": source,
        "narrow": staticmethod(narrow),
    }
    return type(f"{parameter.title()}Filter", (AutocompleteFilter,), attrs)


# --- The list's tools: CSV download, the filters' scripts --------------------------------
Column = tuple[str, Callable[[Any], object]]


class ListTools:
    """A ModelAdmin mixin: `csv_columns` (header, value of a row) download as CSV exactly what
    the list shows, filters and search included (nothing else is ever exported: no key)."""

    csv_columns: Sequence[Column] = ()
    # Not admin/outboundhq/change_list.html: Django would use that for every outboundhq model.
    change_list_template = "admin/outboundhq/listing_change_list.html"

    @property
    def media(self) -> forms.Media:
        return (
            super().media
            + AutocompleteSelect(None, admin.site).media
            + forms.Media(js=["outboundhq/filters.js"])
        )

    def get_urls(self) -> list[URLPattern]:
        opts = self.model._meta
        name = f"{opts.app_label}_{opts.model_name}_export"
        view = self.admin_site.admin_view(self.export_csv)
        return [path("export.csv", view, name=name), *super().get_urls()]

    def export_csv(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            changelist = self.get_changelist_instance(request)
        except IncorrectLookupParameters as exc:
            return HttpResponseBadRequest(f"This list cannot be filtered that way: {exc}")
        rows = changelist.get_queryset(request)
        name = self.model._meta.verbose_name_plural.replace(" ", "-")
        response = StreamingHttpResponse(
            csv_lines(self.csv_columns, rows.iterator(chunk_size=2000)),
            content_type="text/csv; charset=utf-8",
        )
        stamp = timezone.now().strftime("%Y%m%d-%H%M")
        response["Content-Disposition"] = f'attachment; filename="{name}-{stamp}.csv"'
        return response


class _Line:
    """csv.writer writes into this; each row comes back as its text."""

    def write(self, text: str) -> str:
        return text


def csv_lines(columns: Sequence[Column], rows: Iterable[Any]) -> Iterator[str]:
    writer = csv.writer(_Line())
    yield writer.writerow([header for header, _ in columns])
    for row in rows:
        yield writer.writerow([cell(value(row)) for _, value in columns])


def cell(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(timezone.get_current_timezone()).isoformat(timespec="seconds")
    if isinstance(value, uuid.UUID | int | float | bool):
        return value
    text = str(value)
    return "'" + text if text.startswith(FORMULA_START) else text
