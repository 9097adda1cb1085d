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

from .clients import BACKEND_MIG, PROD, REGION, ZONES, Clients

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
