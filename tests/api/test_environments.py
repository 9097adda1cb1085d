"""Environments and their health, read from the rows the probe and stats workers stored."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from deployments.models import Deployment
from environments.models import Component, ComponentHealth, ProbeSample, StatSample

pytestmark = pytest.mark.django_db


def test_the_environments_in_topology_order(api, seed_topology, token_for):
    answer = api("GET", "/api/environments/", token_for("viewer")).json()
    assert answer["count"] == 2
    prod = next(e for e in answer["items"] if e["name"] == "prod")
    assert prod["requires_approval"] is True and prod["approvals_required"] == 1
    assert prod["branch"] == "main" and len(prod["zones"]) == 2
    assert prod["health_url"] == "http://testserver/api/environments/prod/health"


@pytest.fixture
def stored(seed_topology):
    """What the workers would have stored for prod: a backend that went down, Redis figures."""
    now = timezone.now()
    backend = Component.objects.get(environment__name="prod", name="backend")
    redis = Component.objects.get(environment__name="prod", name="redis")
    ComponentHealth.objects.create(
        component=backend, status="down", since=now - timedelta(minutes=3)
    )
    ComponentHealth.objects.create(component=redis, status="up", since=now - timedelta(hours=2))
    ProbeSample.objects.bulk_create(
        [
            ProbeSample(
                component=backend, at=now - timedelta(minutes=5), status="up", latency_ms=40
            ),
            ProbeSample(
                component=backend, at=now - timedelta(minutes=1), status="down", detail="503"
            ),
            ProbeSample(component=redis, at=now - timedelta(minutes=1), status="up", latency_ms=2),
        ]
    )
    StatSample.objects.create(
        component=redis,
        kind=StatSample.Kind.REDIS,
        at=now - timedelta(minutes=1),
        data={"figures": {"hit_ratio": 0.93, "keys": 120}, "keyspace_hits": 5},
    )
    return backend, redis


def test_health_per_component(api, stored, token_for, make_deployment):
    deployment = make_deployment("prod", "backend", state=Deployment.State.ROLLING_OUT)
    response = api("GET", "/api/environments/prod/health", token_for("viewer"))
    assert response.status_code == 200
    answer = response.json()
    components = {c["name"]: c for c in answer["components"]}
    assert len(components) == Component.objects.filter(environment__name="prod").count()
    backend, redis = components["backend"], components["redis"]
    assert backend["status"] == "down" and backend["since"]
    assert backend["last_probe"]["status"] == "down" and backend["last_probe"]["detail"] == "503"
    assert backend["uptime_24h"] == 50.0
    assert backend["deployment"] == {"id": deployment.pk, "state": "rolling_out"}
    assert redis["last_probe"]["latency_ms"] == 2
    assert redis["stats"]["kind"] == "redis"
    assert redis["stats"]["figures"] == {"hit_ratio": 0.93, "keys": 120}  # figures, not counters
    never = components["frontend"]
    assert never["status"] == "unknown" and never["last_probe"] is None and never["stats"] is None
    assert answer["summary"] == {"down": 1, "up": 1, "unknown": len(components) - 2}


def test_health_queries_do_not_grow_with_components(
    api, stored, token_for, django_assert_num_queries
):
    raw = token_for("viewer")
    api("GET", "/api/environments/prod/health", raw)  # the token's first use is stamped once
    with CaptureQueriesContext(connection) as few:
        api("GET", "/api/environments/prod/health", raw)
    template = Component.objects.get(environment__name="prod", name="mysql")
    for n in range(20):
        template.pk, template.name, template.port = None, f"extra-{n}", 10000 + n
        template.save()
    with django_assert_num_queries(len(few)):
        answer = api("GET", "/api/environments/prod/health", raw).json()
    assert len(answer["components"]) > 20


def test_an_unknown_environment_is_a_404(api, seed_topology, token_for):
    raw = token_for("viewer")
    response = api("GET", "/api/environments/staging/health", raw)
    assert response.status_code == 404 and response.json() == {"error": "no environment 'staging'"}
    bad = api("GET", "/api/environments/pr%00od/health", raw)
    assert bad.status_code == 400 and bad.json()["field"] == "name"
