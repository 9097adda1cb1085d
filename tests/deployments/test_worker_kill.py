"""A real Celery worker killed with SIGKILL in the middle of a rollout; a new worker, fed by the
beat's reconcile task, finishes the deployment without repeating what the dead one did.

The worker is a separate process (`celery -A portal worker`) on the Redis broker, sharing the
test database, so this runs on PostgreSQL and MariaDB and is skipped on SQLite, whose test
database lives in the test process's memory.

Time: the sandbox's clock is frozen and the test moves it by a few simulated seconds for each
step a worker finishes (engine_helpers.keep_time), so the rollout is certain to be under way,
not done, when the worker is killed, however fast or slow the machine. The workers' own engine
reads the wall clock (another process); its deadlines are production's, 900 s and 300 s, which
a slow machine only comes nearer to, not past. Leases stay short (wall clock, as ever) so the
replacement takes over quickly.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from celery import Celery
from django.db import connection

from audit.models import AuditEvent
from bench.campaign import audit_problems
from deployments.models import Deployment

from .engine_helpers import PATIENCE, available_over_time, keep_time, new_release

ROOT = Path(__file__).resolve().parents[2]
S = Deployment.State
pytestmark = pytest.mark.django_db(transaction=True)


def shared_database_url() -> str:
    """DATABASE_URL naming the test database pytest-django created."""
    parts = urlsplit(os.environ["DATABASE_URL"])
    return urlunsplit(parts._replace(path="/" + connection.settings_dict["NAME"]))


@pytest.fixture
def workers(sandbox_factory, redis_url, seed_topology, tmp_path):
    """Start and kill Celery worker processes against a slow-booting sandbox."""
    if connection.vendor == "sqlite":
        pytest.skip("a worker process needs a database server shared with the test")
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    box = sandbox_factory(speed=0)  # frozen: simulated time moves with the workers' steps
    env = {
        **os.environ,
        **box.urls(),
        "DATABASE_URL": shared_database_url(),
        "REDIS_URL": redis_url,
        "GANTRY_VAR_DIR": str(tmp_path),
        "GANTRY_ENGINE_POLL_SECONDS": "0.2",
        "GANTRY_STEP_LEASE_SECONDS": "2",
        "GANTRY_RECONCILE_GRACE_SECONDS": "1",
        "GANTRY_VERIFY_INTERVAL": "0.1",
        "GANTRY_VERIFY_PASSES": "2",
        "GANTRY_VERIFY_TIMEOUT": "300",
        "GANTRY_ROLLOUT_TIMEOUT": "900",
        "GANTRY_PROBE_TIMEOUT": "30",
        "GANTRY_WARM_SECONDS": "0",
    }
    running = []

    def start(name):
        log = open(tmp_path / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
        command = [sys.executable, "-m", "celery", "-A", "portal", "worker", "--pool=solo"]
        command += ["--without-heartbeat", "--without-gossip", "--without-mingle"]
        command += ["-n", f"{name}@%h", "-l", "info"]
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
        running.append((process, log))
        return process

    start.sandbox = box
    start.broker = Celery(broker=redis_url)
    yield start
    for process, log in running:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        log.close()
    start.broker.close()
    redis.Redis.from_url(redis_url).flushdb()


def wait_for(predicate, what, timeout=PATIENCE):
    """Wait for something that needs no simulated time; `timeout` only guards against a hang."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_a_worker_killed_mid_rollout_is_replaced_and_the_deployment_finishes(workers):
    deployment = new_release(workers.sandbox, "prod", "frontend")
    first = workers("doomed")
    workers.broker.send_task("deployments.tasks.advance_deployment", args=[deployment.pk])

    def mid_rollout():
        current = Deployment.objects.get(pk=deployment.pk)
        patched = any(op["what"].startswith("patch") for op in current.operations)
        return current if current.state == S.ROLLING_OUT and patched else None

    box = workers.sandbox
    before = keep_time(box, deployment.pk, mid_rollout)  # the build copies, the patch starts
    first.send_signal(signal.SIGKILL)
    first.wait(PATIENCE)
    current = Deployment.objects.get(pk=deployment.pk)
    assert current.state == S.ROLLING_OUT, current.reason
    # Frozen since the last step: not one instance of the new template serves yet.
    _, now = box.history("nemo-prod", "nemo-frontend-mig")[-1]
    assert sum(zone.get(current.template, {}).get("available", 0) for zone in now.values()) == 0

    workers("replacement")

    def reconcile():  # what beat sends every minute, here every real second
        workers.broker.send_task("deployments.tasks.reconcile_deployments")

    current = keep_time(
        box,
        deployment.pk,
        lambda: (d := Deployment.objects.get(pk=deployment.pk)).is_final and d,
        every=(1.0, reconcile),
    )
    assert current.state == S.SUCCEEDED, current.reason
    assert [op["id"] for op in current.operations[: len(before.operations)]] == [
        op["id"] for op in before.operations
    ]
    assert sum(op["what"] == "template" for op in current.operations) == 1
    assert sum(op["what"].startswith("patch") for op in current.operations) == 1
    live = workers.sandbox.mig("nemo-prod", "nemo-frontend-mig").live()
    assert [i.template.rsplit("/", 1)[-1] for i in live] == [current.template] * 4
    assert min(available_over_time(workers.sandbox, "nemo-prod", "nemo-frontend-mig")) >= 4
    states = [
        event.data["to"]
        for event in AuditEvent.objects.filter(
            object_type="deployments.deployment", object_id=str(deployment.pk)
        ).order_by("pk")
    ]
    assert states[-1] == S.SUCCEEDED and states.count(S.ROLLING_OUT) == 1
    assert audit_problems(current) == []  # a valid path through TRANSITIONS from queued
    leased = Deployment.objects.filter(pk=deployment.pk, lease_until__isnull=False)
    wait_for(lambda: not leased.exists(), "the last step to give its lease back")
