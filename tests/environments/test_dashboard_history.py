"""A tile reads only the rows it shows: its last HISTORY samples and figures, and its latest
instance-group reading, however many the hour holds (docs/benchmarks.md, dashboards under load)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from environments import dashboard
from environments.models import Component, Environment, ProbeSample, StatSample

pytestmark = pytest.mark.django_db
MORE = dashboard.HISTORY + 25


@pytest.fixture
def busy_hour(seed_topology):
    """prod's backend and redis with a sample, a Redis figure and a MIG reading every 20 s."""
    now = timezone.now()
    backend = Component.objects.get(environment__name="prod", name="backend")
    redis = Component.objects.get(environment__name="prod", name="redis")
    moments = [now - timedelta(seconds=20 * n) for n in range(MORE, 0, -1)]
    ProbeSample.objects.bulk_create(
        ProbeSample(component=backend, at=at, status="up", latency_ms=n)
        for n, at in enumerate(moments)
    )
    ProbeSample.objects.create(  # older than the hour: never on a tile
        component=backend, at=now - timedelta(hours=2), status="down", latency_ms=999
    )
    StatSample.objects.bulk_create(
        StatSample(component=redis, kind="redis", at=at, data={"figures": {"keys": n}})
        for n, at in enumerate(moments)
    )
    StatSample.objects.bulk_create(
        StatSample(component=backend, kind="mig", at=at, data={"groups": [], "n": n})
        for n, at in enumerate(moments)
    )
    return Environment.objects.get(name="prod")


def test_a_tile_holds_its_newest_rows_oldest_first(busy_hour, django_assert_max_num_queries):
    # components, uptime, samples, figures, events, networks, freeze windows, deployments
    with django_assert_max_num_queries(8):
        view = dashboard.build(busy_hour)
    tiles = {tile.component.name: tile for tile in view.tiles}
    newest = list(range(MORE - dashboard.HISTORY, MORE))
    backend, redis = tiles["backend"], tiles["redis"]
    assert backend.latencies == newest
    assert backend.statuses == ["up"] * dashboard.HISTORY
    assert backend.last["latency_ms"] == MORE - 1
    assert backend.mig.data["n"] == MORE - 1
    assert backend.stat is None and backend.stat_history == []
    assert redis.history("keys") == newest
    assert redis.stat.data["figures"]["keys"] == MORE - 1
    assert redis.latencies == [] and redis.mig is None
