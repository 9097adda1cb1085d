"""The dashboard against the sandbox's monitored stack: tiles follow what the sandbox serves, and
the LLM panel shows what the sandbox exported."""

import re

import httpx
import pytest
from django.urls import reverse
from prometheus_client.parser import text_string_to_metric_families

from environments import monitoring, stats
from environments.models import Environment, StatSample

pytestmark = pytest.mark.django_db


@pytest.fixture
def stack(seed_topology, sandbox_factory, patient_probes, settings):
    """A sandbox whose clock only moves when the test says so."""
    box = sandbox_factory(speed=0.0)
    for name, value in box.urls().items():
        setattr(settings, name, value)
    settings.GANTRY_STATUS_CONFIRMATIONS = 2
    return box


def tile_status(page, environment, component):
    pattern = rf'<article class="tile status-(\w+)" id="tile-{environment}-{component}"'
    return re.search(pattern, page).group(1)


def dashboard(client, environment="prod"):
    return client.get(reverse("environment", args=[environment])).content.decode()


def sweep(environment):
    monitoring.sweep(environment.pk)
    stats.collect(environment.pk)


def test_tiles_turn_red_when_the_sandbox_takes_a_component_down_and_green_again(stack, client_as):
    prod = Environment.objects.get(name="prod")
    client = client_as("viewer")
    sweep(prod)
    page = dashboard(client)
    for name in ("frontend", "backend", "ai-server", "chromadb"):
        assert tile_status(page, "prod", name) == "up", name
    stack.inject_fault("down", environment="prod", component="backend")
    sweep(prod)
    assert tile_status(dashboard(client), "prod", "backend") == "up"  # one result is no alarm
    sweep(prod)
    page = dashboard(client)
    assert tile_status(page, "prod", "backend") == "down"
    assert tile_status(page, "prod", "frontend") == "up"
    assert "HTTP 503, expected 200" in page
    stack.clear_faults()
    sweep(prod)
    sweep(prod)
    page = dashboard(client)
    assert tile_status(page, "prod", "backend") == "up"
    events = prod.components.get(name="backend").events.order_by("at", "id")
    assert [(e.previous, e.status) for e in events] == [
        ("unknown", "up"),
        ("up", "down"),
        ("down", "up"),
    ]


def exported(stack):
    """The sandbox's AI-server metrics, parsed as a Prometheus client would."""
    text = httpx.get(f"{stack.url}/stack/prod/ai-server/metrics").text
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            values[key] = sample.value
    return values


def total(values, name, **labels):
    return sum(
        v
        for (n, sample_labels), v in values.items()
        if n == name and all(dict(sample_labels).get(k) == want for k, want in labels.items())
    )


def test_llm_figures_match_what_the_sandbox_exported(stack, client_as):
    prod = Environment.objects.get(name="prod")
    before = exported(stack)
    stats.collect(prod.pk)
    stack.advance(600)  # ten simulated minutes of traffic
    after = exported(stack)
    stats.collect(prod.pk)
    first, second = StatSample.objects.filter(kind="llm").order_by("at", "id")
    figures = second.data["figures"]

    def delta(name, **labels):
        return total(after, name, **labels) - total(before, name, **labels)

    requests = delta("nemo_ai_requests_total")
    hits, misses = delta("nemo_ai_cache_hits_total"), delta("nemo_ai_cache_misses_total")
    errors = sum(delta("nemo_ai_requests_total", status=s) for s in ("500", "502", "503", "504"))
    assert requests > 1000
    assert figures["cache_hit_ratio"] == round(100 * hits / (hits + misses), 1)
    assert figures["error_pct"] == round(100 * errors / requests, 1)
    seconds = (second.at - first.at).total_seconds()
    assert figures["requests_per_sec"] == round(requests / seconds, 3)
    tokens = delta("nemo_ai_generated_tokens_total")
    assert figures["tokens_per_sec"] == round(tokens / seconds, 3)
    # The sandbox puts 38% of inferences under 0.5 s and 72% under 1 s: the median lies between.
    assert 500 < figures["p50_ms"] < 1000
    assert 1000 < figures["p95_ms"] < 5000
    page = dashboard(client_as("viewer"))
    tile = page[page.index('id="tile-prod-ai-server"') :]
    tile = tile[: tile.index("</article>")]
    assert f"{figures['cache_hit_ratio']}%" in tile
    assert f"{figures['p50_ms']} / {figures['p95_ms']} ms" in tile
