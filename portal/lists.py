"""What every list page shares: a GET filter form validated by a Django Form, a date range of
whole days, and paging (50 a page) whose links keep the filters.

A bad value (a date that is not one, a choice that does not exist) is reported next to its
field by the form and only that filter is left out, so a hand-edited address never gives a 500.
"""

from datetime import date, datetime, time, timedelta
from urllib.parse import urlencode

from django import forms
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.utils import timezone

PER_PAGE = 50


class SearchInput(forms.TextInput):
    """A text filter: type=search, so it keeps its own width beside the others on the line."""

    input_type = "search"

    def __init__(self, size: int = 16) -> None:
        super().__init__(attrs={"size": size})


class DateRangeForm(forms.Form):
    """From and to, both days included; `to` before `from` is an error of the form."""

    created_from = forms.DateField(
        label="From", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    created_to = forms.DateField(
        label="To", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )

    def clean(self) -> dict:
        data = super().clean()
        start, end = data.get("created_from"), data.get("created_to")
        if start and end and end < start:
            self.add_error("created_to", "“To” must not be before “From”.")
        return data


def bound(form_class: type[forms.Form], params) -> forms.Form:
    """The form bound to the query string (without `page`), validated: its cleaned_data holds
    the filters that passed."""
    form = form_class({key: value for key, value in params.items() if key != "page"})
    form.is_valid()
    return form


def chosen(form: forms.Form) -> dict:
    """The filters that validated and are set, as the query string carries them."""
    return {
        name: value.isoformat() if isinstance(value, date) else value
        for name, value in form.cleaned_data.items()
        if value not in (None, "")
    }


def day_range(start: date | None, end: date | None) -> dict:
    """Lookups on `created_at` for the days from `start` to `end`, both whole days included,
    in the site's time zone (TIME_ZONE): a row made at 23:30 on the 3rd is on the 3rd."""
    lookups = {}
    if start:
        lookups["created_at__gte"] = timezone.make_aware(datetime.combine(start, time.min))
    if end:
        lookups["created_at__lt"] = timezone.make_aware(
            datetime.combine(end + timedelta(days=1), time.min)
        )
    return lookups


def paged(rows: QuerySet, params, filters: dict, per_page: int = PER_PAGE) -> dict:
    """The page `?page=` asks for (the last for a number past the end, the first for nonsense)
    and the filters' query string, which the pager's links carry along."""
    return {
        "page": Paginator(rows, per_page).get_page(params.get("page")),
        "query": urlencode(filters),
    }
