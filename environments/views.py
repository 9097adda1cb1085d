from django.contrib.auth.decorators import permission_required
from django.core.paginator import Paginator
from django.db.models import Prefetch
from django.shortcuts import get_object_or_404, render

from deployments.models import Deployment

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
    environment = get_object_or_404(_environments(), name=name)
    view = dashboard.build(environment)
    template = "environments/_tiles.html" if request.htmx else "environments/environment.html"
    return render(request, template, {"environment": environment, "view": view})


@permission_required("environments.view_component", raise_exception=True)
def component_detail(request, name, component):
    """A component's facts, health and deployment history (paged, newest first), with what runs
    now at the top and, for deployers, a rollback offered on each earlier good release."""
    component = get_object_or_404(
        Component.objects.select_related("environment", "network", "health"),
        environment__name=name,
        name=component,
    )
    context = {
        "component": component,
        "history": dashboard.component_history(component),
        "last": component.samples.order_by("-at", "-id").first(),
        "events": component.events.order_by("-at", "-id")[:20],
        "stats": list(
            component.stats.exclude(kind=StatSample.Kind.MIG).order_by("-at", "-id")[:HISTORY][::-1]
        ),
        "mig": component.stats.filter(kind=StatSample.Kind.MIG).order_by("-at", "-id").first(),
        "deployment": component.deployments.unfinished().select_related("release").first(),
    }
    running = Deployment.objects.running_on(component)
    page = Paginator(Deployment.objects.history(component), DEPLOYMENTS_PER_PAGE)
    page = page.get_page(request.GET.get("page"))
    context |= {
        "running": running,
        "history_page": page,
        "history_rows": [(d, d.is_rollback_target(running)) for d in page],
    }
    return render(request, "environments/component.html", context)


HISTORY = 96
DEPLOYMENTS_PER_PAGE = 20
