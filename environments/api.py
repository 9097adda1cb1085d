"""The API's environments and their health (mounted by portal/api.py at /api/environments/).

Health comes from stored rows only, through the dashboard's own reader (dashboard.build): the
answer never waits on a probe.
"""

from datetime import datetime

from django.http import Http404
from django.urls import reverse
from ninja import Field, Router, Schema
from ninja.pagination import paginate

from portal.apitools import Pages, Slug, errors, needs

from . import dashboard
from .models import Component, Environment, Status

router = Router(
    tags=["environments"], auth=needs("environments.view_environment", "view environments")
)


class EnvironmentOut(Schema):
    name: str
    title: str
    gcp_project: str
    region: str
    zones: list[str]
    branch: str = Field(description="git branch whose builds deploy here")
    requires_approval: bool
    approvals_required: int
    probe_interval: int = Field(description="seconds between probe sweeps")
    probed_at: datetime | None
    health_url: str

    @staticmethod
    def resolve_health_url(environment, context):
        url = reverse("api:api-environment-health", args=[environment.name])
        return context["request"].build_absolute_uri(url)


class ProbeOut(Schema):
    status: Status
    latency_ms: float | None
    detail: str
    at: datetime


class StatsOut(Schema):
    kind: str
    at: datetime
    ok: bool
    figures: dict = Field(description="Redis cache or LLM server figures, as on the dashboard")
    problems: list


class InstancesOut(Schema):
    at: datetime
    ok: bool
    data: dict = Field(description="instance groups, instances by zone and status")
    problems: list


class DeploymentRef(Schema):
    id: int
    state: str


class ComponentHealthOut(Schema):
    name: str
    title: str
    tier: Component.Tier
    network: str
    status: Status = Field(description="confirmed status (after GANTRY_STATUS_CONFIRMATIONS)")
    since: datetime | None = Field(description="when the confirmed status began")
    uptime_24h: float | None = Field(description="percent of known samples that were up")
    last_probe: ProbeOut | None = Field(description="the latest probe within the last hour")
    stats: StatsOut | None = Field(description="the latest Redis or LLM stats reading")
    instances: InstancesOut | None = Field(description="the latest instance-group reading")
    deployment: DeploymentRef | None = Field(description="the deployment in progress, if any")


class EnvironmentHealthOut(Schema):
    environment: str
    probed_at: datetime | None
    summary: dict[str, int] = Field(description="components per status")
    components: list[ComponentHealthOut]


def _component_health(tile: dashboard.Tile) -> dict:
    component, stat, mig = tile.component, tile.stat, tile.mig
    return {
        "name": component.name,
        "title": component.title,
        "tier": component.tier,
        "network": component.network.name,
        "status": tile.status,
        "since": tile.health.since if tile.health else None,
        "uptime_24h": tile.uptime,
        "last_probe": tile.last,
        "stats": None
        if stat is None
        else {
            "kind": stat.kind,
            "at": stat.at,
            "ok": stat.ok,
            "figures": tile.figures,
            "problems": stat.problems,
        },
        "instances": None
        if mig is None
        else {"at": mig.at, "ok": mig.ok, "data": mig.data, "problems": mig.problems},
        "deployment": tile.deployment,
    }


@router.get(
    "", response={200: list[EnvironmentOut], **errors(400, 401, 403)}, url_name="api-environments"
)
@paginate(Pages)
def list_environments(request):
    return Environment.objects.all()


@router.get(
    "{name}/health",
    response={200: EnvironmentHealthOut, **errors(400, 401, 403, 404)},
    url_name="api-environment-health",
)
def environment_health(request, name: Slug):
    """Per component: the confirmed status and since when, the latest probe (status, latency),
    24 h uptime and the latest stats, all read from what the workers stored."""
    environment = Environment.objects.filter(name=name).first()
    if environment is None:
        raise Http404(f"no environment {name!r}")
    view = dashboard.build(environment)
    return {
        "environment": environment.name,
        "probed_at": environment.probed_at,
        "summary": view.summary,
        "components": [_component_health(tile) for tile in view.tiles],
    }
