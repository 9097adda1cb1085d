from django.contrib.auth.decorators import permission_required
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, render

from deployments.models import Deployment
from portal.polls import drawn, polled

from . import fragments
from .models import Component, Environment


@permission_required("environments.view_environment", raise_exception=True)
def environment_detail(request, name):
    """The environment's dashboard. Its tiles are drawn once per version (portal.polls: until
    a sweep or a deployment changes what they show) for the page and its HTMX polls alike; a
    poll from a browser that holds them is a 304."""
    if request.htmx:
        environment = get_object_or_404(Environment, name=name)
        return polled(request, *fragments.tiles(environment))
    environment = get_object_or_404(fragments.environments(), name=name)
    _, tiles = drawn(*fragments.tiles(environment))
    return render(
        request, "environments/environment.html", {"environment": environment, "tiles": tiles}
    )


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
    _, readings = drawn(*fragments.component_readings(component, deployment))
    context = {
        "component": component,
        "deployment": deployment,
        "running": running,
        "history_page": page,
        "history_rows": [(d, d.is_rollback_target(running)) for d in page],
        "readings": readings,
    }
    return render(request, "environments/component.html", context)


DEPLOYMENTS_PER_PAGE = 20
