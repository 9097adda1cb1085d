"""A small burst at the real webhook over HTTP, many at once: the correctness half of
bench/webhook_burst.py (docs/benchmarks.md). 200 deliveries (10% re-sent, 5% forged, 5% not JSON)
from 10 threads against the live server, then each accepted delivery resolved against the
sandbox registry as the `resolve_delivery` task does."""

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from django.db import connection

from github.intake import resolve_delivery
from github.models import WebhookDelivery

from . import burst
from .payloads import SECRET

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def webhook_url(live_server, seed_topology, sandbox_settings, settings):
    if connection.vendor == "sqlite":
        pytest.skip(
            "SQLite takes one writer at a time: concurrent deliveries only queue on its lock, "
            "so the races this test is for (the same id at once) cannot happen there"
        )
    settings.GANTRY_GITHUB_WEBHOOK_SECRET = SECRET
    return f"{live_server.url}/webhooks/github/"


def send_all(url, deliveries, threads=10):
    with httpx.Client(timeout=30) as client:

        def send(delivery):
            response = client.post(url, content=delivery.body, headers=delivery.headers())
            return response.status_code, response.json().get("outcome")

        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(send, deliveries))


def test_a_burst_stores_each_real_delivery_once_and_nothing_of_the_bad_ones(webhook_url, sandbox):
    deliveries = burst.plan(200, SECRET, seed=8)
    assert burst.count(deliveries) == {
        "valid": 160,
        "duplicate": 20,
        "bad_signature": 10,
        "malformed": 10,
    }
    for delivery in deliveries:
        if delivery.kind == burst.VALID:
            sandbox.world.registry.push_new(delivery.image)

    answers = send_all(webhook_url, deliveries)

    assert burst.check_answers(deliveries, answers) == []
    assert burst.check_database(deliveries, resolved=False) == []
    for pk in WebhookDelivery.objects.filter(outcome="accepted").values_list("pk", flat=True):
        resolve_delivery(pk)
    assert burst.check_database(deliveries, resolved=True) == []


def test_the_same_delivery_many_times_at_once_is_accepted_once(webhook_url, sandbox):
    original = next(d for d in burst.plan(20, SECRET, seed=3) if d.kind == burst.VALID)
    sandbox.world.registry.push_new(original.image)

    answers = send_all(webhook_url, [original] * 20)

    assert sorted(status for status, _ in answers) == [200] * 19 + [202]
    assert WebhookDelivery.objects.get().guid == original.guid
    resolve_delivery(WebhookDelivery.objects.get().pk)
    resolve_delivery(WebhookDelivery.objects.get().pk)  # a task run twice changes nothing
    delivery = WebhookDelivery.objects.get()
    assert delivery.outcome == WebhookDelivery.Outcome.RELEASED
    assert delivery.releases.count() == 1
