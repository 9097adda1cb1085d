"""What Cloud Monitoring would have recorded about the sandbox's VMs: one sample a simulated
minute per metric and instance, for as long as the instance has existed.

Values are hashed from the instance's name and the minute, so every query (and every run of
the same seeded world) sees the same numbers, and they follow the instance's timeline loosely:
nothing while it is provisioning, little while it boots or fails its health check, a steady
load with a daily swell while it serves. A metric is one `Metric` in METRICS.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

SAMPLE_PERIOD = 60.0  # simulated seconds between two samples of one series
DAY = 86_400.0
GAUGE, DELTA = "GAUGE", "DELTA"
DOUBLE, INT64 = "DOUBLE", "INT64"
RESOURCE_TYPE = "gce_instance"


@dataclass(frozen=True)
class Vm:
    """An instance's timeline, copied out of the world so samples are computed outside its lock."""

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

    @classmethod
    def of(cls, project: str, instance) -> Vm:
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


def unit_hash(*parts) -> float:
    """A number in [0, 1) fixed by `parts`."""
    digest = hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def _swell(t: float) -> float:
    """0..1 over a simulated day: busiest mid-afternoon, quietest before dawn."""
    return (1 - math.cos(2 * math.pi * (t / DAY - 1 / 6))) / 2


def _moment(vm: Vm, minute: int, salt: str) -> tuple[float, str, float] | None:
    """(simulated time, phase, noise in 0..1) of the VM at that minute; None when it is not
    running then."""
    t = minute * SAMPLE_PERIOD
    phase = vm.phase(t)
    return (t, phase, unit_hash(vm.name, minute, salt)) if phase else None


def cpu_utilization(vm: Vm, minute: int) -> float | None:
    if not (moment := _moment(vm, minute, "cpu")):
        return None
    t, phase, noise = moment
    if phase == "booting":
        return round(0.02 + 0.08 * noise, 4)
    base = 0.2 + 0.2 * unit_hash(vm.name, "cpu-base")
    return round(min(1.0, base + 0.25 * _swell(t) + 0.1 * (noise - 0.5)), 4)


def received_bytes(vm: Vm, minute: int) -> int | None:
    if not (moment := _moment(vm, minute, "rx")):
        return None
    t, phase, noise = moment
    if phase == "booting":
        return int(4_000 + 20_000 * noise)
    return int((300_000 + 900_000 * _swell(t)) * (0.8 + 0.4 * noise))


@dataclass(frozen=True)
class Metric:
    type: str
    kind: str  # GAUGE or DELTA: a DELTA sample covers the minute before it
    value_type: str  # DOUBLE or INT64
    unit: str
    description: str
    sample: Callable[[Vm, int], float | int | None]  # the value at a minute, None: no sample


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
            received_bytes,
        ),
    )
}


@dataclass(frozen=True)
class Point:
    start: float  # simulated seconds; equal to `end` for a GAUGE point
    end: float
    value: float | int


@dataclass(frozen=True)
class Series:
    """One time series: a metric of one instance, with its points oldest first."""

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
    """Every VM of `project`, MIG members and standalone alike (under the world's lock)."""
    state = world.projects[project]
    members = [i for mig in state.migs.values() for i in mig.instances]
    return [Vm.of(project, i) for i in [*members, *state.vms.values()]]


def headers(metric: Metric, vms: list[Vm]) -> Iterator[tuple[Series, Vm]]:
    for vm in vms:
        series = Series(
            metric=metric.type,
            metric_labels={"instance_name": vm.name},
            resource_type=RESOURCE_TYPE,
            resource_labels={"project_id": vm.project, "instance_id": vm.id, "zone": vm.zone},
            kind=metric.kind,
            value_type=metric.value_type,
            unit=metric.unit,
        )
        yield series, vm


def sampled(metric: Metric, series: Series, vm: Vm, start: float, end: float) -> Series:
    """`series` with the samples whose end lies in (start, end]; `start == end` reads the one
    sample at that moment, as Google's reads of a point in time do."""
    last = math.floor(end / SAMPLE_PERIOD)
    first = (
        math.ceil(end / SAMPLE_PERIOD) if start == end else math.floor(start / SAMPLE_PERIOD) + 1
    )
    span = SAMPLE_PERIOD if metric.kind == DELTA else 0.0
    points = []
    for minute in range(max(first, math.ceil(vm.created_at / SAMPLE_PERIOD)), last + 1):
        value = metric.sample(vm, minute)
        if value is not None:
            t = minute * SAMPLE_PERIOD
            points.append(Point(t - span, t, value))
    return replace(series, points=tuple(points))
