"""The monitored stack: health endpoints per environment whose state follows the instances."""

import pytest


def test_backend_health_has_the_spring_boot_shape(sandbox, http):
    response = http.get(f"{sandbox.url}/stack/prod/backend/actuator/health")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/vnd.spring-boot.actuator.v3+json"
    body = response.json()
    assert body["status"] == "UP"
    assert {"db", "diskSpace", "ping", "redis"} <= set(body["components"])
    liveness = http.get(f"{sandbox.url}/stack/prod/backend/actuator/health/liveness").json()
    assert liveness == {"status": "UP"}


@pytest.mark.parametrize("env", ["prod", "dev"])
def test_every_http_component_answers(sandbox, http, env):
    assert http.get(f"{sandbox.url}/stack/{env}/frontend/").status_code == 200
    assert http.get(f"{sandbox.url}/stack/{env}/ai-server/health").json()["status"] == "ok"
    beat = http.get(f"{sandbox.url}/stack/{env}/chromadb/api/v2/heartbeat").json()
    assert isinstance(beat["nanosecond heartbeat"], int)
    tcp = http.get(f"{sandbox.url}/stack/{env}/mysql/")
    assert tcp.status_code == 404 and "TCP" in tcp.json()["error"]["message"]
    assert http.get(f"{sandbox.url}/stack/staging/frontend/").status_code == 404


def parse_prometheus(text: str) -> dict[str, float]:
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def test_ai_metrics_are_prometheus_text_that_grows_with_time(sandbox, http):
    url = f"{sandbox.url}/stack/prod/ai-server/metrics"
    response = http.get(url)
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    for family, kind in [
        ("nemo_ai_requests_total", "counter"),
        ("nemo_ai_cache_hits_total", "counter"),
        ("nemo_ai_cache_misses_total", "counter"),
        ("nemo_ai_inference_latency_seconds", "histogram"),
        ("nemo_ai_generated_tokens_total", "counter"),
    ]:
        assert f"# TYPE {family} {kind}" in response.text
    before = parse_prometheus(response.text)
    sandbox.advance(600)
    after = parse_prometheus(http.get(url).text)
    assert after["nemo_ai_generated_tokens_total"] > before["nemo_ai_generated_tokens_total"]
    assert after["nemo_ai_cache_hits_total"] > before["nemo_ai_cache_hits_total"]
    buckets = [
        v for k, v in after.items() if k.startswith("nemo_ai_inference_latency_seconds_bucket")
    ]
    assert buckets == sorted(buckets)
    assert buckets[-1] == after["nemo_ai_inference_latency_seconds_count"]


def test_a_down_fault_and_an_empty_group(sandbox, http, gcp):
    sandbox.inject_fault("down", environment="prod", component="chromadb")
    assert http.get(f"{sandbox.url}/stack/prod/chromadb/api/v2/heartbeat").status_code == 503
    assert http.get(f"{sandbox.url}/stack/dev/chromadb/api/v2/heartbeat").status_code == 200
    gcp.wait(
        gcp.migs.resize_unary(
            project="nemo-prod",
            region="asia-northeast3",
            instance_group_manager="nemo-frontend-mig",
            size=0,
        )
    )
    sandbox.advance(10)
    assert http.get(f"{sandbox.url}/stack/prod/frontend/").status_code == 503
    summary = http.get(f"{sandbox.url}/stack/").json()
    assert summary["prod"]["frontend"]["up"] is False
    assert summary["prod"]["backend"]["up"] is True


def test_an_unhealthy_image_on_the_dev_vm(sandbox, http):
    sandbox.inject_fault("unhealthy", image="nemo-dev/registry/ai-server@")
    assert http.get(f"{sandbox.url}/stack/dev/ai-server/health").status_code == 503
    assert http.get(f"{sandbox.url}/stack/dev/ai-server/metrics").status_code == 503
    assert http.get(f"{sandbox.url}/stack/dev/backend/actuator/health").status_code == 200
