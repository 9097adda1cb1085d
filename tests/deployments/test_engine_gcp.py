"""The engine against GCP as it really behaves: throttling 403s, instances GCP cannot create,
the load balancer's own view of health, idempotent retries, stuck builds, template clean-up.

Time is the sandbox's: it stands still (speed 0) and each step's delay moves it on, and the
engine's clock reads it, so every deadline here is in simulated seconds and the engine's real
defaults (poll 2 s, verify 300 s, rollout 900 s) hold whatever the machine's speed.
"""

import itertools
import re
from datetime import timedelta

import pytest
from django.utils import timezone

from deployments import clock
from deployments.engine import run_to_end
from deployments.models import Deployment
from deployments.templates import prune_templates
from gcp.adapter import GcpAdapter

from .engine_helpers import new_release

S = Deployment.State
PROD, REGION = "nemo-prod", "asia-northeast3"
pytestmark = pytest.mark.django_db


@pytest.fixture
def gcp_time(seed_topology, sandbox_factory, settings):
    """A frozen sandbox whose simulated seconds are the engine's clock."""
    box = sandbox_factory(speed=0)
    for name, value in box.urls().items():
        setattr(settings, name, value)
    settings.GANTRY_VERIFY_PASSES = 2
    settings.GANTRY_WARM_SECONDS = 0
    start = timezone.now()
    with clock.driven_by(lambda: start + timedelta(seconds=box.world.clock.now())):
        yield box


def drive(box, deployment, max_steps=3000) -> Deployment:
    return run_to_end(deployment.pk, max_steps=max_steps, sleep=box.world.clock.advance)


def timeline(deployment) -> str:
    return " | ".join(deployment.events.order_by("id").values_list("message", flat=True))


def image_key(deployment) -> str:
    return deployment.release.digest.removeprefix("sha256:")[:16]


def compute_calls(box) -> list[dict]:
    return [c for c in box.gcp_calls if c["path"].startswith("/compute/")]


@pytest.mark.parametrize(
    ("environment", "component", "strategy"),
    [
        ("dev", "backend", "recreate"),
        ("prod", "frontend", "rolling"),
        ("prod", "backend", "canary"),
        ("prod", "ai-server", "blue_green"),
    ],
)
def test_every_strategy_succeeds_while_every_fourth_compute_call_is_throttled(
    gcp_time, environment, component, strategy
):
    gcp_time.inject_fault(
        "http_error", path="/compute/v1/*", every=4, status=403, reason="rateLimitExceeded"
    )
    deployment = new_release(gcp_time, environment, component)
    assert deployment.strategy == strategy
    deployment = drive(gcp_time, deployment)
    assert deployment.state == S.SUCCEEDED, deployment.reason
    throttled = [c for c in compute_calls(gcp_time) if c["status"] == 403]
    assert throttled, "the fault never fired"
    retries = deployment.events.filter(kind="retry")
    assert retries.count() >= len(throttled) // 2
    assert all("rateLimitExceeded" in r.message for r in retries)
    assert "rolling_back" not in timeline(deployment)


def test_quota_errors_on_new_instances_roll_back_within_two_polls(gcp_time, settings):
    deployment = new_release(gcp_time, "prod", "frontend")
    gcp_time.inject_fault(
        "instance_error",
        image=image_key(deployment),
        code="QUOTA_EXCEEDED",
        message="Quota 'CPUS' exceeded.  Limit: 24.0 in region asia-northeast3.",
    )
    deployment = drive(gcp_time, deployment)
    assert deployment.state == S.ROLLED_BACK
    assert "QUOTA_EXCEEDED: Quota 'CPUS' exceeded." in deployment.reason
    patched = next(op for op in deployment.operations if op["what"] == "patch-update")
    failed = deployment.events.get(kind="error")
    took = (failed.at - timezone.datetime.fromisoformat(patched["at"])).total_seconds()
    # the patch operation, then at most two polls of the group
    assert took <= gcp_time.world.operation_time + 2 * settings.GANTRY_ENGINE_POLL_SECONDS + 0.01
    assert gcp_time.mig(PROD, "nemo-frontend-mig").config["versions"][0]["name"] == "rollback"


def test_an_unhealthy_canary_rolls_back_within_the_verify_deadline_naming_it(gcp_time, settings):
    deployment = new_release(gcp_time, "prod", "backend")
    gcp_time.inject_fault("unhealthy", image=image_key(deployment))
    deployment = drive(gcp_time, deployment)
    assert deployment.state == S.ROLLED_BACK
    assert "stayed UNHEALTHY" in deployment.reason and "nemo-backend-" in deployment.reason
    rolling_out = deployment.events.filter(message__contains="→ rolling_out").first().at
    rolling_back = deployment.events.filter(message__contains="→ rolling_back").first().at
    waited = (rolling_back - rolling_out).total_seconds()
    assert waited < settings.GANTRY_VERIFY_TIMEOUT + 120  # not the 900 s rollout timeout
    waiting = list(deployment.events.filter(message__startswith="waiting:").order_by("id"))
    settling = re.compile(
        r"waiting: nemo-backend-mig to settle \(1/\d on gantry-backend-.*, 0 healthy"
    )
    assert any(settling.match(w.message) for w in waiting), [w.message for w in waiting]
    # says what it waits for, at most once a minute
    assert all((b.at - a.at).total_seconds() >= 60 for a, b in itertools.pairwise(waiting))


def without_autohealing(box, mig):
    with box.world.lock:
        box.world.projects[PROD].migs[f"regions/{REGION}/instanceGroupManagers/{mig}"].config[
            "autoHealingPolicies"
        ] = []


def test_blue_green_without_autohealing_never_swaps_to_a_colour_the_lb_calls_unhealthy(gcp_time):
    without_autohealing(gcp_time, "nemo-ai-green-mig")
    deployment = new_release(gcp_time, "prod", "ai-server")
    gcp_time.inject_fault("lb_unhealthy", image=image_key(deployment))
    deployment = drive(gcp_time, deployment)
    assert deployment.state == S.ROLLED_BACK, deployment.reason
    assert "UNHEALTHY by its load balancer" in deployment.reason
    assert "swap" not in [op["what"] for op in deployment.operations]
    assert "healthy in the load balancer" in timeline(deployment)
    assert GcpAdapter.from_settings().serving_groups(PROD, "nemo-ai-bes") == {"nemo-ai-blue-mig"}


def test_blue_green_keeps_the_live_backends_settings(gcp_time):
    path = "global/backendServices/nemo-ai-bes"
    with gcp_time.world.lock:
        backend = gcp_time.world.projects[PROD].backend_services[path]["backends"][0]
        backend |= {"capacityScaler": 0.8, "maxUtilization": 0.7}
    deployment = drive(gcp_time, new_release(gcp_time, "prod", "ai-server"))
    assert deployment.state == S.SUCCEEDED, deployment.reason
    (served,) = gcp_time.world.projects[PROD].backend_services[path]["backends"]
    assert served["group"].endswith("/instanceGroups/nemo-ai-green-mig")
    assert (served["capacityScaler"], served["maxUtilization"]) == (0.8, 0.7)


def test_a_retried_mutation_sends_the_same_request_id(gcp_time):
    deployment = new_release(gcp_time, "prod", "frontend")
    gcp_time.inject_fault(
        "http_error", path="*/instanceGroupManagers/nemo-frontend-mig", method="PATCH", status=503
    )
    deployment = drive(gcp_time, deployment)
    assert deployment.state == S.SUCCEEDED, deployment.reason
    patches = [
        c
        for c in compute_calls(gcp_time)
        if c["method"] == "PATCH" and c["path"].endswith("/nemo-frontend-mig")
    ]
    assert [c["status"] for c in patches] == [503, 200]
    ids = [c["query"].get("requestId") for c in patches]
    assert ids[0] and ids[0] == ids[1]
    reads = ("/listManagedInstances", "/getHealth", "/wait")
    mutating = [
        c
        for c in compute_calls(gcp_time)
        if c["method"] in ("POST", "PATCH", "DELETE") and not c["path"].endswith(reads)
    ]
    assert len(mutating) >= 3 and all(c["query"].get("requestId") for c in mutating)


def test_a_build_stuck_in_the_queue_fails_promotion_and_is_cancelled(
    seed_topology, sandbox_factory, settings
):
    box = sandbox_factory(speed=0, build_queue_time=100_000)
    for name, value in box.urls().items():
        setattr(settings, name, value)
    start = timezone.now()
    with clock.driven_by(lambda: start + timedelta(seconds=box.world.clock.now())):
        deployment = drive(box, new_release(box, "prod", "frontend"))
    assert deployment.state == S.FAILED
    assert "still QUEUED after 1800s; cancelled it" in deployment.reason
    assert box.world.builds.builds[deployment.build_id].status == "CANCELLED"
    assert not deployment.template and not deployment.operations


def test_old_unused_templates_are_pruned_keeping_the_newest(gcp_time, settings):
    settings.GANTRY_TEMPLATES_KEPT = 2
    component = None
    made = []
    for n in range(1, 5):
        deployment = drive(gcp_time, new_release(gcp_time, "prod", "frontend", n=n))
        assert deployment.state == S.SUCCEEDED, deployment.reason
        made.append(deployment.template)
        component = deployment.component
    gcp = GcpAdapter.from_settings()
    deleted = prune_templates(component, gcp)
    assert deleted == made[:2]
    gcp_time.world.clock.advance(60)  # the delete operations finish
    left = {url.rsplit("/", 1)[-1] for url in gcp.list_templates(PROD, REGION, "gantry-frontend-")}
    assert left == set(made[2:])
    assert gcp.template_url(PROD, REGION, "nemo-frontend-mig-tmpl-v1")  # not Gantry's: kept
    assert prune_templates(component, gcp) == []  # nothing more on a second run
