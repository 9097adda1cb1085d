"""The heartbeat task through a real broker and a real worker (embedded SQLite, then Redis)."""

import time

import pytest
from celery import Celery
from celery.contrib.testing.worker import start_worker
from django.core.cache import cache

from portal import broker
from portal.celery import app as celery_app
from portal.health import HEARTBEAT_KEY
from portal.tasks import heartbeat


@pytest.fixture
def app_on():
    """A Celery app configured like Gantry's but on the broker a test names."""
    apps = []

    def make(url, **options):
        app = Celery("gantry-test", set_as_current=False)
        app.config_from_object("django.conf:settings", namespace="CELERY")
        app.conf.broker_url = url
        app.conf.broker_transport_options = options
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.close()


# How long a worker may take to start and run one task before the test calls it lost. Only a
# bound against hanging: the suite runs three databases side by side on two cores, and a busy
# machine took longer than the 10 s this used to be (the embedded broker polls, too).
WORKER_PATIENCE = 120


def run_heartbeat_through_worker(app):
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        app.tasks[heartbeat.name].delay()
        deadline = time.monotonic() + WORKER_PATIENCE
        while not cache.get(HEARTBEAT_KEY) and time.monotonic() < deadline:
            time.sleep(0.05)
    return cache.get(HEARTBEAT_KEY)


def test_heartbeat_runs_on_the_embedded_broker(tmp_path, app_on):
    url, options = broker.embedded(tmp_path)
    app = app_on(url, **options)
    assert cache.get(HEARTBEAT_KEY) is None
    assert run_heartbeat_through_worker(app)
    with app.connection_for_write() as connection:  # consumed and acknowledged
        assert connection.default_channel.queue_declare(queue="celery").message_count == 0


def test_heartbeat_runs_on_redis(redis_url, app_on):
    assert run_heartbeat_through_worker(app_on(redis_url))


def test_beat_schedules_the_heartbeat():
    assert celery_app.conf.beat_schedule["heartbeat"]["task"] == "portal.tasks.heartbeat"
    assert heartbeat.acks_late
