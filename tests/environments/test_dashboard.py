import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from deployments.models import Deployment
from environments import dashboard, monitoring, stats
from environments.models import Component, Environment, ProbeSample, StatSample

pytestmark = pytest.mark.django_db


@pytest.fixture
def prod(seed_topology, http_stack, patient_probes, settings):
    settings.GANTRY_STACK_URL = http_stack.url
    settings.GANTRY_PROBE_TARGETS = "prod/redis=127.0.0.1:1"  # a Redis that is not there
    settings.GANTRY_STATUS_CONFIRMATIONS = 2
    routes = http_stack.routes
    routes["/prod/frontend/"] = (200, b"ok", 0)
    routes["/prod/backend/actuator/health"] = (200, {"status": "UP"}, 0)
    routes["/prod/ai-server/health"] = (200, {"status": "ok"}, 0)
    routes["/prod/chromadb/api/v2/heartbeat"] = (200, {"nanosecond heartbeat": 1}, 0)
    routes["/prod/ai-server/metrics"] = (
        200,
        b"# TYPE nemo_ai_requests_total counter\nnemo_ai_requests_total 3\n",
        0,
    )
    return Environment.objects.get(name="prod"), routes


def tile_status(page, component):
    match = re.search(rf'<article class="tile status-(\w+)" id="tile-prod-{component}"', page)
    return match.group(1)


def sweep(environment):
    monitoring.sweep(environment.pk)
    stats.collect(environment.pk)


def test_tiles_turn_red_and_green_with_the_component(prod, client_as):
    environment, routes = prod
    client = client_as("viewer")
    url = reverse("environment", args=["prod"])
    page = client.get(url).content.decode()
    assert tile_status(page, "backend") == "unknown" and "Never probed yet." in page
    sweep(environment)
    assert tile_status(client.get(url).content.decode(), "backend") == "up"
    routes["/prod/backend/actuator/health"] = (503, {"status": "DOWN"}, 0)
    sweep(environment)
    sweep(environment)
    page = client.get(url).content.decode()
    assert tile_status(page, "backend") == "down"
    assert "HTTP 503, expected 200" in page
    assert "up → " in page or "up →" in page
    routes["/prod/backend/actuator/health"] = (200, {"status": "UP"}, 0)
    sweep(environment)
    sweep(environment)
    assert tile_status(client.get(url).content.decode(), "backend") == "up"


def test_broken_states_are_honest(prod, client_as):
    environment, _ = prod
    sweep(environment)
    page = client_as("viewer").get(reverse("environment", args=["prod"])).content.decode()
    assert "Redis unreachable: ConnectionError" in page
    assert "metric nemo_ai_cache_hits_total missing" in page
    assert tile_status(page, "mysql") == "unknown"
    assert "no address to probe (set GANTRY_PROBE_TARGETS)" in page


def test_sections_follow_the_vpcs(prod, client_as):
    page = client_as("viewer").get(reverse("environment", args=["prod"])).content.decode()
    service = page.index("<h2>Service VPC (VPC1)</h2>")
    ai = page.index("<h2>AI VPC (VPC2)</h2>")
    assert service < page.index('id="tile-prod-redis"') < ai < page.index('id="tile-prod-chromadb"')
    dev = client_as("viewer", "v2").get(reverse("environment", args=["dev"])).content.decode()
    assert "<h2>Service tier</h2>" in dev and "<h2>AI tier</h2>" in dev


def test_htmx_gets_only_the_tiles(prod, client_as):
    response = client_as("viewer").get(
        reverse("environment", args=["prod"]), HTTP_HX_REQUEST="true"
    )
    assert response.content.decode().startswith('<div id="tiles-prod"')


def queries_for(client, url):
    """Queries of the page drawn, not served from what the last request drew (portal/polls)."""
    from django.core.cache import cache

    cache.clear()
    with CaptureQueriesContext(connection) as context:
        assert client.get(url).status_code == 200
    return len(context)


def test_query_count_does_not_grow_with_components(prod, client_as):
    environment, _ = prod
    client = client_as("viewer")
    sweep(environment)
    url = reverse("environment", args=["prod"])
    client.get(url)
    with_6 = queries_for(client, url)
    template = Component.objects.get(environment=environment, name="frontend")
    for n in range(54):
        template.pk, template.name = None, f"extra-{n}"
        template.save()
    for n in range(54):
        routes = prod[1]
        routes[f"/prod/extra-{n}/"] = (200, b"ok", 0)
    sweep(environment)
    page = client.get(url).content.decode()
    assert page.count('<article class="tile') == 60
    assert queries_for(client, url) == with_6
    assert queries_for(client, reverse("home")) == queries_for(client, reverse("home"))


def test_component_page_shows_history(prod, client_as):
    environment, _ = prod
    sweep(environment)
    page = client_as("viewer").get(reverse("component", args=["prod", "backend"])).content.decode()
    assert "Latency, last 24 h" in page and '<circle class="line"' in page  # one reading so far
    assert "unknown → " in page


@pytest.mark.parametrize(
    ("minutes", "span"), [(12, "12 min"), (180, "3 h"), (24 * 60 - 1, "24 h")], ids=str
)
def test_uptime_says_over_how_long_it_was_measured(seed_topology, minutes, span):
    """A few minutes of probes must not read as "100.0 % up 24 h" (issue 14, item 4)."""
    now = timezone.now()
    backend = Component.objects.get(environment__name="prod", name="backend")
    ProbeSample.objects.bulk_create(
        ProbeSample(component=backend, at=now - timedelta(minutes=m), status=status)
        for m, status in [(minutes, "up"), (1, "down"), (0, "unknown")]
    )
    view = dashboard.build(Environment.objects.get(name="prod"), now=now)
    tile = next(t for t in view.tiles if t.component == backend)
    assert (tile.uptime, tile.uptime_span) == (50.0, span)


def test_the_header_time_moves_with_the_tiles_and_the_deployments_are_split(
    prod, client_as, make_deployment
):
    """The "last probed" time sits inside the part HTMX refreshes; "Deploying now" lists what
    rolls out, "Waiting" what waits for approval or its turn (issue 14, item 4)."""
    rolling = make_deployment("prod", "backend", state="rolling_out")
    waiting = make_deployment("prod", "frontend", state="pending_approval")
    part = client_as("viewer").get(
        reverse("environment", args=["prod"]), headers={"HX-Request": "true"}
    )
    html = part.content.decode()
    assert 'id="swept-prod"' in html
    deploying, rest = html.split("<h2>Waiting</h2>")
    assert f"tiles-deploying-{rolling.pk}" in deploying and f"tiles-deploying-{waiting.pk}" in rest
    assert f"tiles-deploying-{waiting.pk}" not in deploying


def test_the_instance_group_panel_says_when_its_reading_predates_the_deployment(
    seed_topology, client_as, make_deployment
):
    backend = Component.objects.get(environment__name="prod", name="backend")
    read_at = timezone.now() - timedelta(minutes=2)
    StatSample.objects.create(
        component=backend, kind="mig", at=read_at, ok=True, data={"groups": []}
    )
    deployment = make_deployment("prod", "backend", state="verifying")
    viewer = client_as("viewer")
    page = viewer.get(reverse("environment", args=["prod"])).content.decode()
    assert f'id="mig-stale-{deployment.pk}"' in page
    Deployment.objects.filter(pk=deployment.pk).update(state_changed_at=read_at - timedelta(1))
    page = viewer.get(reverse("environment", args=["prod"])).content.decode()
    assert f'id="mig-stale-{deployment.pk}"' not in page


def test_the_24_h_history_remembers_settled_buckets_and_reads_only_the_filling_ones(
    seed_topology, django_assert_num_queries
):
    """Buckets sit on the clock, so a settled one never changes: it is read once, and later
    drawings read the last buckets only (the component page drew a day of samples each sweep)."""
    backend = Component.objects.get(environment__name="prod", name="backend")
    now = timezone.now().replace(minute=40, second=0, microsecond=0)  # 10 min into a bucket
    ProbeSample.objects.bulk_create(
        ProbeSample(component=backend, at=now - timedelta(minutes=m), status=status, latency_ms=ms)
        for m, status, ms in [
            (24 * 60 + 30, "up", 1.0),
            (600, "up", 10.0),
            (601, "down", None),
            (61, "up", 30.0),
            (9, "up", 20.0),
            (1, "degraded", 40.0),
        ]
    )
    direct = dashboard._history(backend, 24, 96, now)
    assert dashboard._history(backend, 24, 96, now, remember=True) == direct
    assert len(direct["latency"]) == 96 and direct["start"] == now - timedelta(hours=23, minutes=55)
    assert direct["latency"][-1] == 30.0 and direct["statuses"][-1] == "degraded"
    assert [v for v in direct["latency"] if v] == [10.0, 30.0, 30.0]  # 24 h 30 min ago: out
    assert direct["statuses"].count("down") == 1 and direct["statuses"].count("none") == 93

    # A settled bucket is not read again: a sample slipped into one (no sweep would) is not seen,
    # while one in the filling bucket is.
    ProbeSample.objects.bulk_create(
        [
            ProbeSample(component=backend, at=now - timedelta(hours=3), status="down"),
            ProbeSample(component=backend, at=now, status="up", latency_ms=60.0),
        ]
    )
    with django_assert_num_queries(1):
        again = dashboard._history(backend, 24, 96, now, remember=True)
    assert again["statuses"].count("down") == 1 and again["latency"][-1] == 40.0
    assert dashboard._history(backend, 24, 96, now)["statuses"].count("down") == 2
