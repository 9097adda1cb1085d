"""The outages' fixtures: a Redis of the test's own for Gantry's cache and broker, and a TCP
proxy in front of the database server (tests/outages/harness.py)."""

import pytest
from celery import Celery
from django.db import connection

from portal.celery import app as celery_app
from portal.settings import redis_cache
from tests.github.payloads import SECRET

from .harness import RedisServer, TcpProxy


@pytest.fixture
def redis_server(tmp_path):
    try:
        server = RedisServer(tmp_path).start()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    yield server
    server.stop()


@pytest.fixture
def on_own_redis(redis_server, settings, seed_topology):
    """Gantry's cache and Celery broker on the test's Redis, configured as settings.py does for
    REDIS_URL, and made the current Celery app so the code under test enqueues there."""
    settings.GANTRY_GITHUB_WEBHOOK_SECRET = SECRET
    settings.REDIS_URL = redis_server.url
    settings.CACHES = {"default": redis_cache(redis_server.url)}
    app = Celery("gantry-outage-test")
    app.config_from_object("django.conf:settings", namespace="CELERY")
    app.conf.broker_url = redis_server.url
    app.conf.broker_transport_options = settings.REDIS_BROKER_TRANSPORT_OPTIONS
    app.set_current()
    try:
        yield app
    finally:
        celery_app.set_current()
        app.close()


@pytest.fixture
def database_proxy():
    """The test's own connections go to the database server through a TcpProxy."""
    if connection.vendor == "sqlite":
        pytest.skip("the SQLite test database is a file of this process: it cannot go away")
    original = dict(connection.settings_dict)
    proxy = TcpProxy(original["HOST"] or "127.0.0.1", int(original["PORT"])).restore()
    connection.close()
    connection.settings_dict.update(HOST="127.0.0.1", PORT=str(proxy.port))
    try:
        yield proxy
    finally:
        connection.close()
        connection.settings_dict.update(HOST=original["HOST"], PORT=original["PORT"])
        proxy.cut()
