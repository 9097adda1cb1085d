"""Redis figures from a real Redis, LLM figures from Prometheus text served over HTTP."""

from urllib.parse import urlsplit

import pytest
import redis

from environments import stats
from environments.models import Component, Environment, StatSample

pytestmark = pytest.mark.django_db

METRICS = """# HELP nemo_ai_requests_total Requests served.
# TYPE nemo_ai_requests_total counter
nemo_ai_requests_total{{endpoint="/v1/chat/completions",status="200"}} {ok}
nemo_ai_requests_total{{endpoint="/v1/chat/completions",status="500"}} {errors}
# TYPE nemo_ai_cache_hits_total counter
nemo_ai_cache_hits_total {hits}
# TYPE nemo_ai_cache_misses_total counter
nemo_ai_cache_misses_total {misses}
# TYPE nemo_ai_generated_tokens_total counter
nemo_ai_generated_tokens_total {tokens}
# TYPE nemo_ai_inference_latency_seconds histogram
nemo_ai_inference_latency_seconds_bucket{{le="0.1"}} {b1}
nemo_ai_inference_latency_seconds_bucket{{le="0.5"}} {b2}
nemo_ai_inference_latency_seconds_bucket{{le="1.0"}} {b3}
nemo_ai_inference_latency_seconds_bucket{{le="+Inf"}} {b3}
nemo_ai_inference_latency_seconds_sum 10.0
nemo_ai_inference_latency_seconds_count {b3}
"""


def metrics(requests, errors, **values):
    return METRICS.format(ok=requests - errors, errors=errors, **values).encode()


@pytest.fixture
def redis_component(seed_topology, settings, redis_url):
    parts = urlsplit(redis_url)
    settings.GANTRY_PROBE_TARGETS = f"prod/redis={parts.hostname}:{parts.port}"
    settings.GANTRY_STACK_URL = ""
    db = int(parts.path.strip("/") or 0)
    component = Component.objects.get(environment__name="prod", name="redis")
    component.options = {"queues": ["gantry-test:notifications"], "db": db}
    component.save()
    client = redis.Redis(host=parts.hostname, port=parts.port, db=db)
    client.delete("gantry-test:notifications", "gantry-test:present")
    yield component, client
    client.delete("gantry-test:notifications", "gantry-test:present")
    client.close()


def redis_sample():
    return StatSample.objects.filter(kind="redis", component__environment__name="prod").first()


def test_redis_hit_ratio_follows_known_traffic(redis_component):
    _, client = redis_component
    prod = Environment.objects.get(name="prod")
    stats.collect(prod.pk)
    client.set("gantry-test:present", "1")
    for _ in range(30):
        client.get("gantry-test:present")
    for n in range(10):
        client.get(f"gantry-test:absent-{n}")
    client.rpush("gantry-test:notifications", "a", "b", "c")
    stats.collect(prod.pk)
    sample = redis_sample()
    figures = sample.data["figures"]
    assert sample.ok and sample.problems == []
    assert figures["hit_ratio"] == 75.0
    assert figures["queues"] == {"gantry-test:notifications": 3}
    info = client.info()
    assert figures["clients"] >= 1 and figures["memory_used"] > 0
    assert sample.data["raw"]["keyspace_hits"] <= info["keyspace_hits"]


def test_an_unreachable_redis_is_said_so(seed_topology, settings):
    settings.GANTRY_PROBE_TARGETS = "prod/redis=127.0.0.1:1"
    stats.collect(Environment.objects.get(name="prod").pk)
    sample = redis_sample()
    assert not sample.ok
    assert sample.problems[0].startswith("Redis unreachable: ConnectionError")


def test_llm_figures_from_the_metrics_endpoint(seed_topology, settings, http_stack):
    settings.GANTRY_STACK_URL = http_stack.url
    settings.GANTRY_PROBE_TARGETS = ""
    prod = Environment.objects.get(name="prod")
    route = "/prod/ai-server/metrics"
    http_stack.routes[route] = (
        200,
        metrics(requests=100, errors=1, hits=40, misses=60, tokens=5000, b1=10, b2=80, b3=100),
        0,
    )
    stats.collect(prod.pk)
    http_stack.routes[route] = (
        200,
        metrics(requests=200, errors=3, hits=115, misses=85, tokens=9000, b1=30, b2=180, b3=200),
        0,
    )
    stats.collect(prod.pk)
    sample = StatSample.objects.filter(kind="llm").first()
    figures = sample.data["figures"]
    assert sample.problems == []
    assert figures["cache_hit_ratio"] == 75.0  # 75 hits, 25 misses since the last sample
    assert figures["error_pct"] == 2.0
    assert figures["p50_ms"] == 250.0  # 100 new: 20 under 0.1 s, 80 in 0.1-0.5 s: 0.1 + 0.4 * 30/80
    assert figures["p95_ms"] == 475.0
    assert figures["requests_per_sec"] > 0 and figures["tokens_per_sec"] > 0


def test_a_missing_metric_is_named(seed_topology, settings, http_stack):
    settings.GANTRY_STACK_URL = http_stack.url
    text = b"# TYPE nemo_ai_requests_total counter\nnemo_ai_requests_total 5\n"
    http_stack.routes["/prod/ai-server/metrics"] = (200, text, 0)
    stats.collect(Environment.objects.get(name="prod").pk)
    sample = StatSample.objects.filter(kind="llm").first()
    assert "metric nemo_ai_cache_hits_total missing" in sample.problems
    assert "metric nemo_ai_inference_latency_seconds (histogram) missing" in sample.problems
    assert sample.data["figures"]["p50_ms"] is None


def test_llm_rates_use_the_time_between_samples():
    before = {
        "requests": 100.0,
        "tokens": 1000.0,
        "errors": 0,
        "cache_hits": 0,
        "cache_misses": 0,
        "buckets": {},
    }
    now = {**before, "requests": 130.0, "tokens": 2500.0}
    figures = stats.llm_figures(now, before, seconds=15)
    assert (figures["requests_per_sec"], figures["tokens_per_sec"]) == (2.0, 100.0)
    restarted = {**before, "requests": 3.0}
    assert stats.llm_figures(restarted, before, seconds=15)["requests_per_sec"] is None


@pytest.mark.parametrize(
    ("q", "buckets", "expected"),
    [
        (0.5, {"0.1": 50, "0.5": 100, "+Inf": 100}, 0.1),
        (0.5, {"0.1": 0, "1.0": 100, "+Inf": 100}, 0.55),
        (0.99, {"0.1": 10, "+Inf": 100}, 0.1),
        (0.5, {"+Inf": 0}, None),
    ],
)
def test_histogram_quantile(q, buckets, expected):
    result = stats.quantile(q, buckets)
    assert result == pytest.approx(expected) if expected is not None else result is None


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("up", ("up", [])),
        (
            'x_total{status=~"5..",endpoint="/a"}',
            ("x_total", [("status", True, "5.."), ("endpoint", False, "/a")]),
        ),
    ],
)
def test_metric_selectors(spec, expected):
    assert stats.selector(spec) == expected


@pytest.mark.parametrize("spec", ["", "x{status=5}", "x{", "1x"])
def test_bad_metric_selectors_are_refused(spec):
    with pytest.raises(ValueError):
        stats.selector(spec)
