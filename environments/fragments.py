"""The environments' live fragments, each named with its version and drawing for portal.polls:
the pages and their HTMX polls serve them, and the worker that stores a sweep draws them ahead
(`on_new_readings`) for whoever is looking."""

from __future__ import annotations

from django.db.models import Prefetch
from django.template.loader import render_to_string

from portal.polls import draw_ahead, watched

from . import dashboard
from .models import Component, Environment, Network, StatSample

HISTORY = 96


def environments():
    """Environments with their networks, peers and components, in page order."""
    components = Component.objects.select_related("network").order_by("position", "name")
    return Environment.objects.prefetch_related(
        Prefetch("networks", queryset=Network.objects.prefetch_related("peers")),
        Prefetch("components", queryset=components),
    )


def tiles(environment: Environment) -> tuple[str, str, object]:
    """The environment dashboard's tiles: (name, version, draw)."""

    def draw() -> str:
        full = environments().get(pk=environment.pk)
        view = dashboard.build(full)
        return render_to_string("environments/_tiles.html", {"environment": full, "view": view})

    return f"tiles:{environment.pk}", dashboard.poll_version(environment), draw


def component_readings(component: Component, deployment=None) -> tuple[str, str, object]:
    """A component page's readings (instances, health, 24 h, figures): (name, version, draw).
    `deployment` is its unfinished deployment, which the instance-group panel names."""
    version = repr((dashboard.readings_key(component.environment), deployment_stamp(deployment)))

    def draw() -> str:
        context = {
            "component": component,
            "deployment": deployment,
            "history": dashboard.component_history(component),
            "last": component.samples.order_by("-at", "-id").first(),
            "events": component.events.order_by("-at", "-id")[:20],
            "stats": list(
                component.stats.exclude(kind__in=dashboard.LATEST_ONLY).order_by("-at", "-id")[
                    :HISTORY
                ][::-1]
            ),
            "mig": component.stats.filter(kind=StatSample.Kind.MIG).order_by("-at", "-id").first(),
            "cloud": component.stats.filter(kind=StatSample.Kind.CLOUD)
            .order_by("-at", "-id")
            .first(),
        }
        return render_to_string("environments/_component_readings.html", context)

    return f"component:{component.pk}", version, draw


def deployment_stamp(deployment) -> tuple | None:
    """What of an unfinished deployment the readings show (the MIG panel names it)."""
    if deployment is None:
        return None
    return (deployment.pk, deployment.state, deployment.state_changed_at, deployment.release_id)


def on_new_readings(sender, environment_id: int, **kwargs) -> None:
    """Draw ahead the environment's tiles and component readings that someone is looking at;
    nothing is read for the others (an environment may have a thousand components)."""
    environment = Environment.objects.filter(pk=environment_id).first()
    if environment is None:
        return
    readings = {f"component:{pk}": pk for pk in environment.components.values_list("pk", flat=True)}
    looked_at = watched([f"tiles:{environment.pk}", *readings])
    if f"tiles:{environment.pk}" in looked_at:
        draw_ahead(*tiles(environment))
    wanted = [pk for name, pk in readings.items() if name in looked_at]
    components = (
        environment.components.filter(pk__in=wanted)
        .select_related("environment")
        .prefetch_related(Prefetch("deployments", queryset=_unfinished(), to_attr="unfinished"))
    )
    for component in components if wanted else []:
        deployment = component.unfinished[0] if component.unfinished else None
        draw_ahead(*component_readings(component, deployment))


def _unfinished():
    from deployments.models import Deployment

    return Deployment.objects.unfinished().select_related("release")  # newest first, as the page
