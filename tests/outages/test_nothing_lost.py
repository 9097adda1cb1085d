"""Nothing lost, nothing twice: GitHub's webhooks and people's approvals through a broker outage,
a database outage and a worker SIGKILLed mid-deployment.

The pieces are real: a `celery worker` process on a Redis the test starts and kills, the
database server behind a TCP proxy the test cuts (web and worker both reach it through the
proxy), the sandbox for GCP and the registry. The test client plays web, and the test plays
beat: it calls the reconcilers every second, as the schedule does, whether or not they can
work. GitHub's part is played as GitHub does it: a delivery answered with an error is
redelivered later with the same id (Redeliver; catch-up finds the same runs).

Counted per delivery and per approval: sent, answered, stored, processed, lost (answered 2xx
and never processed) and duplicated (a release or an approval made twice). Lost and duplicated
must be 0. Server databases only: the worker is another process sharing the test database.
"""

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse

from deployments.models import Approval, Deployment, Release
from deployments.tasks import reconcile_deployments
from github.models import WebhookDelivery
from github.tasks import reconcile_deliveries
from portal.models import Profile
from tests.deployments.engine_helpers import CI_REGISTRY
from tests.github.payloads import post, workflow_run

from .harness import PATIENCE

ROOT = Path(__file__).resolve().parents[2]
S = Deployment.State
Outcome = WebhookDelivery.Outcome
pytestmark = pytest.mark.django_db(transaction=True)


class GitHub:
    """Sends deliveries as GitHub does and remembers what each was answered."""

    def __init__(self, client: Client, sandbox):
        self.client, self.sandbox = client, sandbox
        self.answers: dict[str, list[int]] = {}
        self.payloads: dict[str, dict] = {}

    def build(self, repository: str, branch: str, component: str) -> str:
        payload = workflow_run(repository=repository, branch=branch)
        self.sandbox.world.registry.push_new(
            f"{CI_REGISTRY}/{component}:{payload['workflow_run']['head_sha']}"
        )
        guid = f"delivery-{len(self.payloads) + 1}"
        self.payloads[guid] = payload
        self.send(guid)
        return guid

    def send(self, guid: str) -> int:
        status = post(self.client, self.payloads[guid], guid=guid).status_code
        self.answers.setdefault(guid, []).append(status)
        return status

    def redeliver_failed(self) -> None:
        for guid, answers in self.answers.items():
            if answers[-1] >= 500:
                self.send(guid)

    def accepted(self) -> set[str]:
        return {guid for guid, answers in self.answers.items() if 200 <= answers[-1] < 300}


@pytest.fixture
def stack(sandbox_factory, redis_server, on_own_redis, database_proxy, settings, tmp_path):
    """A supervised worker process, web (the test client) and beat (the test) on the test's
    own Redis and behind its database proxy."""
    box = sandbox_factory()
    for name, value in box.urls().items():
        setattr(settings, name, value)
    settings.GANTRY_RECONCILE_GRACE_SECONDS = 1
    parts = urlsplit(os.environ["DATABASE_URL"])
    database = urlunsplit(
        parts._replace(
            netloc=f"{parts.username}@127.0.0.1:{database_proxy.port}",
            path="/" + connection.settings_dict["NAME"],
        )
    )
    env = {
        **os.environ,
        **box.urls(),
        "DATABASE_URL": database,
        "REDIS_URL": redis_server.url,
        "GANTRY_VAR_DIR": str(tmp_path),
        "GANTRY_ENGINE_POLL_SECONDS": "0.2",
        "GANTRY_STEP_LEASE_SECONDS": "2",
        "GANTRY_RECONCILE_GRACE_SECONDS": "1",
        "GANTRY_VERIFY_INTERVAL": "0.1",
        "GANTRY_VERIFY_PASSES": "2",
        "GANTRY_WARM_SECONDS": "0",
        "GANTRY_DB_CONNECT_TIMEOUT": "2",
    }
    log = open(tmp_path / "worker.log", "w")  # noqa: SIM115 - closed at teardown
    command = [sys.executable, "-m", "celery", "-A", "portal", "worker", "--pool=solo"]
    command += ["--without-heartbeat", "--without-gossip", "--without-mingle"]
    command += ["-Q", "celery,notifications", "-l", "info"]
    # Supervised, as every deployment of Gantry runs its workers (compose's restart policy,
    # the demo's keep_up): a worker that dies is started again.
    supervisor = subprocess.Popen(
        [sys.executable, "-m", "demo.keep_up", "worker", *command],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=log,
    )
    yield Stack(box, supervisor, tmp_path / "demo" / "restarts.log")
    supervisor.terminate()
    supervisor.wait(PATIENCE)
    log.close()


class Stack:
    def __init__(self, sandbox, supervisor: subprocess.Popen, restarts: Path):
        self.sandbox, self.supervisor, self.restarts_log = sandbox, supervisor, restarts

    def worker_pid(self) -> int:
        children = Path(f"/proc/{self.supervisor.pid}/task/{self.supervisor.pid}/children")
        deadline = time.monotonic() + PATIENCE
        while not (pids := children.read_text().split()):
            assert time.monotonic() < deadline, "no worker under the supervisor"
            time.sleep(0.05)
        return int(pids[0])

    def restarts(self) -> list[str]:
        return self.restarts_log.read_text().splitlines() if self.restarts_log.exists() else []


def beat() -> None:
    """What the schedule sends every 30 s, here every second; it fails while a part is away
    and simply runs again next time."""
    for reconcile in (reconcile_deliveries, reconcile_deployments):
        try:
            reconcile()
        except Exception:  # beat's tick fails and the next one tries again
            connection.close()


def run_until(done, what: str) -> None:
    deadline = time.monotonic() + PATIENCE
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        beat()
        time.sleep(1)


def test_webhooks_and_approvals_survive_outages_and_a_killed_worker(
    stack, redis_server, database_proxy, make_user
):
    github = GitHub(Client(raise_request_exception=False), stack.sandbox)
    bob = make_user("approver", "bob")
    Profile.objects.update_or_create(user=bob, defaults={"github_login": "bob"})
    person = Client(raise_request_exception=False)
    person.force_login(bob)
    approvals: dict[int, list[int]] = {}

    def approve(deployment_id: int) -> int:
        url = reverse("deployment-decide", args=[deployment_id])
        status = person.post(url, {"decision": "approve"}).status_code
        approvals.setdefault(deployment_id, []).append(status)
        return status

    def waiting_for_approval() -> list[int]:
        rows = Deployment.objects.filter(state=S.PENDING_APPROVAL).order_by("pk")
        return list(rows.values_list("pk", flat=True))

    prod = [github.build("nemo-team/nemo-web", "main", "frontend") for _ in range(3)]
    dev = [github.build("nemo-team/nemo-api", "develop", "backend") for _ in range(2)]
    run_until(lambda: len(waiting_for_approval()) == 1, "the newest prod build to wait")

    # The broker is away: Redis dies, and comes back empty.
    redis_server.stop()
    dev += [github.build("nemo-team/nemo-api", "develop", "backend") for _ in range(3)]
    prod.append(github.build("nemo-team/nemo-web", "main", "frontend"))
    during_broker_outage = [approve(pk) for pk in waiting_for_approval()]
    redis_server.start()

    # The database is away, for web and worker alike.
    run_until(lambda: len(waiting_for_approval()) == 1, "the prod build sent in the outage")
    pending = waiting_for_approval()
    database_proxy.cut()
    dev += [github.build("nemo-team/nemo-api", "develop", "backend") for _ in range(3)]
    during_database_outage = [approve(pk) for pk in pending]
    database_proxy.restore()
    connection.close()
    github.redeliver_failed()
    for pk in pending:
        approve(pk)

    # A worker is SIGKILLed while a deployment is under way; a new one takes over.
    run_until(
        lambda: Deployment.objects.filter(state__in=Deployment.ACTIVE).exists(),
        "a deployment under way",
    )
    before = len(stack.restarts())
    os.kill(stack.worker_pid(), signal.SIGKILL)
    run_until(lambda: len(stack.restarts()) > before, "the supervisor to start a new worker")

    def everything_processed() -> bool:
        unresolved = WebhookDelivery.objects.filter(guid__in=github.accepted()).exclude(
            outcome=Outcome.RELEASED
        )
        approved = Deployment.objects.filter(pk__in=approvals)
        return (
            not unresolved.exists()
            and not approved.filter(state__in=[S.PENDING_APPROVAL, S.QUEUED]).exists()
            and not Deployment.objects.filter(component__environment__name="dev")
            .exclude(state__in=Deployment.FINAL)
            .exists()
        )

    run_until(everything_processed, "every accepted delivery and approval to be processed")

    answered = {guid: answers[-1] for guid, answers in github.answers.items()}
    stored = set(WebhookDelivery.objects.filter(guid__isnull=False).values_list("guid", flat=True))
    processed = set(
        WebhookDelivery.objects.filter(outcome=Outcome.RELEASED).values_list("guid", flat=True)
    )
    releases = Counter(Release.objects.values_list("component_id", "sha"))
    lost = github.accepted() - processed
    duplicated = sum(n - 1 for n in releases.values()) + sum(
        n - 1 for n in Counter(Approval.objects.values_list("deployment_id", flat=True)).values()
    )
    report = {
        "deliveries sent": len(github.answers),
        "answered 5xx at first": sum(1 for a in github.answers.values() if a[0] >= 500),
        "answered 2xx in the end": sum(1 for s in answered.values() if 200 <= s < 300),
        "stored": len(stored),
        "processed": len(processed),
        "approvals sent": sum(len(a) for a in approvals.values()),
        "approvals recorded": Approval.objects.count(),
        "worker restarts": len(stack.restarts()),
        "lost": len(lost),
        "duplicated": duplicated,
    }
    print("nothing-lost:", report)

    assert during_broker_outage and all(status == 302 for status in during_broker_outage)
    assert during_database_outage and all(status == 503 for status in during_database_outage)
    assert report["answered 5xx at first"] == 3  # the deliveries sent while the database was away
    assert len(github.answers) == len(prod) + len(dev) == report["answered 2xx in the end"]
    assert stored == processed == set(github.answers)
    assert Approval.objects.count() == len(approvals)
    assert lost == set() and duplicated == 0
