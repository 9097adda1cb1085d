"""Cloud Monitoring's ListTimeSeries, served over gRPC, read with google-cloud-monitoring itself."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.api import metric_pb2
from google.api_core import exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import monitoring_v3
from google.cloud.monitoring_v3.services.metric_service import transports

from sandbox.faults import Faults
from sandbox.http import ApiError
from sandbox.monitoring_data import swell

from .clients import BACKEND_MIG, DEV, PROD, REGION, ZONES, Clients

CPU = "compute.googleapis.com/instance/cpu/utilization"
RECEIVED = "compute.googleapis.com/instance/network/received_bytes_count"
MEMORY = "agent.googleapis.com/memory/percent_used"
LATENCY = "prometheus.googleapis.com/http_server_requests_seconds/summary"
REQUESTS = "prometheus.googleapis.com/http_server_requests_seconds_count/summary"
BACKEND = 'metric.labels.instance_name = starts_with("nemo-backend-")'
BACKEND_CPU = f'metric.type = "{CPU}" AND {BACKEND}'
BACKEND_IMAGE = "/registry/backend@"  # a substring of the backend template's image
Aligner = monitoring_v3.Aggregation.Aligner
Reducer = monitoring_v3.Aggregation.Reducer
HEADERS = monitoring_v3.ListTimeSeriesRequest.TimeSeriesView.HEADERS


@pytest.fixture
def box(sandbox_factory):
    """A sandbox on a frozen clock: time moves only with `advance`. Boots take 5 simulated
    minutes, so a new VM is sampled while it boots."""
    return sandbox_factory(speed=0, boot_time=300.0)


@pytest.fixture
def client(box):
    channel = grpc.insecure_channel(box.urls()["GANTRY_MONITORING_ENDPOINT"])
    transport = transports.MetricServiceGrpcTransport(
        channel=channel, credentials=AnonymousCredentials()
    )
    client = monitoring_v3.MetricServiceClient(transport=transport)
    yield client
    client.transport.close()


def sandbox_now(box) -> datetime:
    with box.world.lock:
        box.world.sync()
        return datetime.fromtimestamp(box.world.wall_epoch + box.world.t, UTC)


def request(box, filter=BACKEND_CPU, minutes=10, **fields) -> dict:
    end = sandbox_now(box)
    interval = {"start_time": end - timedelta(minutes=minutes), "end_time": end}
    return {"name": f"projects/{PROD}", "filter": filter, "interval": interval} | fields


def series(client, box, **fields) -> list[monitoring_v3.TimeSeries]:
    return list(client.list_time_series(request=request(box, **fields), retry=None))


def backend_instances(box) -> dict[str, object]:
    return {i.name: i for i in box.mig(PROD, BACKEND_MIG).instances}


def by_name(found) -> dict[str, list[float]]:
    return {
        s.metric.labels["instance_name"]: [p.value.double_value for p in s.points] for s in found
    }


def test_cpu_series_for_each_backend_instance(client, box):
    instances = backend_instances(box)
    found = series(client, box)
    assert {s.metric.labels["instance_name"] for s in found} == set(instances)
    for one in found:
        instance = instances[one.metric.labels["instance_name"]]
        assert one.metric.type == CPU
        assert one.resource.type == "gce_instance"
        assert dict(one.resource.labels) == {
            "project_id": PROD,
            "instance_id": instance.id,
            "zone": instance.zone,
        }
        assert one.metric_kind == metric_pb2.MetricDescriptor.GAUGE
        assert one.value_type == metric_pb2.MetricDescriptor.DOUBLE
        assert len(one.points) == 10  # one a minute over (start, end]
        assert all(0.0 <= p.value.double_value <= 1.0 for p in one.points)
    assert {s.resource.labels["zone"] for s in found} == set(ZONES)


def test_filters_on_labels_narrow_the_series(client, box):
    name = sorted(backend_instances(box))[0]
    one = series(
        client, box, filter=f'metric.type = "{CPU}" AND metric.label.instance_name = "{name}"'
    )
    assert [s.metric.labels["instance_name"] for s in one] == [name]
    zone_a = series(client, box, filter=f'{BACKEND_CPU} AND resource.labels.zone = "{ZONES[0]}"')
    assert {s.resource.labels["zone"] for s in zone_a} == {ZONES[0]}
    others = series(
        client, box, filter=f'{BACKEND_CPU} AND NOT resource.labels.zone = "{ZONES[0]}"'
    )
    assert {s.resource.labels["zone"] for s in others} == {ZONES[1]}
    assert len(zone_a) + len(others) == len(backend_instances(box))


def test_points_are_newest_first_one_a_minute(client, box):
    end = sandbox_now(box)
    for one in series(client, box):
        ends = [p.interval.end_time for p in one.points]
        assert abs(ends[0] - end) < timedelta(milliseconds=1)
        assert all(a - b == timedelta(minutes=1) for a, b in itertools.pairwise(ends))


def test_values_are_the_same_on_every_read(client, box):
    assert by_name(series(client, box)) == by_name(series(client, box))


def test_advancing_the_clock_adds_points(client, box):
    before = by_name(series(client, box, minutes=60))
    box.advance(180)
    after = by_name(series(client, box, minutes=63))
    for name, values in before.items():
        assert len(after[name]) == len(values) + 3
        assert after[name][3:] == values  # the newest three are new; the rest unchanged


def test_grouped_by_zone_one_series_per_zone_with_the_mean(client, box):
    raw = series(client, box, minutes=30)
    aggregation = {
        "alignment_period": {"seconds": 300},
        "per_series_aligner": Aligner.ALIGN_MEAN,
        "cross_series_reducer": Reducer.REDUCE_MEAN,
        "group_by_fields": ["resource.labels.zone"],
    }
    grouped = series(client, box, minutes=30, aggregation=aggregation)
    assert sorted(s.resource.labels["zone"] for s in grouped) == sorted(ZONES)
    for one in grouped:
        zone = one.resource.labels["zone"]
        assert dict(one.resource.labels) == {"zone": zone}
        assert dict(one.metric.labels) == {}
        assert len(one.points) == 6
        # Each instance has five samples a period, so the mean of means is the mean of all.
        members = [s.points for s in raw if s.resource.labels["zone"] == zone]
        newest = [p.value.double_value for points in members for p in points[:5]]
        assert one.points[0].value.double_value == pytest.approx(sum(newest) / len(newest))


def test_reducers_sum_max_min_count(client, box):
    def reduced(reducer):
        aggregation = {
            "alignment_period": {"seconds": 60},
            "per_series_aligner": Aligner.ALIGN_MAX,
            "cross_series_reducer": reducer,
        }
        (one,) = series(client, box, minutes=1, aggregation=aggregation)
        return one

    latest = [values[0] for values in by_name(series(client, box, minutes=1)).values()]
    assert reduced(Reducer.REDUCE_SUM).points[0].value.double_value == pytest.approx(sum(latest))
    assert reduced(Reducer.REDUCE_MAX).points[0].value.double_value == max(latest)
    assert reduced(Reducer.REDUCE_MIN).points[0].value.double_value == min(latest)
    count = reduced(Reducer.REDUCE_COUNT)
    assert count.value_type == metric_pb2.MetricDescriptor.INT64
    assert count.points[0].value.int64_value == len(latest)


def test_received_bytes_are_deltas_and_align_to_a_rate(client, box):
    raw = series(client, box, filter=f'metric.type = "{RECEIVED}"', minutes=5)
    assert raw and all(s.metric_kind == metric_pb2.MetricDescriptor.DELTA for s in raw)
    point = raw[0].points[0]
    assert point.interval.end_time - point.interval.start_time == timedelta(minutes=1)
    aggregation = {"alignment_period": {"seconds": 300}, "per_series_aligner": Aligner.ALIGN_RATE}
    rates = series(
        client, box, filter=f'metric.type = "{RECEIVED}"', minutes=5, aggregation=aggregation
    )
    assert rates[0].metric_kind == metric_pb2.MetricDescriptor.GAUGE
    assert rates[0].unit == "By/s"
    total = sum(p.value.int64_value for p in raw[0].points)
    assert rates[0].points[0].value.double_value == pytest.approx(total / 300)


def test_a_booting_instance_is_sampled_low(client, box):
    Clients(box.url).migs.resize_unary(
        project=PROD, region=REGION, instance_group_manager=BACKEND_MIG, size=5
    )
    box.advance(1)  # the resize is done: the fifth VM boots, RUNNING after 150 s
    new = (set(backend_instances(box)) - set(by_name(series(client, box)))).pop()
    box.advance(250)  # running, not yet healthy
    booting = by_name(series(client, box, minutes=5))[new]
    assert booting and all(v <= 0.1 for v in booting)
    box.advance(600)  # healthy and serving
    serving = by_name(series(client, box, minutes=5))[new]
    assert len(serving) == 5 and all(v >= 0.15 for v in serving)


def test_headers_view_has_series_without_points(client, box):
    full = series(client, box)
    headers = series(client, box, view=HEADERS)
    assert [s.metric.labels["instance_name"] for s in headers] == [
        s.metric.labels["instance_name"] for s in full
    ]
    assert all(len(s.points) == 0 for s in headers)


def test_paging_one_series_a_page_in_headers_view(client, box):
    pager = client.list_time_series(request=request(box, view=HEADERS, page_size=1), retry=None)
    pages = list(pager.pages)
    assert len(pages) == len(backend_instances(box))
    assert all(len(page.time_series) == 1 for page in pages)
    assert all(page.next_page_token for page in pages[:-1]) and not pages[-1].next_page_token


def test_paging_one_point_a_page_in_full_view(client, box):
    """In FULL view page_size counts points, so a series comes split over pages."""
    pager = client.list_time_series(request=request(box, minutes=3, page_size=1), retry=None)
    pages = list(pager.pages)
    assert len(pages) == 3 * len(backend_instances(box))
    merged: dict[str, list[float]] = {}
    for page in pages:
        (one,) = page.time_series
        assert len(one.points) == 1
        merged.setdefault(one.metric.labels["instance_name"], []).extend(
            p.value.double_value for p in one.points
        )
    assert merged == by_name(series(client, box, minutes=3))


def test_a_page_token_from_another_query_is_refused(client, box):
    pager = client.list_time_series(request=request(box, view=HEADERS, page_size=1), retry=None)
    token = next(iter(pager.pages)).next_page_token
    with pytest.raises(exceptions.InvalidArgument, match="page token"):
        series(client, box, page_token=token, filter=f'metric.type = "{CPU}"')


@pytest.mark.parametrize(
    ("fields", "refusal", "words"),
    [
        ({"filter": 'resource.type = "gce_instance"'}, exceptions.InvalidArgument, "metric type"),
        ({"filter": ""}, exceptions.InvalidArgument, "metric type"),
        ({"filter": f'metric.type = "{CPU}" AND'}, exceptions.InvalidArgument, "ends too early"),
        ({"filter": f'metric.type == "{CPU}"'}, exceptions.InvalidArgument, "Expected a value"),
        ({"filter": f'metric.type = "{CPU}" zone'}, exceptions.InvalidArgument, "Expected AND"),
        ({"filter": f'metric.typo = "{CPU}"'}, exceptions.InvalidArgument, "metric.typo"),
        (
            {"filter": f'metric.type = "{CPU}" AND metric.labels.x = nope("a")'},
            exceptions.InvalidArgument,
            "Unknown function",
        ),
        (
            {"aggregation": {"cross_series_reducer": Reducer.REDUCE_MEAN}},
            exceptions.InvalidArgument,
            "cannot be ALIGN_NONE",
        ),
        (
            {"aggregation": {"per_series_aligner": Aligner.ALIGN_MEAN}},
            exceptions.InvalidArgument,
            "alignment period is required",
        ),
        (
            {
                "aggregation": {
                    "per_series_aligner": Aligner.ALIGN_MEAN,
                    "alignment_period": {"seconds": 30},
                }
            },
            exceptions.InvalidArgument,
            "at least 60 seconds",
        ),
        (
            {
                "aggregation": {
                    "per_series_aligner": Aligner.ALIGN_RATE,
                    "alignment_period": {"seconds": 60},
                }
            },
            exceptions.InvalidArgument,
            "kind GAUGE",
        ),
        (
            {
                "filter": f'metric.type = "{REQUESTS}"',
                "aggregation": {
                    "per_series_aligner": Aligner.ALIGN_MEAN,
                    "alignment_period": {"seconds": 60},
                },
            },
            exceptions.InvalidArgument,
            "kind CUMULATIVE and value type DOUBLE",
        ),
        ({"name": "projects/no-such-project"}, exceptions.NotFound, "no-such-project"),
        ({"filter": 'metric.type = "custom.googleapis.com/nope"'}, exceptions.NotFound, "nope"),
        ({"name": "nemo-prod"}, exceptions.InvalidArgument, "projects/PROJECT_ID"),
        ({"page_size": -1}, exceptions.InvalidArgument, "page size"),
    ],
)
def test_refusals(client, box, fields, refusal, words):
    with pytest.raises(refusal, match=words):
        series(client, box, **fields)


def test_an_interval_needs_its_end_time(client, box):
    end = sandbox_now(box)
    fields = {"interval": {"start_time": end - timedelta(minutes=5)}}
    with pytest.raises(exceptions.InvalidArgument, match="end time"):
        series(client, box, **fields)
    backwards = {"interval": {"start_time": end, "end_time": end - timedelta(minutes=5)}}
    with pytest.raises(exceptions.InvalidArgument, match="start time"):
        series(client, box, **backwards)


def test_an_injected_fault_fails_the_call_with_its_grpc_status(client, box):
    box.inject_fault(
        "http_error", path="/google.monitoring.v3.MetricService/*", status=503, count=1
    )
    with pytest.raises(exceptions.ServiceUnavailable):
        series(client, box)
    assert series(client, box)  # the fault was for one call


def test_the_monitoring_port_is_its_own(box):
    host, port = box.urls()["GANTRY_MONITORING_ENDPOINT"].rsplit(":", 1)
    assert host == "127.0.0.1"
    assert int(port) != box.httpd.server_address[1]


# --- the app's series (prometheus_target), memory, network and disk ------------------------------


def per_minute(found, label: str) -> dict[str, dict[str, list[float]]]:
    """instance_name → the `label` variant → its values, newest first."""
    out: dict[str, dict[str, list[float]]] = {}
    for one in found:
        labels = one.metric.labels
        values = [p.value.double_value for p in one.points]
        out.setdefault(labels["instance_name"], {})[labels[label]] = values
    return out


def aligned(aligner, seconds: int, **extra) -> dict:
    return {"per_series_aligner": aligner, "alignment_period": {"seconds": seconds}} | extra


def test_latency_quantiles_per_instance_on_prometheus_targets(client, box):
    instances = backend_instances(box)
    found = series(client, box, filter=f'metric.type = "{LATENCY}" AND {BACKEND}')
    assert len(found) == 3 * len(instances)
    for one in found:
        name = one.metric.labels["instance_name"]
        instance = instances[name]
        assert one.resource.type == "prometheus_target"
        assert dict(one.resource.labels) == {
            "project_id": PROD,
            "location": instance.zone,
            "cluster": "__gce__",
            "namespace": f"{instance.id}/{name}",
            "job": "app",
            "instance": f"{name}:8080",
        }
        assert set(one.metric.labels) == {"instance_name", "quantile"}
        assert one.metric_kind == metric_pb2.MetricDescriptor.GAUGE
        assert one.value_type == metric_pb2.MetricDescriptor.DOUBLE
        assert one.unit == "s" and len(one.points) == 10
    for name, quantiles in per_minute(found, "quantile").items():
        assert set(quantiles) == {"0.5", "0.95", "0.99"}
        assert all(0.03 <= v <= 0.08 for v in quantiles["0.5"]), name
        for p50, p95, p99 in zip(
            quantiles["0.5"], quantiles["0.95"], quantiles["0.99"], strict=True
        ):
            assert p50 < p95 < p99
            assert p95 == pytest.approx(2.5 * p50, rel=0.01)


def test_a_slow_fault_raises_the_selected_instances_latency(client, box):
    p95 = f'metric.type = "{LATENCY}" AND metric.labels.quantile = "0.95"'
    before = by_name(series(client, box, filter=p95))
    box.inject_fault("slow", image=BACKEND_IMAGE, factor=1.3)
    after = by_name(series(client, box, filter=p95))
    assert set(after) == set(before)
    assert any(n.startswith("nemo-frontend-") for n in before)
    for name, values in before.items():
        if name.startswith("nemo-backend-"):
            assert after[name] == pytest.approx([1.3 * v for v in values], rel=1e-3)
        else:
            assert after[name] == values


def test_request_counts_are_cumulative_and_never_decrease(client, box):
    found = series(client, box, filter=f'metric.type = "{REQUESTS}" AND {BACKEND}', minutes=60)
    assert len(found) == 2 * len(backend_instances(box))
    assert {s.metric.labels["outcome"] for s in found} == {"SUCCESS", "SERVER_ERROR"}
    for one in found:
        assert one.resource.type == "prometheus_target"
        assert one.metric_kind == metric_pb2.MetricDescriptor.CUMULATIVE
        assert one.unit == "1" and len(one.points) == 60
        assert len({p.interval.start_time for p in one.points}) == 1  # one counter
        assert all(p.interval.start_time < p.interval.end_time for p in one.points)
        values = [p.value.double_value for p in reversed(one.points)]
        assert values == sorted(values)
    # ALIGN_NEXT_OLDER takes a cumulative series and keeps it so.
    kept = series(
        client,
        box,
        filter=f'metric.type = "{REQUESTS}" AND {BACKEND}',
        minutes=60,
        aggregation=aligned(Aligner.ALIGN_NEXT_OLDER, 60),
    )
    assert all(s.metric_kind == metric_pb2.MetricDescriptor.CUMULATIVE for s in kept)
    assert [[p.value for p in s.points] for s in kept] == [
        [p.value for p in s.points] for s in found
    ]


def test_align_rate_gives_one_rate_a_period_from_the_first_minute_on(client, box):
    success = f'metric.type = "{REQUESTS}" AND {BACKEND} AND metric.labels.outcome = "SUCCESS"'
    rates = series(
        client, box, filter=success, minutes=5, aggregation=aligned(Aligner.ALIGN_RATE, 60)
    )
    assert len(rates) == len(backend_instances(box))
    expected = 20 * (0.5 + swell(box.world.t))
    for one in rates:
        assert one.metric_kind == metric_pb2.MetricDescriptor.GAUGE
        assert one.unit == "1/s"
        values = [p.value.double_value for p in one.points]
        assert len(values) == 5  # the first minute counts from the sample before the interval
        assert all(v == pytest.approx(expected, rel=0.35) for v in values)
        assert sum(values) / 5 == pytest.approx(expected, rel=0.15)
    # ALIGN_DELTA over the whole interval: the counter's increase since the sample before it.
    raw = by_name(series(client, box, filter=success, minutes=6))
    deltas = series(
        client, box, filter=success, minutes=5, aggregation=aligned(Aligner.ALIGN_DELTA, 300)
    )
    for one in deltas:
        assert one.metric_kind == metric_pb2.MetricDescriptor.DELTA
        (point,) = one.points
        assert point.interval.end_time - point.interval.start_time == timedelta(minutes=5)
        values = raw[one.metric.labels["instance_name"]]
        assert point.value.double_value == values[0] - values[5]


def test_a_reboot_resets_the_counter_and_alignment_counts_the_new_one_whole(client, box):
    name = sorted(backend_instances(box))[0]
    zone = backend_instances(box)[name].zone
    Clients(box.url).instances.reset_unary(project=PROD, zone=zone, instance=name)
    box.advance(1)  # the reset is done: the VM boots again and serves 300 s later
    box.advance(900)
    success = (
        f'metric.type = "{REQUESTS}" AND metric.labels.instance_name = "{name}" '
        'AND metric.labels.outcome = "SUCCESS"'
    )
    (raw,) = series(client, box, filter=success, minutes=30)
    starts = [p.interval.start_time for p in raw.points]
    assert len(set(starts)) == 2 and starts[0] > starts[-1]  # the newest counter started last
    newest = [p for p in raw.points if p.interval.start_time == starts[0]]
    oldest = [p for p in raw.points if p.interval.start_time == starts[-1]]
    assert newest[-1].value.double_value < oldest[0].value.double_value  # reset to near 0
    (before,) = series(client, box, filter=success, minutes=31)
    (deltas,) = series(
        client, box, filter=success, minutes=30, aggregation=aligned(Aligner.ALIGN_DELTA, 60)
    )
    increases = [p.value.double_value for p in deltas.points]
    assert len(increases) == len(raw.points) and all(v > 0 for v in increases)
    grown = oldest[0].value.double_value - before.points[-1].value.double_value
    assert sum(increases) == pytest.approx(grown + newest[0].value.double_value)


def test_an_errors_fault_sets_the_selected_instances_error_share(client, box):
    box.inject_fault("errors", image=BACKEND_IMAGE, rate=0.05)
    by_outcome = aligned(
        Aligner.ALIGN_DELTA,
        300,
        cross_series_reducer=Reducer.REDUCE_SUM,
        group_by_fields=["metric.labels.outcome"],
    )

    def share(instances: str) -> float:
        found = series(
            client,
            box,
            filter=f'metric.type = "{REQUESTS}" AND {instances}',
            minutes=5,
            aggregation=by_outcome,
        )
        counts = {s.metric.labels["outcome"]: s.points[0].value.double_value for s in found}
        return counts["SERVER_ERROR"] / (counts["SERVER_ERROR"] + counts["SUCCESS"])

    assert share(BACKEND) == pytest.approx(0.05, abs=0.002)
    frontend = 'metric.labels.instance_name = starts_with("nemo-frontend-")'
    assert share(frontend) == pytest.approx(0.001, abs=0.0005)


def test_no_metrics_leaves_the_vm_series_alone(client, box):
    box.inject_fault("no_metrics", mig=BACKEND_MIG)
    for metric in (LATENCY, REQUESTS):
        names = {
            s.metric.labels["instance_name"]
            for s in series(client, box, filter=f'metric.type = "{metric}"')
        }
        assert names and not any(n.startswith("nemo-backend-") for n in names)
    assert series(client, box, filter=f'metric.type = "{LATENCY}" AND {BACKEND}') == []
    assert set(by_name(series(client, box))) == set(backend_instances(box))  # CPU as before


def test_memory_states_sum_to_100(client, box):
    found = series(client, box, filter=f'metric.type = "{MEMORY}" AND {BACKEND}', minutes=5)
    assert all(s.resource.type == "gce_instance" and s.unit == "%" for s in found)
    states = per_minute(found, "state")
    assert set(states) == set(backend_instances(box))
    for values in states.values():
        assert set(values) == {"used", "cached", "free"}
        for used, cached, free in zip(
            values["used"], values["cached"], values["free"], strict=True
        ):
            assert used + cached + free == pytest.approx(100)
            assert 30 <= used <= 60 and cached > 0 and free > 0


@pytest.mark.parametrize(
    "metric",
    [
        "compute.googleapis.com/instance/network/sent_bytes_count",
        "compute.googleapis.com/instance/disk/read_bytes_count",
        "compute.googleapis.com/instance/disk/write_bytes_count",
    ],
)
def test_network_and_disk_bytes_are_deltas(client, box, metric):
    found = series(client, box, filter=f'metric.type = "{metric}" AND {BACKEND}', minutes=5)
    assert len(found) == len(backend_instances(box))
    for one in found:
        assert one.resource.type == "gce_instance"
        assert one.metric_kind == metric_pb2.MetricDescriptor.DELTA
        assert one.value_type == metric_pb2.MetricDescriptor.INT64
        assert one.unit == "By" and len(one.points) == 5
        assert all(p.value.int64_value > 0 for p in one.points)


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ({"kind": "slow", "factor": 1.3}, "needs 'template', 'image' or 'mig'"),
        ({"kind": "slow", "image": "backend"}, "needs 'factor'"),
        ({"kind": "slow", "image": "backend", "factor": 0}, "needs 'factor'"),
        ({"kind": "slow", "image": "backend", "factor": "1.3"}, "needs 'factor'"),
        ({"kind": "errors", "mig": BACKEND_MIG}, "needs 'rate'"),
        ({"kind": "errors", "mig": BACKEND_MIG, "rate": 1.5}, "needs 'rate'"),
        ({"kind": "errors", "mig": BACKEND_MIG, "rate": True}, "needs 'rate'"),
        ({"kind": "no_metrics"}, "needs 'template', 'image' or 'mig'"),
        ({"kind": "no_metrics", "image": 3}, "needs 'template', 'image' or 'mig'"),
    ],
)
def test_bad_app_faults_are_refused(spec, words):
    faults = Faults()
    with pytest.raises(ApiError, match=words) as refused:
        faults.add(spec)
    assert refused.value.code == 400 and faults.items == []


def test_app_faults_through_the_control_api(box, http):
    bad = http.post(f"{box.url}/_sandbox/faults", json={"kind": "errors", "image": "backend"})
    assert bad.status_code == 400 and "'rate'" in bad.json()["error"]["message"]
    good = {"kind": "errors", "image": "backend", "rate": 0.0}
    assert http.post(f"{box.url}/_sandbox/faults", json=good).status_code == 201


# --- the services' series: load balancer, Cloud SQL, Memorystore ---------------------------------

LB_REQUESTS = "loadbalancing.googleapis.com/https/request_count"
TOTAL_LATENCIES = "loadbalancing.googleapis.com/https/total_latencies"
BACKEND_LATENCIES = "loadbalancing.googleapis.com/https/backend_latencies"
SQL_CPU = "cloudsql.googleapis.com/database/cpu/utilization"
SQL_CONNECTIONS = "cloudsql.googleapis.com/database/network/connections"
SQL_MEMORY = "cloudsql.googleapis.com/database/memory/utilization"
REDIS_HITS = "redis.googleapis.com/stats/cache_hit_ratio"
REDIS_MEMORY = "redis.googleapis.com/stats/memory/usage_ratio"
REDIS_CLIENTS = "redis.googleapis.com/clients/connected"
# backend service → its (blue) instance group, whose instances are named `<group>-…` less `-mig`
SERVICES = {
    "nemo-frontend-bes": "nemo-frontend-mig",
    "nemo-backend-bes": BACKEND_MIG,
    "nemo-ai-bes": "nemo-ai-blue-mig",
}
PROXY_MS = 10  # the middle of the 5-15 ms the proxy adds to total_latencies
BY_SERVICE = ["resource.labels.backend_target_name"]


def of_metric(metric: str, where: str = "") -> str:
    return f'metric.type = "{metric}"' + (f" AND {where}" if where else "")


def lb_counts(client, box, where: str = "", minutes: int = 5) -> dict[tuple[str, str], list[int]]:
    """(backend service, response_code_class) → its request counts, newest first."""
    found = series(client, box, filter=of_metric(LB_REQUESTS, where), minutes=minutes)
    return {
        (s.resource.labels["backend_target_name"], s.metric.labels["response_code_class"]): [
            p.value.int64_value for p in s.points
        ]
        for s in found
    }


def members_of(service: str) -> str:
    return f'metric.labels.instance_name = starts_with("{SERVICES[service].removesuffix("mig")}")'


def mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def gauge(client, box, metric: str, minutes: int = 5) -> list[float | int]:
    """The one series' values, newest first (doubles or integers as the metric is)."""
    (one,) = series(client, box, filter=of_metric(metric), minutes=minutes)
    return [p.value.int64_value or p.value.double_value for p in one.points]


def test_lb_request_count_per_backend_service_and_class(client, box):
    found = series(client, box, filter=of_metric(LB_REQUESTS), minutes=5)
    assert {
        (s.resource.labels["backend_target_name"], s.metric.labels["response_code_class"])
        for s in found
    } == {(service, code) for service in SERVICES for code in ("200", "500")}
    for one in found:
        service = one.resource.labels["backend_target_name"]
        code = one.metric.labels["response_code_class"]
        assert one.resource.type == "https_lb_rule"
        assert dict(one.resource.labels) == {
            "project_id": PROD,
            "region": "global",
            "url_map_name": f"{PROD}-url-map",
            "forwarding_rule_name": f"{PROD}-https-forwarding-rule",
            "target_proxy_name": f"{PROD}-https-proxy",
            "matched_url_path_rule": "UNMATCHED",
            "backend_target_name": service,
            "backend_target_type": "BACKEND_SERVICE",
            "backend_name": SERVICES[service],
            "backend_type": "INSTANCE_GROUP",
            "backend_scope": REGION,
            "backend_scope_type": "REGION",
        }
        assert dict(one.metric.labels) == {
            "response_code_class": code,
            "response_code": {"200": "200", "500": "503"}[code],
            "cache_result": "DISABLED",
            "proxy_continent": "Asia",
        }
        assert one.metric_kind == metric_pb2.MetricDescriptor.DELTA
        assert one.value_type == metric_pb2.MetricDescriptor.INT64
        assert one.unit == "1" and len(one.points) == 5
        for point in one.points:
            assert point.interval.end_time - point.interval.start_time == timedelta(minutes=1)
            assert point.value.int64_value > 0
    # The same requests the backend instances' Prometheus counters count.
    counters = series(
        client,
        box,
        filter=of_metric(REQUESTS, members_of("nemo-backend-bes")),
        minutes=5,
        aggregation=aligned(
            Aligner.ALIGN_DELTA,
            300,
            cross_series_reducer=Reducer.REDUCE_SUM,
            group_by_fields=["metric.labels.outcome"],
        ),
    )
    served = {s.metric.labels["outcome"]: s.points[0].value.double_value for s in counters}
    counts = lb_counts(client, box)
    assert sum(counts[("nemo-backend-bes", "200")]) == pytest.approx(served["SUCCESS"], rel=2e-3)
    assert sum(counts[("nemo-backend-bes", "500")]) == pytest.approx(served["SERVER_ERROR"], abs=5)


def test_more_serving_instances_more_requests_and_connections(client, box):
    def per_load(counts: list[int]) -> float:
        return sum(counts) / (0.5 + swell(box.world.t - 150))  # the 5 minutes' middle

    before = per_load(lb_counts(client, box)[("nemo-backend-bes", "200")])
    frontend = per_load(lb_counts(client, box)[("nemo-frontend-bes", "200")])
    connections, clients = (
        mean(gauge(client, box, SQL_CONNECTIONS)),
        gauge(client, box, REDIS_CLIENTS),
    )
    Clients(box.url).migs.resize_unary(
        project=PROD, region=REGION, instance_group_manager=BACKEND_MIG, size=8
    )
    box.advance(1)
    box.advance(900)  # the four new VMs have served for 10 minutes
    after = per_load(lb_counts(client, box)[("nemo-backend-bes", "200")])
    assert 1.6 < after / before < 2.4
    assert per_load(lb_counts(client, box)[("nemo-frontend-bes", "200")]) == pytest.approx(
        frontend, rel=0.1
    )
    assert mean(gauge(client, box, SQL_CONNECTIONS)) > connections + 5
    assert mean(gauge(client, box, REDIS_CLIENTS)) > mean(clients)


def test_an_instance_the_lb_fails_gets_no_traffic(client, box):
    box.inject_fault("lb_unhealthy", mig=BACKEND_MIG)
    counts = lb_counts(client, box)
    assert not [key for key in counts if key[0] == "nemo-backend-bes"]
    assert ("nemo-frontend-bes", "200") in counts


def test_a_down_component_answers_every_request_with_503(client, box):
    before = lb_counts(client, box)
    box.inject_fault("down", environment="prod", component="backend")
    found = series(
        client,
        box,
        filter=of_metric(LB_REQUESTS, 'resource.labels.backend_name = "nemo-backend-mig"'),
        minutes=5,
    )
    (one,) = found
    assert one.metric.labels["response_code"] == "503"
    total = [
        a + b
        for a, b in zip(*(before[("nemo-backend-bes", c)] for c in ("200", "500")), strict=True)
    ]
    assert [p.value.int64_value for p in one.points] == pytest.approx(total, abs=1)
    after = lb_counts(client, box)
    assert after[("nemo-frontend-bes", "200")] == before[("nemo-frontend-bes", "200")]


def test_an_errors_fault_shows_as_5xx(client, box):
    box.inject_fault("errors", image=BACKEND_IMAGE, rate=0.05)
    counts = lb_counts(client, box, minutes=10)

    def share(service: str) -> float:
        errors, ok = sum(counts[(service, "500")]), sum(counts[(service, "200")])
        return errors / (errors + ok)

    assert share("nemo-backend-bes") == pytest.approx(0.05, abs=0.002)
    assert share("nemo-frontend-bes") == pytest.approx(0.001, abs=0.0007)


def lb_p95(client, box, metric: str) -> dict[str, float]:
    """Each backend service's p95 over the last 5 minutes, in ms: ALIGN_DELTA merges each
    series' minutes, REDUCE_PERCENTILE_95 the services' series, then takes the percentile."""
    aggregation = aligned(
        Aligner.ALIGN_DELTA,
        300,
        cross_series_reducer=Reducer.REDUCE_PERCENTILE_95,
        group_by_fields=BY_SERVICE,
    )
    found = series(client, box, filter=of_metric(metric), minutes=5, aggregation=aggregation)
    for one in found:
        assert one.value_type == metric_pb2.MetricDescriptor.DOUBLE and one.unit == "ms"
        assert set(one.resource.labels) == {"backend_target_name"} and len(one.points) == 1
    return {s.resource.labels["backend_target_name"]: s.points[0].value.double_value for s in found}


def instances_p95(client, box, service: str) -> float:
    """The mean p95 (ms) the service's instances report to Prometheus over 5 minutes."""
    where = f'{members_of(service)} AND metric.labels.quantile = "0.95"'
    found = series(client, box, filter=of_metric(LATENCY, where), minutes=5)
    return 1000 * mean(p.value.double_value for s in found for p in s.points)


def test_lb_latency_p95_follows_the_instances_and_slow_faults(client, box):
    total, backend = lb_p95(client, box, TOTAL_LATENCIES), lb_p95(client, box, BACKEND_LATENCIES)
    assert set(total) == set(backend) == set(SERVICES)
    for service in SERVICES:
        expected = instances_p95(client, box, service)
        assert backend[service] == pytest.approx(expected, rel=0.15), service
        assert total[service] == pytest.approx(expected + PROXY_MS, rel=0.15), service
        assert total[service] > backend[service]
    box.inject_fault("slow", mig=BACKEND_MIG, factor=1.5)
    slow_total, slow_backend = (
        lb_p95(client, box, TOTAL_LATENCIES),
        lb_p95(client, box, BACKEND_LATENCIES),
    )
    assert slow_backend["nemo-backend-bes"] == pytest.approx(
        1.5 * backend["nemo-backend-bes"], rel=0.1
    )
    assert slow_total["nemo-backend-bes"] > 1.3 * total["nemo-backend-bes"]
    assert slow_total["nemo-frontend-bes"] == total["nemo-frontend-bes"]


def test_lb_latencies_are_distributions_on_googles_buckets(client, box):
    where = 'resource.labels.backend_target_name = "nemo-backend-bes"'
    raw = series(client, box, filter=of_metric(TOTAL_LATENCIES, where), minutes=5)
    assert {s.metric.labels["response_code_class"] for s in raw} == {"200", "500"}
    counts = lb_counts(client, box, where)
    for one in raw:
        assert set(one.metric.labels) == {"response_code_class", "proxy_continent", "cache_result"}
        assert one.metric_kind == metric_pb2.MetricDescriptor.DELTA
        assert one.value_type == metric_pb2.MetricDescriptor.DISTRIBUTION
        assert one.unit == "ms" and len(one.points) == 5
        code = one.metric.labels["response_code_class"]
        for point, count in zip(one.points, counts[("nemo-backend-bes", code)], strict=True):
            value = point.value.distribution_value
            buckets = value.bucket_options.exponential_buckets
            assert (buckets.num_finite_buckets, buckets.growth_factor, buckets.scale) == (
                66,
                1.4,
                1.0,
            )
            assert value.count == count == sum(value.bucket_counts)
            assert len(value.bucket_counts) <= 68
            assert 40 < value.mean < 120 and value.sum_of_squared_deviation > 0
    # REDUCE_SUM merges them bucket by bucket: one distribution for the service.
    merged = series(
        client,
        box,
        filter=of_metric(TOTAL_LATENCIES, where),
        minutes=5,
        aggregation=aligned(
            Aligner.ALIGN_DELTA,
            300,
            cross_series_reducer=Reducer.REDUCE_SUM,
            group_by_fields=BY_SERVICE,
        ),
    )
    (one,) = merged
    assert one.value_type == metric_pb2.MetricDescriptor.DISTRIBUTION
    value = one.points[0].value.distribution_value
    assert value.count == sum(map(sum, counts.values())) == sum(value.bucket_counts)
    assert value.bucket_options.exponential_buckets.growth_factor == 1.4
    # Per-series aligners to a number: GAUGE DOUBLE in ms.
    for aligner in (Aligner.ALIGN_PERCENTILE_50, Aligner.ALIGN_PERCENTILE_99, Aligner.ALIGN_MEAN):
        found = series(
            client,
            box,
            filter=of_metric(TOTAL_LATENCIES, where),
            minutes=5,
            aggregation=aligned(aligner, 60),
        )
        assert len(found) == 2
        for s in found:
            assert s.metric_kind == metric_pb2.MetricDescriptor.GAUGE
            assert s.value_type == metric_pb2.MetricDescriptor.DOUBLE and s.unit == "ms"
            assert len(s.points) == 5 and all(p.value.double_value > 40 for p in s.points)
    p50, p99, average = (
        lb_stat(client, box, reducer, where)
        for reducer in (
            Reducer.REDUCE_PERCENTILE_50,
            Reducer.REDUCE_PERCENTILE_99,
            Reducer.REDUCE_MEAN,
        )
    )
    assert p50 < average < p99
    assert average == pytest.approx(value.mean)


def lb_stat(client, box, reducer, where: str) -> float:
    (one,) = series(
        client,
        box,
        filter=of_metric(TOTAL_LATENCIES, where),
        minutes=5,
        aggregation=aligned(Aligner.ALIGN_DELTA, 300, cross_series_reducer=reducer),
    )
    return one.points[0].value.double_value


@pytest.mark.parametrize(
    ("metric", "aggregation", "words"),
    [
        (
            TOTAL_LATENCIES,
            aligned(Aligner.ALIGN_RATE, 60),
            "kind DELTA and value type DISTRIBUTION",
        ),
        (TOTAL_LATENCIES, aligned(Aligner.ALIGN_MAX, 60), "kind DELTA and value type DISTRIBUTION"),
        (
            TOTAL_LATENCIES,
            aligned(Aligner.ALIGN_DELTA, 60, cross_series_reducer=Reducer.REDUCE_MAX),
            "reducer cannot be applied to metrics with kind DELTA and value type DISTRIBUTION",
        ),
        (CPU, aligned(Aligner.ALIGN_PERCENTILE_95, 60), "kind GAUGE and value type DOUBLE"),
        (
            CPU,
            aligned(Aligner.ALIGN_MEAN, 60, cross_series_reducer=Reducer.REDUCE_PERCENTILE_95),
            "reducer cannot be applied to metrics with kind GAUGE and value type DOUBLE",
        ),
        (TOTAL_LATENCIES, aligned(Aligner.ALIGN_STDDEV, 60), "The sandbox implements"),
    ],
)
def test_aggregations_a_distribution_does_not_take_are_refused(
    client, box, metric, aggregation, words
):
    with pytest.raises(exceptions.InvalidArgument, match=words):
        series(client, box, filter=of_metric(metric), aggregation=aggregation)


def test_cloud_sql_series_on_cloudsql_database(client, box):
    for metric, value_type in (
        (SQL_CPU, metric_pb2.MetricDescriptor.DOUBLE),
        (SQL_CONNECTIONS, metric_pb2.MetricDescriptor.INT64),
        (SQL_MEMORY, metric_pb2.MetricDescriptor.DOUBLE),
    ):
        (one,) = series(client, box, filter=of_metric(metric), minutes=120)
        assert one.resource.type == "cloudsql_database"
        assert dict(one.resource.labels) == {
            "project_id": PROD,
            "database_id": f"{PROD}:nemo-prod-mysql",
            "region": REGION,
        }
        assert dict(one.metric.labels) == {}
        assert one.metric_kind == metric_pb2.MetricDescriptor.GAUGE
        assert one.value_type == value_type
        assert one.unit == ("1" if metric == SQL_CONNECTIONS else "10^2.%")
        assert len(one.points) == 120  # since the world's seeded day began
    assert all(0.05 < v < 0.6 for v in gauge(client, box, SQL_CPU, 60))
    assert all(0.5 < v < 0.8 for v in gauge(client, box, SQL_MEMORY, 60))
    connections = gauge(client, box, SQL_CONNECTIONS, 60)
    assert all(isinstance(v, int) and 20 <= v <= 80 for v in connections)
    assert len(set(connections)) > 3  # noise
    dev = {"name": f"projects/{DEV}", "filter": of_metric(SQL_CPU)}
    assert series(client, box, **dev) == []  # dev's MySQL is a container on the dev VM


def test_a_db_connections_fault_pins_the_connections_near_the_limit(client, box):
    cpu = mean(gauge(client, box, SQL_CPU))
    box.inject_fault(
        "db_connections", environment="prod", component="mysql", connections=3900, max=4000
    )
    connections = gauge(client, box, SQL_CONNECTIONS)
    assert all(3860 <= v <= 4000 for v in connections)
    assert mean(gauge(client, box, SQL_CPU)) > cpu + 0.3
    assert all(v <= 1.0 for v in gauge(client, box, SQL_CPU))
    assert lb_counts(client, box)  # the load balancer's series are not its business


def test_memorystore_series_on_redis_instance(client, box):
    for metric, value_type in (
        (REDIS_HITS, metric_pb2.MetricDescriptor.DOUBLE),
        (REDIS_MEMORY, metric_pb2.MetricDescriptor.DOUBLE),
        (REDIS_CLIENTS, metric_pb2.MetricDescriptor.INT64),
    ):
        (one,) = series(client, box, filter=of_metric(metric), minutes=30)
        assert one.resource.type == "redis_instance"
        assert dict(one.resource.labels) == {
            "project_id": PROD,
            "region": REGION,
            "instance_id": f"projects/{PROD}/locations/{REGION}/instances/nemo-prod-redis",
            "node_id": "node-0",
        }
        assert dict(one.metric.labels) == {"role": "primary"}
        assert one.metric_kind == metric_pb2.MetricDescriptor.GAUGE
        assert one.value_type == value_type and one.unit == "1" and len(one.points) == 30
    assert all(0.85 <= v <= 0.98 for v in gauge(client, box, REDIS_HITS, 60))
    assert all(0.0 < v < 1.0 for v in gauge(client, box, REDIS_MEMORY, 60))
    assert all(isinstance(v, int) and v >= 1 for v in gauge(client, box, REDIS_CLIENTS, 60))
    where = 'resource.labels.instance_id = ends_with("/nemo-prod-redis")'
    assert series(client, box, filter=of_metric(REDIS_HITS, where))
    assert series(client, box, name=f"projects/{DEV}", filter=of_metric(REDIS_HITS)) == []


DB_FAULT = {"kind": "db_connections", "environment": "prod", "component": "mysql"}


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ({**DB_FAULT, "environment": ""}, "needs 'environment' and 'component'"),
        ({"kind": "db_connections", "environment": "prod", "connections": 1}, "'component'"),
        (DB_FAULT, "needs 'connections'"),
        ({**DB_FAULT, "connections": -1}, "needs 'connections'"),
        ({**DB_FAULT, "connections": "3900"}, "needs 'connections'"),
        ({**DB_FAULT, "connections": True}, "needs 'connections'"),
        ({**DB_FAULT, "connections": 39.5}, "needs 'connections'"),
        ({**DB_FAULT, "connections": 4001}, r"from 0 to 'max' \(4000\)"),
        ({**DB_FAULT, "connections": 100, "max": 50}, r"from 0 to 'max' \(50\)"),
        ({**DB_FAULT, "connections": 10, "max": 0}, "'max' must be an integer above 0"),
    ],
)
def test_bad_db_connections_faults_are_refused(spec, words):
    faults = Faults()
    with pytest.raises(ApiError, match=words) as refused:
        faults.add(spec)
    assert refused.value.code == 400 and faults.items == []


def test_db_connections_faults_through_the_control_api(box, http):
    bad = http.post(f"{box.url}/_sandbox/faults", json={**DB_FAULT, "connections": -3})
    assert bad.status_code == 400 and "'connections'" in bad.json()["error"]["message"]
    made = http.post(f"{box.url}/_sandbox/faults", json={**DB_FAULT, "connections": 3900})
    assert made.status_code == 201 and made.json()["max"] == 4000


def test_a_sandbox_on_the_wall_clock_puts_its_minutes_where_a_reader_looks(client, box):
    """The demo runs the clock at speed 4 and Gantry reads on the wall clock: Monitoring's time
    line runs 4 simulated seconds to one of its own, so the last 5 minutes it is asked for hold
    20 simulated minutes, and a 60 s alignment period averages four of their samples."""
    box.advance(3600)
    with box.world.lock:
        box.world.sync()
        box.world.monitoring_scale = 4.0
        to_wall, _ = box.world.monitoring_time()
        end = datetime.fromtimestamp(to_wall(box.world.t), UTC)
    (one, *_) = backend_instances(box)
    name = f'metric.type = "{CPU}" AND metric.labels.instance_name = "{one}"'
    window = {"start_time": end - timedelta(minutes=5), "end_time": end}
    ask = {"name": f"projects/{PROD}", "filter": name, "interval": window}
    (raw,) = client.list_time_series(request=ask, retry=None)
    stamps = [p.interval.end_time for p in raw.points]
    assert len(stamps) == 20 and stamps[0] - stamps[1] == timedelta(seconds=15)
    assert abs(stamps[0] - end) < timedelta(milliseconds=1)
    aggregation = {
        "alignment_period": timedelta(minutes=1),
        "per_series_aligner": Aligner.ALIGN_MEAN,
    }
    (aligned,) = client.list_time_series(request=ask | {"aggregation": aggregation}, retry=None)
    values = [p.value.double_value for p in raw.points]
    means = [sum(values[i : i + 4]) / 4 for i in range(0, 20, 4)]
    assert [p.value.double_value for p in aligned.points] == pytest.approx(means)
