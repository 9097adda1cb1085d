"""`make demo` gives every TCP-probed component of the topology something to answer on loopback,
so none shows "unknown": the Makefile's GANTRY_PROBE_TARGETS names each one, the sandbox serves
the MySQL ones (sandbox/mysql.py) and Procfile.demo runs a real redis-server for each Redis
(demo/redis_server.py). A component added to the topology without that wiring fails here.
Everything started here listens on 127.0.0.1 ports the test picked."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from demo.redis_server import command
from sandbox.mysql import is_loopback, parse_targets
from sandbox.seed import load_topology

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.sqlite_is_enough
TCP_KINDS = {"tcp", "redis", "mysql"}
SANDBOX_PORT = 8900
PATIENCE = 60  # a bound against hanging, not a measure of speed


def tcp_probed() -> dict[str, str]:
    """'ENV/COMPONENT' → probe kind, for every component probed below HTTP."""
    topology = load_topology(ROOT / "topology" / "nemo.yaml")
    return {
        f"{env_name}/{name}": component["probe"]["kind"]
        for env_name, env in topology["environments"].items()
        for name, component in env["components"].items()
        if component.get("probe", {}).get("kind") in TCP_KINDS
    }


def demo_targets(**variables: str) -> dict[str, tuple[str, int]]:
    """GANTRY_PROBE_TARGETS as `make demo` would set it (make -n: nothing is run)."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    overrides = [f"{k}={v}" for k, v in {"SANDBOX_PORT": str(SANDBOX_PORT), **variables}.items()]
    done = subprocess.run(
        ["make", "-n", "-s", "demo", *overrides],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    found = re.search(r"GANTRY_PROBE_TARGETS=(\S*)", done.stdout)
    assert found, done.stdout
    return parse_targets(found.group(1))


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile.demo").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line and not line.startswith("#"))


def test_every_tcp_probed_component_has_a_loopback_address_of_its_own():
    components = tcp_probed()
    assert components, "the topology has Redis and MySQL components"
    targets = demo_targets(DEMO_REDIS_SERVER="/usr/bin/redis-server")
    assert set(targets) == set(components)
    assert all(is_loopback(host) for host, _ in targets.values())
    ports = [port for _, port in targets.values()]
    assert len(set(ports)) == len(ports)
    assert SANDBOX_PORT not in ports and 8000 not in ports  # the sandbox's and the web's


def test_something_answers_on_each_address():
    processes = procfile()
    for key, kind in tcp_probed().items():
        if kind == "mysql":  # the sandbox serves every MySQL named in the variable it is given
            assert '--mysql "$GANTRY_PROBE_TARGETS"' in processes["sandbox"]
        elif kind == "redis":
            runs = [c for c in processes.values() if re.search(rf"redis_server {key}$", c)]
            assert len(runs) == 1, f"no Procfile.demo process runs a Redis for {key}"
            assert "demo.keep_up" in runs[0]
        else:
            pytest.fail(f"nothing in the demo answers {key}'s {kind} probe")


def test_without_redis_server_the_redis_components_are_left_out():
    """Their probes then say they have no address (unknown), not that a Redis is down."""
    targets = demo_targets(DEMO_REDIS_SERVER="")
    assert set(targets) == {k for k, kind in tcp_probed().items() if kind != "redis"}


def test_the_redis_command_keeps_nothing_on_disk_and_binds_loopback():
    argv = command("prod/redis", "prod/mysql=127.0.0.1:1,prod/redis=127.0.0.1:8910", "/x/redis")
    assert argv[0] == "/x/redis"
    options = dict(zip(argv[1::2], argv[2::2], strict=True))
    assert options == {
        "--bind": "127.0.0.1",
        "--port": "8910",
        "--save": "",
        "--appendonly": "no",
        "--protected-mode": "yes",
    }


@pytest.mark.parametrize(
    ("targets", "server", "reason"),
    [
        ("prod/redis=127.0.0.1:8910", None, "redis-server is not installed"),
        ("dev/redis=127.0.0.1:8911", "/x/redis", "gives prod/redis no address"),
        ("prod/redis=0.0.0.0:8910", "/x/redis", "loopback only"),
    ],
)
def test_the_redis_command_says_why_it_cannot_run(targets, server, reason):
    said = command("prod/redis", targets, server)
    assert isinstance(said, str) and reason in said


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_demo_redis_is_a_real_redis_server(tmp_path):
    """The wrapper becomes redis-server (exec): PING answers, and SIGTERM ends it."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (make redis-server)")
    import redis

    port = free_port()
    env = {**os.environ, "GANTRY_PROBE_TARGETS": f"prod/redis=127.0.0.1:{port}"}
    process = subprocess.Popen(
        [sys.executable, "-m", "demo.redis_server", "prod/redis"],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)
        deadline = time.monotonic() + PATIENCE
        while True:
            try:
                assert client.ping()
                break
            except redis.ConnectionError:
                assert process.poll() is None, "redis-server ended by itself"
                assert time.monotonic() < deadline
                time.sleep(0.05)
        info = client.info("server")
        assert info["process_id"] == process.pid  # the same process: signals reach Redis
        assert client.config_get("save") == {"save": ""}
        assert client.config_get("appendonly") == {"appendonly": "no"}
        assert not list(tmp_path.iterdir())  # nothing written where it runs
        client.close()
    finally:
        process.terminate()
        process.wait(timeout=PATIENCE)
