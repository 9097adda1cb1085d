"""Probes against real peers: a local HTTP server, the local Redis and the local MariaDB."""

import socket
import time

import pytest

from environments.models import Component
from environments.probes import DOWN, UNKNOWN, UP, probe_now

# Probes that must answer are given time to on a loaded machine; a test about timing out sets its
# own timeout.
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("patient_probes")]


def component(name):
    return Component.objects.select_related("environment").get(environment__name="prod", name=name)


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_http_probe_checks_status_and_json(seed_topology, http_stack, settings):
    settings.GANTRY_STACK_URL = http_stack.url
    backend, frontend = component("backend"), component("frontend")
    http_stack.routes["/prod/backend/actuator/health"] = (200, {"status": "UP"}, 0)
    http_stack.routes["/prod/frontend/"] = (200, b"<html>ok</html>", 0)
    results = probe_now([backend, frontend])
    assert results[backend.pk].status == UP and results[backend.pk].detail == "HTTP 200"
    assert results[frontend.pk].status == UP
    assert results[backend.pk].latency_ms is not None

    http_stack.routes["/prod/backend/actuator/health"] = (200, {"status": "DOWN"}, 0)
    http_stack.routes["/prod/frontend/"] = (502, b"bad gateway", 0)
    results = probe_now([backend, frontend])
    assert results[backend.pk].status == DOWN
    assert results[backend.pk].detail == "JSON {'status': 'DOWN'} does not match {'status': 'UP'}"
    assert results[frontend.pk].detail == "HTTP 502, expected 200"


def test_a_slow_target_times_out_without_holding_the_others(seed_topology, http_stack, settings):
    settings.GANTRY_STACK_URL = http_stack.url
    backend, frontend = component("backend"), component("frontend")
    # The slow one answers long after the timeout; the timeout leaves the fast one ample time to
    # answer on a loaded machine (a loopback round trip takes milliseconds).
    http_stack.routes["/prod/backend/actuator/health"] = (200, {"status": "UP"}, 60.0)
    http_stack.routes["/prod/frontend/"] = (200, b"ok", 0)
    started = time.monotonic()
    results = probe_now([backend, frontend], timeout=5.0)
    assert time.monotonic() - started < 60.0  # the sweep did not wait for the slow answer
    assert results[backend.pk].status == DOWN
    assert results[backend.pk].detail == "timed out after 5s"
    assert results[frontend.pk].status == UP


def test_a_sweep_waits_its_turns_and_each_probe_is_timed_from_its_own(
    seed_topology, http_stack, settings
):
    """At most GANTRY_PROBE_CONCURRENCY probes in flight; one that waited behind the others is
    not charged for the wait. Here one at a time, 0.5 s each: had the clock started with the
    sweep, the last of the four HTTP probes would read at least 2 s."""
    settings.GANTRY_STACK_URL = http_stack.url
    settings.GANTRY_PROBE_CONCURRENCY = 1
    names = ["frontend", "backend", "ai-server", "chromadb"]
    paths = ["/prod/frontend/", "/prod/backend/actuator/health", "/prod/ai-server/health"]
    for path, body in zip(paths, [b"ok", {"status": "UP"}, {"status": "ok"}], strict=True):
        http_stack.routes[path] = (200, body, 0.5)
    http_stack.routes["/prod/chromadb/api/v2/heartbeat"] = (200, {"nanosecond heartbeat": 1}, 0.5)
    components = [component(name) for name in names]
    results = probe_now(components)
    assert [results[c.pk].status for c in components] == [UP] * 4
    assert http_stack.most_at_once == 1
    assert max(results[c.pk].latency_ms for c in components) < 2000


def test_probe_now_works_from_a_thread_that_already_runs_an_event_loop(
    seed_topology, http_stack, settings
):
    """Playwright's sync API and eventlet workers leave a running loop behind."""
    import asyncio

    settings.GANTRY_STACK_URL = http_stack.url
    http_stack.routes["/prod/frontend/"] = (200, b"ok", 0)
    frontend = component("frontend")

    async def inside_a_loop():
        return probe_now([frontend])

    assert asyncio.run(inside_a_loop())[frontend.pk].status == UP


def test_refused_connections_are_down_with_the_reason(seed_topology, settings):
    settings.GANTRY_STACK_URL = f"http://127.0.0.1:{closed_port()}"
    result = probe_now([component("frontend")])[component("frontend").pk]
    assert result.status == DOWN and "Connect" in result.detail


def test_redis_ping_against_a_real_redis(seed_topology, settings, redis_url):
    from urllib.parse import urlsplit

    parts = urlsplit(redis_url)
    settings.GANTRY_PROBE_TARGETS = f"prod/redis={parts.hostname}:{parts.port}"
    redis = component("redis")
    result = probe_now([redis])[redis.pk]
    assert (result.status, result.detail) == (UP, "PONG")
    settings.GANTRY_PROBE_TARGETS = f"prod/redis=127.0.0.1:{closed_port()}"
    assert probe_now([redis])[redis.pk].status == DOWN


def test_mysql_handshake_against_a_real_server(seed_topology, settings):
    try:
        socket.create_connection(("127.0.0.1", 3306), timeout=1).close()
    except OSError:
        pytest.skip("no MySQL/MariaDB server on 127.0.0.1:3306")
    settings.GANTRY_PROBE_TARGETS = "prod/mysql=127.0.0.1:3306"
    mysql = component("mysql")
    result = probe_now([mysql])[mysql.pk]
    assert (result.status, result.detail) == (UP, "handshake v10")


def test_sandbox_mode_never_aims_tcp_probes_at_real_addresses(seed_topology, settings):
    settings.GANTRY_STACK_URL = "http://127.0.0.1:9/stack"
    settings.GANTRY_PROBE_TARGETS = ""
    redis, mysql = component("redis"), component("mysql")
    results = probe_now([redis, mysql])
    assert {r.status for r in results.values()} == {UNKNOWN}
    assert "GANTRY_PROBE_TARGETS" in results[redis.pk].detail
