"""gcp.monitoring: plaintext gRPC only to loopback; CPU per zone read through the real client."""

from datetime import UTC, datetime, timedelta

import google.auth
import grpc
import pytest

from gcp import monitoring
from gcp.monitoring import Monitoring, loopback_target, metric_client

PROJECT, ZONES = "nemo-prod", ["asia-northeast3-a", "asia-northeast3-c"]


@pytest.fixture
def no_channels(monkeypatch):
    """Fail the test if anything opens a gRPC channel."""

    def refuse(*args, **kwargs):
        raise AssertionError("a channel was opened")

    monkeypatch.setattr(grpc, "insecure_channel", refuse)
    monkeypatch.setattr(grpc, "secure_channel", refuse)


@pytest.mark.parametrize(
    "endpoint",
    [
        "10.0.0.5:8901",
        "monitoring.googleapis.com:443",
        "0.0.0.0:8901",
        "[2001:db8::1]:8901",
        "127.0.0.1.example.com:8901",
    ],
)
def test_a_non_loopback_endpoint_is_refused_before_any_channel(no_channels, endpoint):
    with pytest.raises(ValueError, match="loopback"):
        metric_client(endpoint)
    with pytest.raises(ValueError, match="loopback"):
        Monitoring(endpoint)


@pytest.mark.parametrize("endpoint", ["127.0.0.1", "http://127.0.0.1:8901", "127.0.0.1:", ":8901"])
def test_an_endpoint_must_be_host_and_port(no_channels, endpoint):
    with pytest.raises(ValueError, match="host:port"):
        loopback_target(endpoint)


@pytest.mark.parametrize(
    ("endpoint", "target"),
    [
        ("127.0.0.1:8901", "127.0.0.1:8901"),
        ("[::1]:8901", "[::1]:8901"),
        ("localhost:8901", "localhost:8901"),
    ],
)
def test_loopback_endpoints_are_accepted(endpoint, target):
    assert loopback_target(endpoint) == target


def test_the_client_uses_an_insecure_channel_and_no_google_credentials(monkeypatch):
    opened = []
    real = grpc.insecure_channel
    monkeypatch.setattr(grpc, "insecure_channel", lambda t: opened.append(t) or real(t))

    def no_adc(*args, **kwargs):
        raise AssertionError("Application Default Credentials were looked up")

    monkeypatch.setattr(google.auth, "default", no_adc)
    client = metric_client("127.0.0.1:8901")  # a channel connects lazily: nothing is sent
    try:
        assert opened == ["127.0.0.1:8901"]
        assert client.transport.grpc_channel is not None
    finally:
        client.transport.close()


@pytest.fixture
def reader(sandbox_factory, settings):
    box = sandbox_factory(speed=0)
    settings.GANTRY_MONITORING_ENDPOINT = box.urls()["GANTRY_MONITORING_ENDPOINT"]
    reader = Monitoring.from_settings()
    yield box, reader
    reader.close()


def test_cpu_by_zone_reads_one_mean_series_per_zone(reader):
    box, reader = reader
    assert reader.endpoint == box.urls()["GANTRY_MONITORING_ENDPOINT"]
    end = datetime.fromtimestamp(box.world.wall_epoch + box.world.t, UTC)
    zones = reader.cpu_by_zone(
        PROJECT, end - timedelta(minutes=30), end, timedelta(minutes=5), name_prefix="nemo-backend-"
    )
    assert [z.zone for z in zones] == ZONES
    for zone in zones:
        assert isinstance(zone, monitoring.ZoneCpu)
        assert len(zone.samples) == 6
        assert [s.at for s in zone.samples] == sorted(s.at for s in zone.samples)
        assert type(zone.samples[-1].at) is datetime
        assert abs(zone.samples[-1].at - end) < timedelta(milliseconds=1)
        assert all(0.0 <= s.value <= 1.0 for s in zone.samples)
        assert zone.latest == zone.samples[-1].value


def test_cpu_by_zone_of_named_instances(reader):
    box, reader = reader
    (one, *_) = box.mig(PROJECT, "nemo-backend-mig").instances
    end = datetime.fromtimestamp(box.world.wall_epoch + box.world.t, UTC)
    start = end - timedelta(minutes=10)
    (zone,) = reader.cpu_by_zone(PROJECT, start, end, instances=[one.name])
    assert zone.zone == one.zone and len(zone.samples) == 10
    assert reader.cpu_by_zone(PROJECT, start, end, instances=[]) == ()


def test_by_instance_reads_each_named_instance_apart(reader):
    box, reader = reader
    names = sorted(i.name for i in box.mig(PROJECT, "nemo-backend-mig").instances)
    end = datetime.fromtimestamp(box.world.wall_epoch + box.world.t, UTC)
    start = end - timedelta(minutes=10)
    latency = reader.by_instance(
        PROJECT,
        "prometheus.googleapis.com/http_server_requests_seconds/summary",
        names[:3],
        start,
        end,
        labels={"quantile": "0.95"},
    )
    assert [s.instance for s in latency] == names[:3]
    assert all(s.labels == {"quantile": "0.95"} and len(s.samples) == 10 for s in latency)
    assert all(0.05 < p.value < 0.5 for s in latency for p in s.samples)  # seconds
    cpu = reader.by_instance(
        PROJECT, "compute.googleapis.com/instance/cpu/utilization", names, start, end
    )
    assert [(s.instance, s.labels) for s in cpu] == [(name, {}) for name in names]
    assert reader.by_instance(PROJECT, "x", [], start, end) == ()


def test_by_instance_rate_reads_a_counter_per_second_per_outcome(reader):
    box, reader = reader
    (one, *_) = box.mig(PROJECT, "nemo-backend-mig").instances
    end = datetime.fromtimestamp(box.world.wall_epoch + box.world.t, UTC)
    counted = reader.by_instance(
        PROJECT,
        "prometheus.googleapis.com/http_server_requests_seconds_count/summary",
        [one.name],
        end - timedelta(minutes=5),
        end,
        rate=True,
    )
    by_outcome = {s.labels["outcome"]: s for s in counted}
    assert sorted(by_outcome) == ["SERVER_ERROR", "SUCCESS"]
    assert all(len(s.samples) == 5 for s in counted)
    ok = [p.value for p in by_outcome["SUCCESS"].samples]
    errors = [p.value for p in by_outcome["SERVER_ERROR"].samples]
    assert all(5 < v < 40 for v in ok)  # requests a second
    assert sum(errors) < 0.01 * sum(ok)
