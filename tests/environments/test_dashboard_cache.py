"""Viewers share the dashboards' readings until the next sweep; what people change is fresh."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from environments import monitoring
from environments.models import Environment, ProbeSample

pytestmark = pytest.mark.django_db


@pytest.fixture
def shared(settings, prod_stack):
    settings.GANTRY_DASHBOARD_CACHE_SECONDS = 30
    prod, routes = prod_stack
    monitoring.sweep(prod.pk)
    return prod, routes


def page(client, **headers):
    return client.get(reverse("environment", args=["prod"]), **headers)


def test_a_second_viewer_gets_the_readings_without_reading_them_again(client_as, shared):
    client = client_as("viewer")
    with CaptureQueriesContext(connection) as first:
        page(client, HTTP_HX_REQUEST="true")
    with CaptureQueriesContext(connection) as second:
        body = page(client, HTTP_HX_REQUEST="true").content.decode()
    assert len(second) < len(first) - 4
    read_again = [q["sql"] for q in second if "environments_probesample" in q["sql"]]
    assert read_again == []
    assert body.count('class="tile ') == 6


def test_the_next_sweep_shows_at_once(client_as, shared):
    prod, routes = shared
    client = client_as("viewer")
    assert "status-down" not in page(client).content.decode()
    routes["/prod/frontend/"] = (503, b"no", 0)
    for _ in range(3):  # GANTRY_STATUS_CONFIRMATIONS results make a verdict
        monitoring.sweep(prod.pk)
    assert Environment.objects.get(pk=prod.pk).probed_at > timezone.now().replace(year=2000)
    assert "status-down" in page(client).content.decode()


def test_a_new_deployment_shows_at_once_though_the_readings_are_shared(
    client_as, shared, make_deployment
):
    client = client_as("viewer")
    assert "Waiting for approval" not in page(client).content.decode()
    deployment = make_deployment("prod", "frontend", state="pending_approval")
    body = page(client).content.decode()
    assert "Waiting for approval" in body and f"#{deployment.pk}" in body


def test_readings_written_without_a_stamp_wait_for_the_cache_to_lapse(
    client_as, shared, settings, monkeypatch
):
    """The cost of sharing: samples stored without stamping `readings_at` (every writer of
    Gantry's stamps it) show once the drawn tiles and the shared readings have lapsed."""
    from portal import polls

    monkeypatch.setattr(polls, "KEEP_SECONDS", 0)  # the drawn tiles lapse at once
    client = client_as("viewer")
    before = page(client).content.decode()
    frontend = shared[0].components.get(name="frontend")
    ProbeSample.objects.filter(component=frontend).update(latency_ms=987654)
    assert "987654" not in page(client).content.decode() and before  # the readings are shared
    settings.GANTRY_DASHBOARD_CACHE_SECONDS = 0
    assert "987654" in page(client).content.decode()


def test_readings_a_collector_stamps_show_at_once(client_as, shared):
    client = client_as("viewer")
    page(client)
    frontend = shared[0].components.get(name="frontend")
    ProbeSample.objects.filter(component=frontend).update(latency_ms=987654)
    Environment.readings_stored(shared[0].pk)
    assert "987654" in page(client).content.decode()


def test_while_one_viewer_rebuilds_the_others_get_the_older_readings(
    client_as, shared, settings, monkeypatch
):
    from django.core.cache import cache

    from environments.dashboard import readings_key
    from portal import polls

    monkeypatch.setattr(polls, "KEEP_SECONDS", 0)  # draw every time: this is about the readings

    client = client_as("viewer")
    page(client)
    prod = Environment.objects.get(pk=shared[0].pk)
    key = readings_key(prod)
    made_at, value = cache.get(key)
    cache.set(key, (made_at - 60, value))  # lapsed
    frontend = prod.components.get(name="frontend")
    ProbeSample.objects.filter(component=frontend).update(latency_ms=987654)
    cache.add(f"{key}:making", 1)  # another request is making it
    assert "987654" not in page(client).content.decode()
    cache.delete(f"{key}:making")
    assert "987654" in page(client).content.decode()  # this one makes it
    assert cache.get(f"{key}:making") is None
