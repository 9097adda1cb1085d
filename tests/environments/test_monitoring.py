from datetime import timedelta

import pytest
from django.utils import timezone

from environments import monitoring
from environments.models import (
    ComponentHealth,
    HealthEvent,
    ProbeRollup,
    ProbeSample,
    Status,
)

pytestmark = pytest.mark.django_db


def health(name):
    return ComponentHealth.objects.get(component__environment__name="prod", component__name=name)


def latest(name):
    return ProbeSample.objects.filter(component__name=name, component__environment__name="prod")[0]


def test_a_sweep_stores_a_sample_per_component_and_a_first_verdict(prod_stack):
    prod, _ = prod_stack
    events = monitoring.sweep(prod.pk)
    assert ProbeSample.objects.count() == 6
    statuses = dict(ComponentHealth.objects.values_list("component__name", "status"))
    assert statuses == {
        "frontend": "up",
        "backend": "up",
        "ai-server": "up",
        "chromadb": "up",
        "mysql": "unknown",
        "redis": "unknown",
    }
    assert len(events) == 4  # unknown -> up for the four HTTP components
    prod.refresh_from_db()
    assert prod.probed_at is not None


def test_status_changes_only_after_consecutive_confirmations(prod_stack):
    prod, routes = prod_stack
    monitoring.sweep(prod.pk)
    routes["/prod/backend/actuator/health"] = (503, {"status": "DOWN"}, 0)
    monitoring.sweep(prod.pk)
    monitoring.sweep(prod.pk)
    assert health("backend").status == Status.UP  # two bad results are not yet an alarm
    assert latest("backend").status == Status.DOWN
    events = monitoring.sweep(prod.pk)
    assert [(e.component.name, e.previous, e.status) for e in events] == [("backend", "up", "down")]
    assert latest("backend").detail == "HTTP 503, expected 200"
    routes["/prod/backend/actuator/health"] = (200, {"status": "UP"}, 0)
    monitoring.sweep(prod.pk)
    routes["/prod/backend/actuator/health"] = (503, {"status": "DOWN"}, 0)
    monitoring.sweep(prod.pk)  # a lone good result between bad ones: no recovery
    assert health("backend").status == Status.DOWN
    routes["/prod/backend/actuator/health"] = (200, {"status": "UP"}, 0)
    for _ in range(3):
        monitoring.sweep(prod.pk)
    assert health("backend").status == Status.UP
    changes = HealthEvent.objects.filter(component__name="backend").order_by("at", "id")
    assert [(e.previous, e.status) for e in changes] == [
        ("unknown", "up"),
        ("up", "down"),
        ("down", "up"),
    ]


def test_slow_answers_are_degraded(prod_stack, settings):
    prod, routes = prod_stack
    settings.GANTRY_PROBE_SLOW_MS = 50
    routes["/prod/frontend/"] = (200, b"ok", 0.15)
    monitoring.sweep(prod.pk)
    assert health("frontend").status == Status.DEGRADED


def test_prune_rolls_up_old_samples_once(prod_stack):
    prod, _ = prod_stack
    monitoring.sweep(prod.pk)
    now = timezone.now()
    old_hour = (now - timedelta(hours=72)).replace(minute=10, second=0, microsecond=0)
    component = prod.components.get(name="frontend")
    for minute, status in ((0, "up"), (1, "up"), (2, "down"), (3, "up")):
        ProbeSample.objects.create(
            component=component,
            at=old_hour + timedelta(minutes=minute),
            status=status,
            latency_ms=10.0 * (minute + 1),
        )
    result = monitoring.prune(now)
    assert result == {"rolled_up_hours": 1, "deleted_samples": 4}
    rollup = ProbeRollup.objects.get()
    assert (rollup.samples, rollup.up, rollup.latency_avg_ms, rollup.latency_max_ms) == (
        4,
        3,
        25.0,
        40.0,
    )
    assert ProbeSample.objects.count() == 6  # the fresh sweep stays
    assert monitoring.prune(now) == {"rolled_up_hours": 0, "deleted_samples": 0}
    assert ProbeRollup.objects.count() == 1


def test_uptime_over_24_hours(prod_stack):
    prod, _ = prod_stack
    component = prod.components.get(name="backend")
    now = timezone.now()
    for i, status in enumerate(["up", "up", "up", "down"]):
        ProbeSample.objects.create(component=component, at=now - timedelta(hours=i), status=status)
    ProbeSample.objects.create(component=component, at=now - timedelta(hours=30), status="down")
    ProbeSample.objects.create(component=component, at=now - timedelta(hours=5), status="unknown")
    frontend, mysql = prod.components.get(name="frontend"), prod.components.get(name="mysql")
    ProbeSample.objects.create(component=mysql, at=now, status="unknown")  # nothing to probe
    assert monitoring.uptime([component.pk, frontend.pk, mysql.pk]) == {
        component.pk: 75.0,
        frontend.pk: None,
        mysql.pk: None,
    }


def test_due_environments_follow_their_interval(prod_stack):
    prod, _ = prod_stack
    assert {e.name for e in monitoring.due_environments()} == {"prod", "dev"}
    monitoring.sweep(prod.pk)
    assert {e.name for e in monitoring.due_environments()} == {"dev"}
    later = timezone.now() + timedelta(seconds=prod.probe_interval)
    assert {e.name for e in monitoring.due_environments(later)} == {"prod", "dev"}


def test_a_sweep_of_an_environment_deleted_since_it_was_queued_does_nothing(seed_topology):
    assert monitoring.sweep(10**9) == []
    assert ProbeSample.objects.count() == 0
