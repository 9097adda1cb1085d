"""Cloud Monitoring figures for the dashboards, read through gcp/monitoring.py on beat.

Each deployable component gets one StatSample of kind `cloud` per read, at most once a
`GANTRY_CLOUD_METRICS_SECONDS`: the last hour of its instances' CPU (per zone, with the
autoscaler's target), memory, network and disk, its app's latency quantiles and error share,
and, behind a backend service, the load balancer's request rate, 5xx share and latency; a
Cloud SQL or Memorystore component (named in `options`) its CPU/memory/connections or hit
ratio/memory/clients; one point a minute, as charts ready to draw. Cloud Monitoring keeps the
history, so one sample carries the whole hour and a page reads only the newest. The instances
are those the latest instance-group reading (environments/mig.py) saw. Pages never call GCP.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from gcp.monitoring import (
    APP_LATENCY,
    APP_REQUESTS,
    CPU_UTILIZATION,
    DISK_READ_BYTES,
    DISK_WRITE_BYTES,
    LB_LATENCY,
    MEMORY_PERCENT,
    RECEIVED_BYTES,
    RESPONSE_CLASS,
    SENT_BYTES,
    Monitoring,
    error_share,
    server_error_share,
)

from .mig import DEPLOYABLE
from .models import Component, Environment, StatSample

WINDOW = timedelta(hours=1)
ZONE = "resource.labels.zone"
OUTCOME = "metric.labels.outcome"
SQL = "cloudsql.googleapis.com/database/"
REDIS = "redis.googleapis.com/"


def instances_of(mig: StatSample | None) -> tuple[list[str], float | None]:
    """The VM names an instance-group reading saw, and its autoscaler's CPU target (0..1)."""
    if mig is None or not mig.ok:
        return [], None
    if vm := mig.data.get("vm"):
        return [vm["name"]], None
    names, target = [], None
    for group in mig.data.get("groups", []):
        names += [i["name"] for zone in group["zones"].values() for i in zone]
        target = target or (group.get("autoscaler") or {}).get("cpu_target")
    return names, target


def _points(samples, scale: float = 1.0) -> list[list]:
    return [[s.at.isoformat(), round(s.value * scale, 4)] for s in samples]


def _series(groups, field: str | None, scale: float = 1.0, names: dict | None = None) -> list:
    return [
        {
            "name": (names or {}).get(g.labels.get(field, ""), g.labels.get(field, ""))
            if field
            else "",
            "points": _points(g.samples, scale),
        }
        for g in groups
    ]


def charts(monitoring, project: str, names: list[str], start, end, cpu_target) -> list[dict]:
    """The component's charts: each a title, a unit and named series of [time, value]."""
    if not names:
        return []
    read = monitoring.grouped

    def total(metric: str, label: str):
        groups = read(project, metric, start, end, instances=names, aligner="rate", reducer="sum")
        return {"name": label, "points": _points(groups[0].samples, 1 / 1000) if groups else []}

    cpu = read(project, CPU_UTILIZATION, start, end, instances=names, group_by=[ZONE])
    used = {"metric.labels.state": "used"}
    memory = read(project, MEMORY_PERCENT, start, end, where=used, instances=names, group_by=[ZONE])
    quantile = "metric.labels.quantile"
    quantiles = read(project, APP_LATENCY, start, end, instances=names, group_by=[quantile])
    requests = read(
        project,
        APP_REQUESTS,
        start,
        end,
        instances=names,
        aligner="rate",
        reducer="sum",
        group_by=[OUTCOME],
    )
    quantile_names = {"0.5": "p50", "0.95": "p95", "0.99": "p99"}
    target = None if cpu_target is None else round(cpu_target * 100, 2)
    errors = _points(server_error_share(requests, OUTCOME))
    return [
        _chart("cpu", "CPU by zone", "%", _series(cpu, ZONE, 100), target=target),
        _chart("memory", "Memory used by zone", "%", _series(memory, ZONE)),
        _chart(
            "network",
            "Network",
            "kB/s",
            [total(RECEIVED_BYTES, "received"), total(SENT_BYTES, "sent")],
        ),
        _chart(
            "disk",
            "Disk",
            "kB/s",
            [total(DISK_READ_BYTES, "read"), total(DISK_WRITE_BYTES, "written")],
        ),
        _chart("latency", "App latency", "ms", _series(quantiles, quantile, 1000, quantile_names)),
        _chart("errors", "App server errors", "% of requests", [{"name": "5xx", "points": errors}]),
    ]


def _chart(key: str, title: str, unit: str, series: list, **extra) -> dict:
    return {"key": key, "title": title, "unit": unit, "series": series, **extra}


def load_balancer(monitoring, project: str, service: str, start, end) -> list[dict]:
    """The HTTPS load balancer's view of one backend service: requests a second by response
    class, the share of 5xx, and total latency percentiles merged from its distributions."""
    read = monitoring.grouped
    where = {"resource.labels.backend_target_name": service}
    classes = monitoring.lb_requests_by_class(project, service, start, end)
    errors = _points(error_share(classes))
    latency = []
    for name in ("p50", "p95", "p99"):
        found = read(project, LB_LATENCY, start, end, where=where, aligner="delta", reducer=name)
        latency.append({"name": name, "points": _points(found[0].samples) if found else []})
    names = {code: f"{code[0]}xx" for code in (g.labels[RESPONSE_CLASS] for g in classes)}
    requests = _series(classes, RESPONSE_CLASS, 1, names)
    return [
        _chart("lb_requests", "Load balancer requests", "req/s", requests),
        _chart(
            "lb_errors", "Load balancer 5xx", "% of requests", [{"name": "5xx", "points": errors}]
        ),
        _chart("lb_latency", "Load balancer latency", "ms", latency),
    ]


def managed(monitoring, project: str, component: Component, start, end) -> list[dict]:
    """A Cloud SQL instance's or a Memorystore instance's charts, named in the topology's
    options (`cloud_sql_instance`, `memorystore_instance`)."""
    read, options = monitoring.grouped, component.options
    if instance := options.get("cloud_sql_instance"):
        where = {"resource.labels.database_id": f"{project}:{instance}"}
        parts = [
            ("sql_cpu", "Cloud SQL CPU", "%", "cpu/utilization", 100),
            ("sql_connections", "Cloud SQL connections", "connections", "network/connections", 1),
            ("sql_memory", "Cloud SQL memory", "%", "memory/utilization", 100),
        ]
        prefix = SQL
    elif instance := options.get("memorystore_instance"):
        region = component.environment.region
        where = {
            "resource.labels.instance_id": f"projects/{project}/locations/{region}/instances/"
            f"{instance}"
        }
        parts = [
            ("redis_hits", "Memorystore hit ratio", "%", "stats/cache_hit_ratio", 100),
            ("redis_memory", "Memorystore memory used", "%", "stats/memory/usage_ratio", 100),
            ("redis_clients", "Memorystore clients", "clients", "clients/connected", 1),
        ]
        prefix = REDIS
    else:
        return []
    return [
        _chart(
            key,
            title,
            unit,
            _series(read(project, prefix + metric, start, end, where=where), None, scale),
        )
        for key, title, unit, metric, scale in parts
    ]


def charts_for(component: Component, monitoring, instances, start, end) -> list:
    """`instances`: what `instances_of` read of the component's latest instance groups."""
    project = component.environment.gcp_project
    if component.deploy_kind not in DEPLOYABLE:
        return managed(monitoring, project, component, start, end)
    names, target = instances
    found = charts(monitoring, project, names, start, end, target)
    if component.backend_service:
        found += load_balancer(monitoring, project, component.backend_service, start, end)
    return found


def watched(component: Component) -> bool:
    """Whether Gantry reads Cloud Monitoring for it: what it deploys, and managed services."""
    options = component.options
    return component.deploy_kind in DEPLOYABLE or bool(
        options.get("cloud_sql_instance") or options.get("memorystore_instance")
    )


def read(component: Component, monitoring, mig: StatSample | None, now: datetime) -> StatSample:
    """One sample for the component; a failed read is stored too, with the reason."""
    instances = instances_of(mig)
    try:
        data = {
            "window": [(now - WINDOW).isoformat(), now.isoformat()],
            "charts": charts_for(component, monitoring, instances, now - WINDOW, now),
        }
        problems = (
            []
            if instances[0] or component.deploy_kind not in DEPLOYABLE
            else ["no instances read yet"]
        )
    except Exception as exc:  # Monitoring unreachable, throttled, refused: say so on the panel
        message = getattr(exc, "message", None) or str(exc)
        data, problems = {}, [f"Cloud Monitoring unreadable: {type(exc).__name__}: {message}"[:300]]
    return StatSample(
        component=component,
        kind=StatSample.Kind.CLOUD,
        at=now,
        ok=not problems,
        data=data,
        problems=problems,
    )


def due(environment_id: int, now: datetime | None = None) -> bool:
    """Whether the environment's last read is older than GANTRY_CLOUD_METRICS_SECONDS."""
    now = now or timezone.now()
    since = now - timedelta(seconds=settings.GANTRY_CLOUD_METRICS_SECONDS)
    return not StatSample.objects.filter(
        component__environment_id=environment_id, kind=StatSample.Kind.CLOUD, at__gt=since
    ).exists()


def collect(environment_id: int, monitoring=None, now: datetime | None = None) -> list[StatSample]:
    """Read every watched component of an environment and store a sample each."""
    components = [
        c
        for c in Component.objects.filter(environment_id=environment_id).select_related(
            "environment"
        )
        if watched(c)
    ]
    if not components:
        return []
    now = now or timezone.now()
    monitoring = monitoring or Monitoring.from_settings()
    samples = []
    for component in components:
        mig = component.stats.filter(kind=StatSample.Kind.MIG).order_by("-at", "-id").first()
        samples.append(read(component, monitoring, mig, now))
    stored = StatSample.objects.bulk_create(samples)
    # Each sample holds the last hour: older ones only take room.
    StatSample.objects.filter(
        component__in=components, kind=StatSample.Kind.CLOUD, at__lt=now - WINDOW
    ).delete()
    Environment.readings_stored(environment_id)
    return stored
