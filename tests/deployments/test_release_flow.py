"""From a GitHub delivery to a running deployment, against the sandbox."""

from datetime import timedelta

import pytest
from django.db import connection

from deployments.approvals import ApprovalError, decide
from deployments.models import Deployment, Release
from gcp.adapter import GcpAdapter
from github.intake import resolve_delivery
from github.models import WebhookDelivery
from tests.github.payloads import SECRET, post, workflow_run

from .engine_helpers import CI_REGISTRY, PATIENCE, drive, keep_time

S = Deployment.State


@pytest.fixture
def flow(engine, settings):
    """The engine on simulated time (tests/conftest.py), taking GitHub's webhooks."""
    settings.GANTRY_GITHUB_WEBHOOK_SECRET = SECRET
    return engine


def ci_push(sandbox, component, sha):
    return sandbox.world.registry.push_new(f"{CI_REGISTRY}/{component}:{sha}")


def deliver(client, payload):
    response = post(client, payload)
    assert response.status_code == 202, response.content
    delivery = WebhookDelivery.objects.get(guid=response.json()["delivery"])
    return resolve_delivery(delivery.pk)  # what the resolve_delivery task runs


@pytest.mark.django_db
def test_a_develop_build_deploys_to_dev_with_no_human_step(client, flow):
    payload = workflow_run(repository="nemo-team/nemo-api", branch="develop")
    digest = ci_push(flow, "backend", payload["workflow_run"]["head_sha"])
    delivery = deliver(client, payload)
    assert delivery.outcome == WebhookDelivery.Outcome.RELEASED
    release = Release.objects.get()
    assert (str(release.component), release.digest, release.author) == (
        "dev/backend",
        digest,
        "dev-alice",
    )
    assert list(delivery.releases.all()) == [release]
    deployment = release.deployments.get()
    assert deployment.state == S.QUEUED and deployment.approvals_required == 0
    deployment = drive(deployment)
    assert deployment.state == S.SUCCEEDED, deployment.reason
    vm = GcpAdapter.from_settings().get_instance("nemo-dev", "asia-northeast3-a", "nemo-dev-vm")
    assert vm.metadata["backend-image"].endswith(digest)


@pytest.mark.django_db
def test_a_main_build_waits_for_approval_then_reaches_prod(client, flow, make_user):
    payload = workflow_run(repository="nemo-team/nemo-web", branch="main", workflow="build")
    ci_push(flow, "frontend", payload["workflow_run"]["head_sha"])
    deliver(client, payload)
    deployment = Deployment.objects.get()
    assert deployment.state == S.PENDING_APPROVAL
    assert drive(deployment).state == S.PENDING_APPROVAL  # the engine will not touch it
    decide(deployment.pk, make_user("approver", "bob"), "approve")
    deployment = drive(deployment)
    assert deployment.state == S.SUCCEEDED, deployment.reason
    assert str(deployment.component) == "prod/frontend"


@pytest.mark.django_db
def test_a_run_someone_else_started_keeps_both_actors_and_neither_approves(client, flow, make_user):
    """A re-run: GitHub's `actor` is who first triggered the workflow, `triggering_actor` who
    started this attempt. The release keeps both, as GitHub spells them; neither may approve it."""
    payload = workflow_run(repository="nemo-team/nemo-web", branch="main", actor="Dev-Alice")
    payload["workflow_run"]["triggering_actor"] = {"login": "Dev-Bob"}
    ci_push(flow, "frontend", payload["workflow_run"]["head_sha"])
    deliver(client, payload)
    release = Release.objects.get()
    assert (release.author, release.triggering_actor) == ("Dev-Alice", "Dev-Bob")
    deployment = release.deployments.get()
    with pytest.raises(ApprovalError, match=r"You triggered this build \(GitHub user dev-bob\)"):
        decide(deployment.pk, make_user("approver", "dev-bob"), "approve")
    decide(deployment.pk, make_user("approver", "carol"), "approve")
    deployment.refresh_from_db()
    assert deployment.state == S.QUEUED


@pytest.mark.django_db
def test_an_image_missing_from_the_registry_waits_then_fails_and_creates_nothing(
    client, flow, settings
):
    """CI may still be pushing: the delivery looks again for GANTRY_IMAGE_WAIT_SECONDS, then
    fails with the reason (the clock is the delivery's own back-dated arrival)."""
    delivery = deliver(client, workflow_run(repository="nemo-team/nemo-api", branch="develop"))
    assert delivery.outcome == WebhookDelivery.Outcome.ACCEPTED
    assert "not in the registry yet" in delivery.detail
    assert delivery.next_resolve_at > delivery.received_at and delivery.resolve_tries == 1
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        received_at=delivery.received_at - timedelta(seconds=settings.GANTRY_IMAGE_WAIT_SECONDS)
    )
    delivery = resolve_delivery(delivery.pk)
    assert delivery.outcome == WebhookDelivery.Outcome.FAILED
    assert "not in the registry after 10 min" in delivery.detail
    assert delivery.next_resolve_at is None
    assert Release.objects.count() == Deployment.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_runs_a_deployment_to_the_end(flow, in_process_broker, settings):
    """Celery worker thread on the in-memory broker: the engine schedules its own next steps.
    Celery's countdowns are real seconds, so they are short; the deadlines stay the simulated
    ones, and simulated time moves with the worker's steps (keep_time), not with the machine."""
    if connection.vendor == "sqlite":
        pytest.skip("a worker thread beside the test needs a server database (PostgreSQL/MySQL)")
    settings.GANTRY_ENGINE_POLL_SECONDS = 0.05
    settings.GANTRY_VERIFY_INTERVAL = 0.05
    from celery.contrib.testing.worker import start_worker

    from deployments.releases import create_release

    sha = "c" * 40
    digest = ci_push(flow, "frontend", sha)
    with start_worker(
        in_process_broker,
        pool="threads",
        concurrency=2,
        perform_ping_check=False,
        shutdown_timeout=PATIENCE,  # a guard against a hang: the thread stops when it may
    ):
        from environments.models import Component

        component = Component.objects.get(environment__name="dev", name="frontend")
        create_release(
            component,
            repository="nemo-team/nemo-web",
            sha=sha,
            branch="develop",
            image=f"{CI_REGISTRY}/frontend:{sha}",
            digest=digest,
            source="api",
        )
        deployment = Deployment.objects.get()
        keep_time(flow, deployment.pk, lambda: Deployment.objects.get(pk=deployment.pk).is_final)
    deployment.refresh_from_db()
    assert deployment.state == S.SUCCEEDED, deployment.reason
    assert deployment.events.filter(kind="state").count() == 5  # queued .. succeeded


@pytest.mark.django_db(transaction=True)
def test_two_deployments_of_one_component_one_runs_one_waits(flow):
    """Two worker threads each drive a deployment of prod/frontend at the same moment."""
    import threading

    from django.db import close_old_connections

    from audit.models import AuditEvent

    from .engine_helpers import new_release

    if connection.vendor == "sqlite":
        pytest.skip("row locks need PostgreSQL or MySQL; SQLite serialises whole transactions")
    first = new_release(flow, "prod", "frontend", n=1)
    second = new_release(flow, "prod", "frontend", n=2)
    barrier = threading.Barrier(2)
    ended = {}

    def work(deployment):
        try:
            barrier.wait()
            ended[deployment.pk] = drive(deployment).state
        finally:
            close_old_connections()
            connection.close()

    threads = [threading.Thread(target=work, args=(d,)) for d in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert ended == {first.pk: S.SUCCEEDED, second.pk: S.QUEUED}  # FIFO: the second waited
    assert drive(second).state == S.SUCCEEDED
    events = list(
        AuditEvent.objects.filter(action__startswith="deployment.")
        .order_by("id")
        .values_list("object_id", "action")
    )
    first_done = events.index((str(first.pk), "deployment.succeeded"))
    second_start = events.index((str(second.pk), "deployment.promoting"))
    assert first_done < second_start


@pytest.mark.django_db
def test_builds_reach_dev_and_every_prod_strategy_while_compute_throttles(client, flow, make_user):
    """Every 4th Compute call is a real-shaped 403 rateLimitExceeded: a develop build still
    deploys to dev, and main builds, approved, roll out with each prod strategy; none rolls
    back."""
    flow.inject_fault(
        "http_error", path="/compute/v1/*", every=4, status=403, reason="rateLimitExceeded"
    )
    approver = make_user("approver", "bob")
    builds = [
        ("nemo-team/nemo-api", "develop", "backend", "dev/backend", "recreate"),
        ("nemo-team/nemo-web", "main", "frontend", "prod/frontend", "rolling"),
        ("nemo-team/nemo-api", "main", "backend", "prod/backend", "canary"),
        ("nemo-team/nemo-ai", "main", "ai-server", "prod/ai-server", "blue_green"),
    ]
    for repository, branch, image, component, strategy in builds:
        payload = workflow_run(repository=repository, branch=branch)
        ci_push(flow, image, payload["workflow_run"]["head_sha"])
        deliver(client, payload)
        deployment = Deployment.objects.get(release__sha=payload["workflow_run"]["head_sha"])
        assert (str(deployment.component), deployment.strategy) == (component, strategy)
        if branch == "main":
            decide(deployment.pk, approver, "approve")
        deployment = drive(deployment)
        assert deployment.state == S.SUCCEEDED, f"{component}: {deployment.reason}"
        assert deployment.events.filter(kind="retry", message__contains="rateLimitExceeded")
        assert not deployment.events.filter(message__contains="rolling_back")
    assert sum(c["status"] == 403 for c in flow.gcp_calls) >= 10
