"""Cloud Monitoring on the dashboards: read on beat through Google's client from the sandbox,
stored as one sample per component holding the last hour, shown without calling GCP."""

from datetime import timedelta

import pytest
from django.urls import reverse

from environments import cloud, mig
from environments.models import Environment, StatSample

pytestmark = pytest.mark.django_db


@pytest.fixture
def prod(seed_topology, sandbox_settings, sim_time, sandbox):
    """Prod an hour into the sandbox's life, its instance groups read once."""
    sandbox.advance(3600)
    environment = Environment.objects.get(name="prod")
    mig.collect(environment.pk)
    return environment


def charts_of(component: str) -> dict:
    sample = StatSample.objects.get(component__name=component, kind="cloud")
    return {chart["key"]: chart for chart in sample.data["charts"]}


def test_each_deployable_component_gets_an_hour_of_charts(prod, sim_time):
    stored = cloud.collect(prod.pk, now=sim_time.now())
    assert sorted(s.component.name for s in stored) == [
        "ai-server",
        "backend",
        "frontend",
        "mysql",
        "redis",
    ]
    assert all(s.ok and s.problems == [] for s in stored)
    frontend = charts_of("frontend")
    assert list(frontend) == [
        *("cpu", "memory", "network", "disk", "latency", "errors"),
        *("lb_requests", "lb_errors", "lb_latency"),
    ]
    cpu = frontend["cpu"]
    assert [s["name"] for s in cpu["series"]] == ["asia-northeast3-a", "asia-northeast3-c"]
    assert all(55 <= len(s["points"]) <= 60 for s in cpu["series"])
    assert all(0 < v <= 100 for s in cpu["series"] for _, v in s["points"])
    assert cpu["target"] == 60.0  # the autoscaler's cpuUtilization target, read from GCP
    latency = frontend["latency"]
    assert [s["name"] for s in latency["series"]] == ["p50", "p95", "p99"]
    p50, p95, p99 = (s["points"][-1][1] for s in latency["series"])
    assert 30 < p50 < p95 < p99 < 1000  # ms
    (errors,) = frontend["errors"]["series"]
    assert errors["points"] and all(v < 1 for _, v in errors["points"])
    assert [s["name"] for s in frontend["network"]["series"]] == ["received", "sent"]
    assert charts_of("backend")["cpu"]["target"] is None  # no autoscaler on the backend


def test_a_slow_version_shows_on_the_latency_chart(prod, sim_time, sandbox):
    sandbox.inject_fault("slow", mig="nemo-backend-mig", factor=2.0)
    cloud.collect(prod.pk, now=sim_time.now())
    slow = charts_of("backend")["latency"]["series"][1]["points"][-1][1]
    fast = charts_of("frontend")["latency"]["series"][1]["points"][-1][1]
    assert slow > 1.6 * fast


def test_reads_are_spaced_and_only_the_last_hour_is_kept(prod, sim_time, sandbox, settings):
    settings.GANTRY_CLOUD_METRICS_SECONDS = 60
    first = sim_time.now()
    assert cloud.due(prod.pk, first)
    cloud.collect(prod.pk, now=first)
    assert not cloud.due(prod.pk, first + timedelta(seconds=30))
    assert cloud.due(prod.pk, first + timedelta(seconds=61))
    sandbox.advance(3700)
    cloud.collect(prod.pk, now=sim_time.now())
    assert StatSample.objects.filter(kind="cloud").count() == 5  # the first hour's went


def test_monitoring_unavailable_is_stored_with_the_reason(prod, sim_time, sandbox):
    sandbox.inject_fault(
        "http_error",
        path="/google.monitoring.v3.MetricService/ListTimeSeries",
        method="POST",
        status=503,
        count=100,
    )
    stored = cloud.collect(prod.pk, now=sim_time.now())
    assert all(not s.ok and s.data == {} for s in stored)
    assert "Cloud Monitoring unreadable: ServiceUnavailable" in stored[0].problems[0]


def test_pages_draw_the_stored_charts_and_never_call_gcp(prod, sim_time, sandbox, client_as):
    cloud.collect(prod.pk, now=sim_time.now())
    sandbox.stop()
    client = client_as("viewer")
    page = client.get(reverse("environment", args=["prod"])).content.decode()
    assert page.count("· Cloud Monitoring</h3>") == 5
    # CPU, latency, errors, LB requests and 5xx per MIG; CPU and connections, hits and clients
    assert page.count('class="chart lines"') == 3 * 5 + 2 + 2
    assert "autoscaler target 60.0 %" in page and 'class="target"' in page
    detail = client.get(reverse("component", args=["prod", "backend"])).content.decode()
    assert detail.count('class="chart lines"') == 9
    for title in ("CPU by zone", "Memory used by zone", "Network", "Disk", "App latency"):
        assert f"<figcaption>{title} (" in detail


def test_the_load_balancer_cloud_sql_and_memorystore(prod, sim_time, sandbox):
    sandbox.inject_fault("errors", mig="nemo-backend-mig", rate=0.2)
    cloud.collect(prod.pk, now=sim_time.now())
    backend = charts_of("backend")
    classes = {s["name"]: s["points"] for s in backend["lb_requests"]["series"]}
    assert sorted(classes) == ["2xx", "5xx"] and len(classes["2xx"]) >= 55
    (share,) = backend["lb_errors"]["series"]
    assert 15 < share["points"][-1][1] < 25  # % of the LB's requests
    p50, p95, p99 = (s["points"][-1][1] for s in backend["lb_latency"]["series"])
    assert 30 < p50 < p95 < p99  # ms, the app's plus the proxy's
    assert charts_of("frontend")["lb_errors"]["series"][0]["points"][-1][1] < 1
    sql = charts_of("mysql")
    assert list(sql) == ["sql_cpu", "sql_connections", "sql_memory"]
    assert 0 < sql["sql_cpu"]["series"][0]["points"][-1][1] <= 100
    assert 10 < sql["sql_connections"]["series"][0]["points"][-1][1] < 200
    redis = charts_of("redis")
    assert list(redis) == ["redis_hits", "redis_memory", "redis_clients"]
    assert 80 < redis["redis_hits"]["series"][0]["points"][-1][1] <= 100


def test_a_database_near_its_connection_limit_shows(prod, sim_time, sandbox):
    sandbox.inject_fault("db_connections", environment="prod", component="mysql", connections=3900)
    cloud.collect(prod.pk, now=sim_time.now())
    connections = charts_of("mysql")["sql_connections"]["series"][0]["points"][-1][1]
    assert 3850 < connections <= 4000
