"""The filters of the Releases and Deployments lists (forms and what each filter matches).

The forms and paging are portal.lists'; the rules of what each filter matches are in the
docstrings of `filter_releases` and `filter_deployments`.
"""

from django import forms
from django.db.models import Count, Max, OuterRef, Q, QuerySet, Subquery

from environments.models import Component, Environment
from portal.lists import DateRangeForm, SearchInput, day_range

from .models import Deployment, Release


def _environments() -> list[tuple[str, str]]:
    return [("", "all")] + [
        (name, name) for name in Environment.objects.values_list("name", flat=True)
    ]


def _components() -> list[tuple[str, str]]:
    names = Component.objects.order_by("name").values_list("name", flat=True).distinct()
    return [("", "all")] + [(name, name) for name in names]


def _states() -> list[tuple[str, str]]:
    return [("", "any"), *Deployment.State.choices]


class ListFilterForm(DateRangeForm):
    """Environment, component, state and author, then the dates."""

    field_order = ["environment", "component", "state", "author", "created_from", "created_to"]

    environment = forms.ChoiceField(label="Environment", required=False, choices=_environments)
    component = forms.ChoiceField(label="Component", required=False, choices=_components)
    state = forms.ChoiceField(label="State", required=False, choices=_states)
    author = forms.CharField(label="Author", required=False, max_length=100, widget=SearchInput())


class ReleaseFilterForm(ListFilterForm):
    state = forms.ChoiceField(label="Latest deployment", required=False, choices=_states)


def latest_state() -> Subquery:
    """The state of a release's newest deployment (the one its row shows)."""
    newest = Deployment.objects.filter(release=OuterRef("pk")).order_by("-created_at", "-id")
    return Subquery(newest.values("state")[:1])


def filter_releases(releases: QuerySet, filters: dict) -> QuerySet:
    """Releases by the list's filters: environment and component by exact name; state is the
    state of the release's newest deployment (what its row shows); author is part of the GitHub
    actor or of who started the run, in any case; from/to are days of `created_at`, both
    included. A filter not in `filters` (empty, or refused by the form) is left out."""
    if environment := filters.get("environment"):
        releases = releases.filter(component__environment__name=environment)
    if component := filters.get("component"):
        releases = releases.filter(component__name=component)
    if state := filters.get("state"):
        releases = releases.annotate(latest_state=latest_state()).filter(latest_state=state)
    if author := filters.get("author"):
        releases = releases.filter(
            Q(author__icontains=author) | Q(triggering_actor__icontains=author)
        )
    return releases.filter(**day_range(filters.get("created_from"), filters.get("created_to")))


def filter_deployments(deployments: QuerySet, filters: dict) -> QuerySet:
    """Deployments by the list's filters: environment and component by exact name; state is
    the deployment's own; author is part of its release's GitHub actor or of who started the
    run, in any case; from/to are days of the deployment's `created_at`, both included."""
    if environment := filters.get("environment"):
        deployments = deployments.filter(component__environment__name=environment)
    if component := filters.get("component"):
        deployments = deployments.filter(component__name=component)
    if state := filters.get("state"):
        deployments = deployments.filter(state=state)
    if author := filters.get("author"):
        deployments = deployments.filter(
            Q(release__author__icontains=author) | Q(release__triggering_actor__icontains=author)
        )
    return deployments.filter(**day_range(filters.get("created_from"), filters.get("created_to")))


def lists_version() -> str:
    """What the releases and deployments lists show, named: a release arriving, a deployment
    changing state, or an environment or component the filters offer. Three small queries
    (portal.polls)."""
    return repr(
        (
            Release.objects.aggregate(last=Max("id"), count=Count("id")),
            Deployment.objects.aggregate(last=Max("state_changed_at"), count=Count("id")),
            list(
                Environment.objects.order_by("pk", "components__name").values_list(
                    "name", "components__name"
                )
            ),
        )
    )
