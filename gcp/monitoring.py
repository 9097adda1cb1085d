"""Cloud Monitoring reads, through google-cloud-monitoring's MetricServiceClient.

That client speaks gRPC only. With GANTRY_MONITORING_ENDPOINT set (the sandbox's
`host:port`) it talks plaintext gRPC there with anonymous credentials, which is safe only on
loopback, so any other host is refused before a channel exists; empty, it reaches Google with
Application Default Credentials. What comes back are plain values, never protobuf messages.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property

import grpc
from google.auth.credentials import AnonymousCredentials
from google.cloud import monitoring_v3
from google.cloud.monitoring_v3.services.metric_service import transports

# The metric types Gantry reads: Compute's and the Ops Agent's per VM, the app's as Managed
# Service for Prometheus stores a Micrometer summary, the HTTPS load balancer's.
CPU_UTILIZATION = "compute.googleapis.com/instance/cpu/utilization"
MEMORY_PERCENT = "agent.googleapis.com/memory/percent_used"
RECEIVED_BYTES = "compute.googleapis.com/instance/network/received_bytes_count"
SENT_BYTES = "compute.googleapis.com/instance/network/sent_bytes_count"
DISK_READ_BYTES = "compute.googleapis.com/instance/disk/read_bytes_count"
DISK_WRITE_BYTES = "compute.googleapis.com/instance/disk/write_bytes_count"
APP_LATENCY = "prometheus.googleapis.com/http_server_requests_seconds/summary"
APP_REQUESTS = "prometheus.googleapis.com/http_server_requests_seconds_count/summary"
LB_REQUESTS = "loadbalancing.googleapis.com/https/request_count"
LB_LATENCY = "loadbalancing.googleapis.com/https/total_latencies"
RESPONSE_CLASS = "metric.labels.response_code_class"
GCE_INSTANCE = "gce_instance"


def loopback_target(endpoint: str) -> str:
    """`endpoint` as a gRPC target, when it is a loopback host:port; ValueError otherwise."""
    host, sep, port = endpoint.rpartition(":")
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if "/" in endpoint or not sep or not port.isdigit() or not bare:
        raise ValueError(
            f"GANTRY_MONITORING_ENDPOINT must be host:port (e.g. 127.0.0.1:8901), not {endpoint!r}"
        )
    if not _is_loopback(bare):
        raise ValueError(
            "GANTRY_MONITORING_ENDPOINT is reached over plaintext gRPC, so it must be a loopback "
            f"address (127.0.0.1, ::1 or localhost), not {bare!r}; leave it empty for Google"
        )
    return f"[{bare}]:{port}" if ":" in bare else f"{bare}:{port}"


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def metric_client(endpoint: str = "") -> monitoring_v3.MetricServiceClient:
    """Google's client, or one on an insecure channel to a loopback stand-in."""
    if not endpoint:
        return monitoring_v3.MetricServiceClient()
    channel = grpc.insecure_channel(loopback_target(endpoint))
    transport = transports.MetricServiceGrpcTransport(
        channel=channel, credentials=AnonymousCredentials()
    )
    return monitoring_v3.MetricServiceClient(transport=transport)


@dataclass(frozen=True)
class Sample:
    at: datetime  # the end of the alignment period it averages (UTC)
    value: float


@dataclass(frozen=True)
class ZoneCpu:
    """Mean CPU utilization (0..1) of the chosen instances in one zone, per alignment period."""

    zone: str
    samples: tuple[Sample, ...]  # oldest first

    @property
    def latest(self) -> float | None:
        return self.samples[-1].value if self.samples else None


@dataclass(frozen=True)
class InstanceSeries:
    """One instance's aligned samples of a metric; `labels` the metric labels besides
    instance_name (a quantile, a counter's outcome, a memory state)."""

    instance: str
    labels: dict[str, str]
    samples: tuple[Sample, ...]  # oldest first


def _number(value) -> float:
    """A point's value, whichever of double_value and int64_value it carries."""
    kind = type(value).pb(value).WhichOneof("value")
    return float(getattr(value, kind)) if kind in ("double_value", "int64_value") else 0.0


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _one_of(names: list[str]) -> str:
    """The filter clause for VMs by name: their `instance_name` metric label."""
    return f"metric.labels.instance_name = one_of({', '.join(map(_quoted, names))})"


def _plain(moment: datetime) -> datetime:
    """proto-plus's DatetimeWithNanoseconds (UTC) as a plain datetime."""
    return datetime.combine(moment.date(), moment.time(), tzinfo=UTC)


Aligner = monitoring_v3.Aggregation.Aligner
Reducer = monitoring_v3.Aggregation.Reducer
ALIGNERS = {
    "mean": Aligner.ALIGN_MEAN,
    "rate": Aligner.ALIGN_RATE,
    "delta": Aligner.ALIGN_DELTA,
    "sum": Aligner.ALIGN_SUM,
    "p50": Aligner.ALIGN_PERCENTILE_50,
    "p95": Aligner.ALIGN_PERCENTILE_95,
    "p99": Aligner.ALIGN_PERCENTILE_99,
}
REDUCERS = {
    "none": Reducer.REDUCE_NONE,
    "mean": Reducer.REDUCE_MEAN,
    "sum": Reducer.REDUCE_SUM,
    "max": Reducer.REDUCE_MAX,
    "p50": Reducer.REDUCE_PERCENTILE_50,
    "p95": Reducer.REDUCE_PERCENTILE_95,
    "p99": Reducer.REDUCE_PERCENTILE_99,
}


@dataclass(frozen=True)
class Group:
    """One reduced series: the values of its group_by fields, and its samples oldest first."""

    labels: dict[str, str]
    samples: tuple[Sample, ...]


def share(series: Iterable[Group | InstanceSeries], label: str, bad) -> tuple[Sample, ...]:
    """Per sample time, the % of the rates whose `label` value `bad` picks, over the series
    split by that label (a counter's rate per outcome or response class); times with no
    traffic are left out."""
    by_time: dict[datetime, dict[str, float]] = {}
    for one in series:
        for sample in one.samples:
            by_time.setdefault(sample.at, {})[one.labels.get(label, "")] = sample.value
    return tuple(
        Sample(at, 100 * sum(v for k, v in rates.items() if bad(k)) / total)
        for at, rates in sorted(by_time.items())
        if (total := sum(rates.values())) > 0
    )


def error_share(classes: Iterable[Group]) -> tuple[Sample, ...]:
    """Per minute, the 5xx answers as a % of all, from `lb_requests_by_class`."""
    return share(classes, RESPONSE_CLASS, lambda klass: klass.startswith("5"))


def server_error_share(
    outcomes: Iterable[Group | InstanceSeries], label: str
) -> tuple[Sample, ...]:
    """Per minute, the app's SERVER_ERROR outcomes as a % of its requests."""
    return share(outcomes, label, lambda outcome: outcome == "SERVER_ERROR")


def _request(
    project: str, clauses: list[str], start: datetime, end: datetime, aggregation
) -> monitoring_v3.ListTimeSeriesRequest:
    return monitoring_v3.ListTimeSeriesRequest(
        name=f"projects/{project}",
        filter=" AND ".join(clauses),
        interval=monitoring_v3.TimeInterval(start_time=start, end_time=end),
        aggregation=aggregation,
        view=monitoring_v3.ListTimeSeriesRequest.TimeSeriesView.FULL,
    )


_clients: dict[tuple, Monitoring] = {}
_clients_lock = threading.Lock()


class Monitoring:
    def __init__(self, endpoint: str = "", call_timeout: float = 30.0):
        if endpoint:
            loopback_target(endpoint)  # refuse a bad endpoint now, not at the first call
        self.endpoint = endpoint
        self.call_timeout = call_timeout

    @classmethod
    def from_settings(cls, **overrides) -> Monitoring:
        """One per configuration and process, kept: a gRPC channel is thread-safe and
        reconnects by itself, and setting one up costs more than a call."""
        from django.conf import settings

        options = {"endpoint": settings.GANTRY_MONITORING_ENDPOINT} | overrides
        key = tuple(sorted(options.items()))
        with _clients_lock:
            if key not in _clients:
                if len(_clients) >= 4:  # endpoints changed (tests, a new sandbox)
                    _clients.clear()
                _clients[key] = cls(**options)
            return _clients[key]

    @cached_property
    def client(self) -> monitoring_v3.MetricServiceClient:
        return metric_client(self.endpoint)

    def grouped(
        self,
        project: str,
        metric_type: str,
        start: datetime,
        end: datetime,
        *,
        where: dict[str, str] | None = None,
        instances: Iterable[str] | None = None,
        name_prefix: str = "",
        aligner: str = "mean",
        reducer: str = "mean",
        group_by: Iterable[str] = (),
        period: timedelta = timedelta(minutes=1),
    ) -> tuple[Group, ...]:
        """One aligned and reduced series per value of the `group_by` fields (e.g.
        "resource.labels.zone") over (start, end], one sample per `period` (at least a minute).
        `where` pins fields to values ("metric.labels.quantile": "0.95"); `instances` and
        `name_prefix` pick VMs by their `instance_name` label. `aligner` is one of ALIGNERS
        ("mean", "rate" for a counter per second, "delta", "p95" of a distribution…),
        `reducer` one of REDUCERS. Groups sorted by their labels."""
        clauses = [f"metric.type = {_quoted(metric_type)}"]
        clauses += [f"{field} = {_quoted(value)}" for field, value in (where or {}).items()]
        if instances is not None:
            names = list(instances)
            if not names:
                return ()
            clauses.append(_one_of(names))
        if name_prefix:
            clauses.append(f"metric.labels.instance_name = starts_with({_quoted(name_prefix)})")
        fields = list(group_by)
        request = _request(
            project,
            clauses,
            start,
            end,
            monitoring_v3.Aggregation(
                alignment_period=period,
                per_series_aligner=ALIGNERS[aligner],
                cross_series_reducer=REDUCERS[reducer],
                group_by_fields=fields,
            ),
        )
        found: dict[tuple, dict[datetime, float]] = {}
        for series in self._read(request):  # a long series may come split over several pages
            labels = {"metric": series.metric.labels, "resource": series.resource.labels}
            key = tuple(
                labels.get(f.split(".")[0], {}).get(f.rpartition(".")[2], "") for f in fields
            )
            samples = found.setdefault(key, {})
            for point in series.points:
                samples[_plain(point.interval.end_time)] = _number(point.value)
        return tuple(
            Group(
                dict(zip(fields, key, strict=True)),
                tuple(Sample(at, value) for at, value in sorted(samples.items())),
            )
            for key, samples in sorted(found.items())
        )

    def lb_requests_by_class(
        self, project: str, service: str, start: datetime, end: datetime
    ) -> tuple[Group, ...]:
        """The HTTPS load balancer's requests a second to one backend service, one group per
        response code class ("200", "500", …)."""
        return self.grouped(
            project,
            LB_REQUESTS,
            start,
            end,
            where={"resource.labels.backend_target_name": service},
            aligner="rate",
            reducer="sum",
            group_by=[RESPONSE_CLASS],
        )

    def cpu_by_zone(
        self,
        project: str,
        start: datetime,
        end: datetime,
        period: timedelta = timedelta(minutes=1),
        instances: Iterable[str] | None = None,
        name_prefix: str = "",
    ) -> tuple[ZoneCpu, ...]:
        """Mean CPU utilization per zone over (start, end], one sample per `period` (at least
        a minute), of the instances named in `instances` and/or starting with `name_prefix`
        (a MIG's base instance name); all of the project's VMs when neither is given.
        Zones sorted by name."""
        zone = "resource.labels.zone"
        groups = self.grouped(
            project,
            CPU_UTILIZATION,
            start,
            end,
            where={"resource.type": GCE_INSTANCE},
            instances=instances,
            name_prefix=name_prefix,
            group_by=[zone],
            period=period,
        )
        return tuple(ZoneCpu(g.labels[zone], g.samples) for g in groups)

    def by_instance(
        self,
        project: str,
        metric_type: str,
        instances: Iterable[str],
        start: datetime,
        end: datetime,
        *,
        labels: dict[str, str] | None = None,
        rate: bool = False,
        period: timedelta = timedelta(minutes=1),
    ) -> tuple[InstanceSeries, ...]:
        """One series per instance (and per remaining label, e.g. a counter's `outcome`) of
        the named instances, aligned per `period` over (start, end]: the mean of a gauge, or
        with `rate` a counter's increase per second. Instances are matched by the
        `instance_name` metric label, which Compute's own metrics and the Ops Agent's
        Prometheus series both carry. Sorted by instance, then labels."""
        names = list(instances)
        if not names:
            return ()
        clauses = [
            f"metric.type = {_quoted(metric_type)}",
            _one_of(names),
            *(f"metric.labels.{key} = {_quoted(value)}" for key, value in (labels or {}).items()),
        ]
        request = _request(
            project,
            clauses,
            start,
            end,
            monitoring_v3.Aggregation(
                alignment_period=period, per_series_aligner=ALIGNERS["rate" if rate else "mean"]
            ),
        )
        found: dict[tuple, dict[datetime, float]] = {}
        for series in self._read(request):
            metric_labels = dict(series.metric.labels)
            key = (metric_labels.pop("instance_name", ""), tuple(sorted(metric_labels.items())))
            samples = found.setdefault(key, {})
            for point in series.points:
                samples[_plain(point.interval.end_time)] = _number(point.value)
        return tuple(
            InstanceSeries(name, dict(rest), tuple(Sample(at, v) for at, v in sorted(by.items())))
            for (name, rest), by in sorted(found.items())
        )

    def _read(self, request: monitoring_v3.ListTimeSeriesRequest):
        """Every series of every page. Once, with a deadline, as gcp/adapter.py calls: the
        caller decides about retrying."""
        return self.client.list_time_series(request=request, retry=None, timeout=self.call_timeout)

    def close(self) -> None:
        if "client" in self.__dict__:
            self.client.transport.close()
            del self.client
