"""The audit log's filters: a plain GET form, validated, and what each filter matches."""

from django import forms
from django.db.models import QuerySet

from portal.lists import DateRangeForm, SearchInput, day_range


class AuditFilterForm(DateRangeForm):
    """Who, what action, which object, which days; a bad value is reported, not a 500."""

    field_order = ["actor", "action", "object_type", "object_id", "created_from", "created_to"]

    actor = forms.CharField(label="Who", required=False, max_length=150, widget=SearchInput())
    action = forms.CharField(label="Action", required=False, max_length=64, widget=SearchInput())
    object_type = forms.CharField(
        label="Object type", required=False, max_length=64, widget=SearchInput(20)
    )
    object_id = forms.CharField(
        label="Object id", required=False, max_length=64, widget=SearchInput(8)
    )


def filter_events(events: QuerySet, filters: dict) -> QuerySet:
    """Audit events by the log's filters. The actor is a whole name in any case (a link on a
    name shows that person, not everyone whose name contains it); the action is any part of
    it (`approv` finds approvals, refusals and skips; `deployment.` everything on deployments);
    object type (e.g. deployments.deployment) and id are exact, as the object links give them;
    from/to are days of `created_at`, both included."""
    if actor := filters.get("actor"):
        events = events.filter(actor__iexact=actor)
    if action := filters.get("action"):
        events = events.filter(action__icontains=action)
    for name in ("object_type", "object_id"):
        if value := filters.get(name):
            events = events.filter(**{name: value})
    return events.filter(**day_range(filters.get("created_from"), filters.get("created_to")))
