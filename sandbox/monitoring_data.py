"""What Cloud Monitoring would have recorded about the sandbox's VMs: one sample a simulated
minute per metric, instance and label variant, for as long as the instance has existed.

Values are hashed from the instance's name and the minute, so every query (and every run of
the same seeded world) sees the same numbers, and they follow the instance's timeline loosely:
nothing while it is provisioning, little while it boots or fails its health check, a steady
load with a daily swell while it serves. A metric is one `Metric` in METRICS.

Two kinds of series: the VM's own (`gce_instance`: CPU, memory, network, disk), and the app's,
as the Ops Agent's Prometheus receiver stores what a Spring Boot app exports on :8080
(`prometheus_target`: request latency quantiles and request counts), only while the VM serves.
Faults (sandbox/faults.py: `slow`, `errors`, `no_metrics`) shape the app's series. They are
read when the series are, so a fault shapes every sample of the instances it selects, past
ones too. The services' series (load balancer, Cloud SQL, Memorystore) are derived from these
in sandbox/monitoring_services.py; a series' subject is anything with a `created_at` and
`series_labels` (a `Vm` here, a backend group or a database there).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any, Protocol

from .compute import metadata_images

SAMPLE_PERIOD = 60.0  # simulated seconds between two samples of one series
DAY = 86_400.0
GAUGE, DELTA, CUMULATIVE = "GAUGE", "DELTA", "CUMULATIVE"
DOUBLE, INT64, DISTRIBUTION = "DOUBLE", "INT64", "DISTRIBUTION"
GCE_INSTANCE, PROMETHEUS_TARGET = "gce_instance", "prometheus_target"
APP_PORT = 8080  # where the app's metrics endpoint listens (Spring Boot's port)
ERROR_RATE = 0.001  # the SERVER_ERROR share of requests when no `errors` fault says otherwise
REQUEST_RATE = 20.0  # requests a second an instance serves at (0.5 + swell) == 1
QUANTILES = {"0.5": 1.0, "0.95": 2.5, "0.99": 4.0}  # quantile → latency as a multiple of p50
# Hashed jitter of the request counter, in minutes' worth of requests at REQUEST_RATE. Under
# half the slowest minute (0.5 x rate), so every minute's increment stays positive.
COUNT_JITTER = 0.2

Labels = dict[str, str]


class Subject(Protocol):
    """What a series is about: a VM, a load balancer's backend group, a database, …"""

    created_at: float  # no sample before it

    def series_labels(self, resource_type: str) -> tuple[Labels, Labels] | None:
        """(metric labels, resource labels) of its series on `resource_type`; None: none."""
        ...


@dataclass(frozen=True)
class Vm:
    """An instance's timeline, copied out of the world so samples are computed outside its lock,
    with what faults make of its app."""

    project: str
    name: str
    zone: str
    id: str
    created_at: float
    started_at: float  # the current boot's start; before it, an earlier boot served
    running_at: float
    ready_at: float | None
    delete_at: float | None
    failed: bool
    slow: float = 1.0  # the app's latencies are multiplied by this (`slow` faults)
    error_rate: float = ERROR_RATE  # the share of requests answered 5xx (`errors` faults)
    exports: bool = True  # the app serves its Prometheus metrics (False: `no_metrics`)

    @classmethod
    def of(cls, project: str, instance, **app) -> Vm:
        return cls(
            project,
            instance.name,
            instance.zone,
            instance.id,
            instance.created_at,
            instance.started_at,
            instance.running_at,
            instance.ready_at,
            instance.delete_at,
            instance.failed,
            **app,
        )

    def phase(self, t: float) -> str:
        """'' (no running VM to measure), 'booting' (running, not serving) or 'serving'."""
        if self.failed or t < self.created_at or self.started_at <= t < self.running_at:
            return ""
        if t < self.started_at:
            return "serving"
        if self.delete_at is not None and t >= self.delete_at:
            return "booting"
        if self.ready_at is None or t < self.ready_at:
            return "booting"
        return "serving"

    def series_labels(self, resource_type: str) -> tuple[Labels, Labels] | None:
        """Every series of a VM names it (`instance_name`); an app without a metrics endpoint
        has no Prometheus series."""
        if resource_type == PROMETHEUS_TARGET and not self.exports:
            return None
        return {"instance_name": self.name}, resource_labels(resource_type, self)

    def serving_since(self, t: float) -> float | None:
        """When the app serving at `t` started, which is where its counters start: a reboot
        resets them. None when it does not serve at `t`."""
        if self.phase(t) != "serving":
            return None
        return self.created_at if t < self.started_at or self.ready_at is None else self.ready_at


def unit_hash(*parts) -> float:
    """A number in [0, 1) fixed by `parts`."""
    digest = hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def _angle(t: float) -> float:
    return 2 * math.pi * (t / DAY - 1 / 6)


def swell(t: float) -> float:
    """0..1 over a simulated day: busiest mid-afternoon, quietest before dawn."""
    return (1 - math.cos(_angle(t))) / 2


def load_seconds(a: float, b: float) -> float:
    """∫ (0.5 + swell) dt over [a, b], in closed form: the requests an app serving one a second
    at the day's mean load would have served then."""
    return (b - a) - DAY / (4 * math.pi) * (math.sin(_angle(b)) - math.sin(_angle(a)))


def _moment(vm: Vm, minute: int, salt: str) -> tuple[float, str, float] | None:
    """(simulated time, phase, noise in 0..1) of the VM at that minute; None when it is not
    running then."""
    t = minute * SAMPLE_PERIOD
    phase = vm.phase(t)
    return (t, phase, unit_hash(vm.name, minute, salt)) if phase else None


# --- the VM's own series (gce_instance) -----------------------------------------------------


def cpu_utilization(vm: Vm, labels: Labels, minute: int) -> float | None:
    if not (moment := _moment(vm, minute, "cpu")):
        return None
    t, phase, noise = moment
    if phase == "booting":
        return round(0.02 + 0.08 * noise, 4)
    base = 0.25 + 0.1 * unit_hash(vm.name, "cpu-base")
    return round(min(1.0, base + 0.25 * swell(t) + 0.1 * (noise - 0.5)), 4)


def memory_percent(vm: Vm, labels: Labels, minute: int) -> float | None:
    """Used, cached and free memory in percent, summing to 100."""
    if not (moment := _moment(vm, minute, "memory")):
        return None
    t, phase, noise = moment
    cached = 8 + 8 * unit_hash(vm.name, "cached-base") + 2 * noise
    if phase == "booting":
        used = 15 + 10 * noise
    else:
        used = 37 + 10 * unit_hash(vm.name, "memory-base") + 10 * swell(t) + 4 * (noise - 0.5)
    used, cached = round(used, 3), round(cached, 3)
    return {"used": used, "cached": cached, "free": round(100 - used - cached, 3)}[labels["state"]]


def traffic(salt: str, booting: tuple[int, int], serving: tuple[int, int]) -> Callable:
    """A DELTA byte count a minute: `booting` (low, span) spread by noise; while serving,
    `serving` (base, swell part) scaled by the swell and ±20 % noise."""

    def sample(vm: Vm, labels: Labels, minute: int) -> int | None:
        if not (moment := _moment(vm, minute, salt)):
            return None
        t, phase, noise = moment
        if phase == "booting":
            return int(booting[0] + booting[1] * noise)
        return int((serving[0] + serving[1] * swell(t)) * (0.8 + 0.4 * noise))

    return sample


# --- the app's series (prometheus_target) ---------------------------------------------------


def latency(vm: Vm, labels: Labels, minute: int) -> float | None:
    """A request latency quantile in seconds: p50 of 48-52 ms by instance (instances of one
    version differ little), a little higher with the swell, ±10 % a minute (the same for every
    quantile), times the `slow` factor."""
    t = minute * SAMPLE_PERIOD
    if vm.phase(t) != "serving":
        return None
    p50 = 0.048 + 0.004 * unit_hash(vm.name, "p50")
    noise = 0.9 + 0.2 * unit_hash(vm.name, minute, "latency")
    value = p50 * QUANTILES[labels["quantile"]] * (1 + 0.2 * swell(t)) * noise * vm.slow
    return round(value, 6)


def request_rate(vm: Vm) -> float:
    """Requests a second the instance serves at the day's mean load (± 10 % by instance); the
    load balancer's series count the same requests."""
    return REQUEST_RATE * (0.9 + 0.2 * unit_hash(vm.name, "request-rate"))


def requests_served(vm: Vm, minute: int) -> float | None:
    """Requests served since the app started, in closed form: the load integrated from the
    counter's start, plus a hashed jitter too small to ever make a minute's increment negative."""
    t = minute * SAMPLE_PERIOD
    start = vm.serving_since(t)
    if start is None or t <= start:
        return None
    rate = request_rate(vm)
    jitter = COUNT_JITTER * rate * SAMPLE_PERIOD * unit_hash(vm.name, minute, "requests")
    return rate * load_seconds(start, t) + jitter


def request_count(vm: Vm, labels: Labels, minute: int) -> float | None:
    """The running total of one outcome: floors of a fixed share of a growing total, so it
    never decreases while the counter's start stays the same."""
    total = requests_served(vm, minute)
    if total is None:
        return None
    share = vm.error_rate if labels["outcome"] == "SERVER_ERROR" else 1 - vm.error_rate
    return float(math.floor(total * share))


@dataclass(frozen=True)
class Metric:
    type: str
    # GAUGE; DELTA: a sample covers the minute before it; CUMULATIVE: a sample counts from the
    # start of the VM's serving period (Vm.serving_since) to its time.
    kind: str
    value_type: str  # DOUBLE, INT64 or DISTRIBUTION
    unit: str
    description: str
    # The value at a minute for the series' subject and metric labels (the subject's, e.g.
    # instance_name, and the variant's); None: no sample.
    sample: Callable[[Any, Labels, int], Any]
    variants: tuple[Labels, ...] = ({},)  # one series per subject and variant
    resource_type: str = GCE_INSTANCE


METRICS = {
    m.type: m
    for m in (
        Metric(
            "compute.googleapis.com/instance/cpu/utilization",
            GAUGE,
            DOUBLE,
            "10^2.%",
            "Fractional utilization of the allocated CPU on this instance (0..1).",
            cpu_utilization,
        ),
        Metric(
            "compute.googleapis.com/instance/network/received_bytes_count",
            DELTA,
            INT64,
            "By",
            "Count of bytes received from the network.",
            traffic("rx", (4_000, 20_000), (300_000, 900_000)),
        ),
        Metric(
            "compute.googleapis.com/instance/network/sent_bytes_count",
            DELTA,
            INT64,
            "By",
            "Count of bytes sent over the network.",
            traffic("tx", (2_000, 10_000), (500_000, 1_500_000)),
        ),
        Metric(
            "compute.googleapis.com/instance/disk/read_bytes_count",
            DELTA,
            INT64,
            "By",
            "Count of bytes read from disk.",
            traffic("disk-read", (20_000_000, 60_000_000), (50_000, 200_000)),
        ),
        Metric(
            "compute.googleapis.com/instance/disk/write_bytes_count",
            DELTA,
            INT64,
            "By",
            "Count of bytes written to disk.",
            traffic("disk-write", (2_000_000, 8_000_000), (200_000, 600_000)),
        ),
        Metric(
            "agent.googleapis.com/memory/percent_used",
            GAUGE,
            DOUBLE,
            "%",
            "Percent of memory used, by state (used, cached, free: summing to 100).",
            memory_percent,
            variants=tuple({"state": s} for s in ("used", "cached", "free")),
        ),
        Metric(
            "prometheus.googleapis.com/http_server_requests_seconds/summary",
            GAUGE,
            DOUBLE,
            "s",
            "Request latency quantiles of the app (a Micrometer summary's quantiles).",
            latency,
            variants=tuple({"quantile": q} for q in QUANTILES),
            resource_type=PROMETHEUS_TARGET,
        ),
        Metric(
            "prometheus.googleapis.com/http_server_requests_seconds_count/summary",
            CUMULATIVE,
            DOUBLE,
            "1",
            "Requests the app served since it started, by outcome.",
            request_count,
            variants=({"outcome": "SUCCESS"}, {"outcome": "SERVER_ERROR"}),
            resource_type=PROMETHEUS_TARGET,
        ),
    )
}


@dataclass(frozen=True)
class Point:
    start: float  # simulated seconds; equal to `end` for a GAUGE point
    end: float
    value: Any  # a number, or a Distribution (sandbox/monitoring_services.py)


@dataclass(frozen=True)
class Series:
    """One time series: a metric of one subject (and variant), with its points oldest first."""

    metric: str
    metric_labels: dict[str, str]
    resource_type: str
    resource_labels: dict[str, str]
    kind: str
    value_type: str
    unit: str
    points: tuple[Point, ...] = ()

    def label(self, field: str) -> str | None:
        """A filter's or group_by's field: 'metric.type', 'resource.labels.zone', …"""
        if field == "metric.type":
            return self.metric
        if field == "resource.type":
            return self.resource_type
        scope, _, key = field.partition(".labels.")
        labels = {"metric": self.metric_labels, "resource": self.resource_labels}.get(scope)
        return None if labels is None else labels.get(key)


def instances(world, project: str) -> list[Vm]:
    """Every VM of `project`, MIG members and standalone alike, with the app faults that select
    them (under the world's lock). A MIG member is selected by its template, its template's
    images and its group; a standalone VM by the images its metadata names."""
    state = world.projects[project]
    found = [member(world, project, mig, i) for mig in state.migs.values() for i in mig.instances]
    for i in state.vms.values():
        found.append(app_vm(world.faults, project, i, i.template, metadata_images(i.body), ""))
    return found


def member(world, project: str, mig, instance) -> Vm:
    """A MIG member as a Vm, with the app faults its template, images and group select."""
    images = world.template_images(project, instance.template)
    return app_vm(world.faults, project, instance, instance.template, images, mig.name)


def app_vm(faults, project: str, instance, template: str, images: list[str], mig: str) -> Vm:
    error_rate = faults.error_rate(template, images, mig)
    return Vm.of(
        project,
        instance,
        slow=faults.slow(template, images, mig),
        error_rate=ERROR_RATE if error_rate is None else error_rate,
        exports=not faults.no_metrics(template, images, mig),
    )


def resource_labels(resource_type: str, vm: Vm) -> dict[str, str]:
    """The monitored resource's labels: the VM's, or (prometheus_target) as the Ops Agent's
    Prometheus receiver sets them on Compute Engine."""
    if resource_type == PROMETHEUS_TARGET:
        return {
            "project_id": vm.project,
            "location": vm.zone,
            "cluster": "__gce__",
            "namespace": f"{vm.id}/{vm.name}",
            "job": "app",
            "instance": f"{vm.name}:{APP_PORT}",
        }
    return {"project_id": vm.project, "instance_id": vm.id, "zone": vm.zone}


def headers(metric: Metric, subjects: Iterable[Subject]) -> Iterator[tuple[Series, Subject]]:
    """Each subject's series of `metric`, one per variant, without points."""
    for subject in subjects:
        labels = subject.series_labels(metric.resource_type)
        if labels is None:
            continue
        metric_labels, resource = labels
        for variant in metric.variants:
            series = Series(
                metric=metric.type,
                metric_labels={**metric_labels, **variant},
                resource_type=metric.resource_type,
                resource_labels=resource,
                kind=metric.kind,
                value_type=metric.value_type,
                unit=metric.unit,
            )
            yield series, subject


def sampled(
    metric: Metric, series: Series, vm: Any, start: float, end: float, before: bool = False
) -> Series:
    """`series` with the samples whose end lies in (start, end]; `start == end` reads the one
    sample at that moment, as Google's reads of a point in time do. With `before`, also the
    sample just before them, which a cumulative series' first increase is counted from. `vm`
    is the series' subject (only a Vm has CUMULATIVE series)."""
    last = math.floor(end / SAMPLE_PERIOD)
    first = (
        math.ceil(end / SAMPLE_PERIOD) if start == end else math.floor(start / SAMPLE_PERIOD) + 1
    )
    first -= 1 if before else 0
    points = []
    for minute in range(max(first, math.ceil(vm.created_at / SAMPLE_PERIOD)), last + 1):
        value = metric.sample(vm, series.metric_labels, minute)
        if value is None:
            continue
        t = minute * SAMPLE_PERIOD
        if metric.kind == DELTA:
            points.append(Point(t - SAMPLE_PERIOD, t, value))
        elif metric.kind == CUMULATIVE:
            since = vm.serving_since(t)
            points.append(Point(t if since is None else since, t, value))
        else:
            points.append(Point(t, t, value))
    return replace(series, points=tuple(points))
