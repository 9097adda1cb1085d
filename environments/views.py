from django.contrib.auth.decorators import permission_required
from django.core.paginator import Paginator
from django.db.models import Prefetch
from django.shortcuts import get_object_or_404, render
from django.template.loader import render_to_string

from deployments.models import Deployment
from portal.polls import drawn, polled

from . import dashboard
from .models import Component, Environment, Network, StatSample


def _environments():
    components = Component.objects.select_related("network").order_by("position", "name")
    return Environment.objects.prefetch_related(
        Prefetch("networks", queryset=Network.objects.prefetch_related("peers")),
        Prefetch("components", queryset=components),
    )


@permission_required("environments.view_environment", raise_exception=True)
def environment_detail(request, name):
    """The environment's dashboard. Its tiles are drawn once per version (portal.polls: until
    a sweep or a deployment changes what they show) for the page and its HTMX polls alike; a
    poll from a browser that holds them is a 304."""
    if request.htmx:
        environment = get_object_or_404(Environment, name=name)
        return polled(request, *_tiles(environment))
    environment = get_object_or_404(_environments(), name=name)
    _, tiles = drawn(*_tiles(environment))
    return render(
        request, "environments/environment.html", {"environment": environment, "tiles": tiles}
    )


def _tiles(environment: Environment):
    """The tiles fragment's name, version and drawing, for portal.polls."""

    def draw() -> str:
        full = _environments().get(pk=environment.pk)
        view = dashboard.build(full)
        return render_to_string("environments/_tiles.html", {"environment": full, "view": view})

    return f"tiles:{environment.pk}", dashboard.poll_version(environment), draw


@permission_required("environments.view_component", raise_exception=True)
def component_detail(request, name, component):
    """A component's facts and deployment history (paged, newest first), with what runs now at
    the top and, for deployers, a rollback offered on each earlier good release; then its
    readings, drawn once per version for everyone (portal.polls)."""
    component = get_object_or_404(
        Component.objects.select_related("environment", "network", "health"),
        environment__name=name,
        name=component,
    )
    deployment = component.deployments.unfinished().select_related("release").first()
    running = Deployment.objects.running_on(component)
    page = Paginator(Deployment.objects.history(component), DEPLOYMENTS_PER_PAGE)
    page = page.get_page(request.GET.get("page"))
    version = repr((dashboard.readings_key(component.environment), deployment_stamp(deployment)))
    _, readings = drawn(
        f"component:{component.pk}", version, lambda: _draw_readings(component, deployment)
    )
    context = {
        "component": component,
        "deployment": deployment,
        "running": running,
        "history_page": page,
        "history_rows": [(d, d.is_rollback_target(running)) for d in page],
        "readings": readings,
    }
    return render(request, "environments/component.html", context)


def deployment_stamp(deployment) -> tuple | None:
    """What of an unfinished deployment the readings show (the MIG panel names it)."""
    if deployment is None:
        return None
    return (deployment.pk, deployment.state, deployment.state_changed_at, deployment.release_id)


def _draw_readings(component: Component, deployment) -> str:
    context = {
        "component": component,
        "deployment": deployment,
        "history": dashboard.component_history(component),
        "last": component.samples.order_by("-at", "-id").first(),
        "events": component.events.order_by("-at", "-id")[:20],
        "stats": list(
            component.stats.exclude(kind=StatSample.Kind.MIG).order_by("-at", "-id")[:HISTORY][::-1]
        ),
        "mig": component.stats.filter(kind=StatSample.Kind.MIG).order_by("-at", "-id").first(),
    }
    return render_to_string("environments/_component_readings.html", context)


HISTORY = 96
DEPLOYMENTS_PER_PAGE = 20
