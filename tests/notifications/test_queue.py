"""The "notifications" queue: routing, and a real Redis broker (db 11 unless
GANTRY_TEST_NOTIFY_REDIS_URL says otherwise)."""

import base64
import json
import os
import time

import pytest
import redis
from celery import Celery
from celery.contrib.testing.worker import start_worker
from django.conf import settings
from django.db import connection

from deployments.models import Deployment
from notifications.models import Notification
from notifications.tasks import deliver, redeliver_stale
from portal.celery import app as celery_app

S = Deployment.State
REDIS_URL = os.environ.get("GANTRY_TEST_NOTIFY_REDIS_URL", "redis://127.0.0.1:6379/11")
KEYS = ["notifications", "celery", "_kombu.binding.notifications", "_kombu.binding.celery"]


def test_deliveries_are_routed_to_their_own_queue():
    for task in (deliver, redeliver_stale):
        assert celery_app.amqp.router.route({}, task.name)["queue"].name == "notifications"
        assert task.acks_late
    worker = next(
        line
        for line in (settings.BASE_DIR / "Procfile.demo").read_text().splitlines()
        if line.startswith("worker:")
    )
    assert "-Q celery,notifications" in worker  # the demo's worker listens to it


@pytest.fixture
def broker():
    """Gantry's Celery settings on a real Redis, made the current app so the code under test
    enqueues there; the queue keys are emptied before and after."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis at {REDIS_URL} unreachable ({exc})")
    client.delete(*KEYS)
    app = Celery("gantry-notifications-test")
    app.config_from_object("django.conf:settings", namespace="CELERY")
    app.conf.broker_url = REDIS_URL
    app.conf.broker_transport_options = {}
    app.set_current()
    try:
        yield app, client
    finally:
        celery_app.set_current()
        app.close()
        client.delete(*KEYS)
        client.close()


@pytest.mark.redis
@pytest.mark.django_db
def test_a_new_notification_lands_on_the_notifications_list_in_redis(
    broker, make_channel, make_deployment, django_capture_on_commit_callbacks
):
    _, client = broker
    make_channel("webhook")
    with django_capture_on_commit_callbacks(execute=True):
        make_deployment("prod", "backend", state=S.PROMOTING).transition(S.FAILED)
    notification = Notification.objects.get()
    assert client.llen("notifications") == 1
    assert client.llen("celery") == 0
    message = json.loads(client.lindex("notifications", 0))
    assert message["headers"]["task"] == "notifications.tasks.deliver"
    args, kwargs, _ = json.loads(base64.b64decode(message["body"]))
    assert (args, kwargs) == ([notification.pk], {})


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_a_worker_on_redis_delivers_from_the_notifications_queue(
    broker, make_channel, make_deployment, receiver
):
    if connection.vendor == "sqlite":
        pytest.skip("a worker thread beside the test needs a server database (PostgreSQL/MySQL)")
    app, client = broker
    make_channel("slack")
    with start_worker(
        app, pool="solo", queues=["notifications"], perform_ping_check=False, shutdown_timeout=10
    ):
        make_deployment("prod", "backend", state=S.VERIFYING).transition(S.SUCCEEDED)
        notification = Notification.objects.get()
        deadline = time.monotonic() + 15
        while notification.state == Notification.State.PENDING and time.monotonic() < deadline:
            time.sleep(0.05)
            notification.refresh_from_db()
    assert notification.state == Notification.State.SENT, notification.last_error
    assert len(receiver.requests) == 1
    assert client.llen("notifications") == 0
