"""Cloud Monitoring figures for the dashboards, read through gcp/monitoring.py on beat.

Each deployable component gets one StatSample of kind `cloud` per read, at most once a
`GANTRY_CLOUD_METRICS_SECONDS`: the last hour of its instances' CPU (per zone, with the
autoscaler's target), memory, network and disk, and its app's latency quantiles and error share,
one point a minute, as charts ready to draw. Cloud Monitoring keeps the history, so one sample
carries the whole hour and a page reads only the newest. The instances are those the latest
instance-group reading (environments/mig.py) saw. Pages never call GCP themselves.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from .mig import DEPLOYABLE
from .models import Component, Environment, StatSample

WINDOW = timedelta(hours=1)
CPU = "compute.googleapis.com/instance/cpu/utilization"
MEMORY = "agent.googleapis.com/memory/percent_used"
RECEIVED = "compute.googleapis.com/instance/network/received_bytes_count"
SENT = "compute.googleapis.com/instance/network/sent_bytes_count"
DISK_READ = "compute.googleapis.com/instance/disk/read_bytes_count"
DISK_WRITE = "compute.googleapis.com/instance/disk/write_bytes_count"
LATENCY = "prometheus.googleapis.com/http_server_requests_seconds/summary"
REQUESTS = "prometheus.googleapis.com/http_server_requests_seconds_count/summary"
ZONE = "resource.labels.zone"


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


def _error_share(groups) -> list[list]:
    """Server errors as a % of requests, per minute, from the counter's rate per outcome."""
    by_minute: dict[datetime, dict[str, float]] = defaultdict(dict)
    for group in groups:
        for sample in group.samples:
            by_minute[sample.at][group.labels.get("metric.labels.outcome", "")] = sample.value
    return [
        [at.isoformat(), round(100 * rates.get("SERVER_ERROR", 0.0) / total, 4)]
        for at, rates in sorted(by_minute.items())
        if (total := sum(rates.values())) > 0
    ]


def charts(monitoring, project: str, names: list[str], start, end, cpu_target) -> list[dict]:
    """The component's charts: each a title, a unit and named series of [time, value]."""
    if not names:
        return []
    read = monitoring.grouped

    def total(metric: str, label: str):
        groups = read(project, metric, start, end, instances=names, aligner="rate", reducer="sum")
        return {"name": label, "points": _points(groups[0].samples, 1 / 1000) if groups else []}

    cpu = read(project, CPU, start, end, instances=names, group_by=[ZONE])
    memory = read(
        project,
        MEMORY,
        start,
        end,
        where={"metric.labels.state": "used"},
        instances=names,
        group_by=[ZONE],
    )
    quantiles = read(
        project, LATENCY, start, end, instances=names, group_by=["metric.labels.quantile"]
    )
    requests = read(
        project,
        REQUESTS,
        start,
        end,
        instances=names,
        aligner="rate",
        reducer="sum",
        group_by=["metric.labels.outcome"],
    )
    quantile_names = {"0.5": "p50", "0.95": "p95", "0.99": "p99"}
    return [
        {
            "key": "cpu",
            "title": "CPU by zone",
            "unit": "%",
            "series": _series(cpu, ZONE, 100),
            "target": None if cpu_target is None else round(cpu_target * 100, 2),
        },
        {
            "key": "memory",
            "title": "Memory used by zone",
            "unit": "%",
            "series": _series(memory, ZONE),
        },
        {
            "key": "network",
            "title": "Network",
            "unit": "kB/s",
            "series": [total(RECEIVED, "received"), total(SENT, "sent")],
        },
        {
            "key": "disk",
            "title": "Disk",
            "unit": "kB/s",
            "series": [total(DISK_READ, "read"), total(DISK_WRITE, "written")],
        },
        {
            "key": "latency",
            "title": "App latency",
            "unit": "ms",
            "series": _series(quantiles, "metric.labels.quantile", 1000, quantile_names),
        },
        {
            "key": "errors",
            "title": "App server errors",
            "unit": "% of requests",
            "series": [{"name": "5xx", "points": _error_share(requests)}],
        },
    ]


def read(component: Component, monitoring, mig: StatSample | None, now: datetime) -> StatSample:
    """One sample for the component; a failed read is stored too, with the reason."""
    names, target = instances_of(mig)
    env = component.environment
    try:
        data = {
            "window": [(now - WINDOW).isoformat(), now.isoformat()],
            "charts": charts(monitoring, env.gcp_project, names, now - WINDOW, now, target),
        }
        problems = [] if names else ["no instances read yet"]
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
    """Read every deployable component of an environment and store a sample each."""
    from gcp.monitoring import Monitoring

    components = list(
        Component.objects.filter(
            environment_id=environment_id, deploy_kind__in=DEPLOYABLE
        ).select_related("environment")
    )
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
