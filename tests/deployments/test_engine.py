"""Each strategy end to end against the sandbox, through the real client libraries."""

import pytest

from audit.models import AuditEvent
from deployments.engine import advance
from deployments.models import Deployment
from gcp.adapter import GcpAdapter

from .engine_helpers import available_over_time, drive, new_release, step_until

S = Deployment.State
pytestmark = pytest.mark.django_db


def test_rolling_update_of_a_two_zone_mig_never_drops_below_capacity(engine):
    deployment = drive(new_release(engine, "prod", "frontend"))
    assert deployment.state == S.SUCCEEDED, deployment.reason
    release = deployment.release
    # Promoted by digest into prod's registry under the environment's tags.
    for tag in ("prod-v101", "prod-latest"):
        image = f"asia-northeast3-docker.pkg.dev/nemo-prod/registry/frontend:{tag}"
        assert GcpAdapter.from_settings().get_digest(image) == release.digest
    assert deployment.build_id and deployment.target_image.endswith(release.digest)
    # The MIG ends on the new template, every instance replaced, never below its 4.
    mig = engine.mig("nemo-prod", "nemo-frontend-mig")
    assert {i.template.rsplit("/", 1)[-1] for i in mig.live()} == {deployment.template}
    assert len(mig.live()) == 4
    assert min(available_over_time(engine, "nemo-prod", "nemo-frontend-mig")) >= 4
    assert deployment.progress["zones"] == {"asia-northeast3-a": [2], "asia-northeast3-c": [2]}
    states = list(
        AuditEvent.objects.filter(object_id=str(deployment.pk))
        .order_by("id")
        .values_list("action", flat=True)
    )
    assert states == [
        "deployment.promoting",
        "deployment.rolling_out",
        "deployment.verifying",
        "deployment.succeeded",
    ]
    assert deployment.verification["passes"] == 2


def unhealthy(sandbox, deployment):
    """New instances of this release's image never pass their health check."""
    sandbox.inject_fault("unhealthy", image=deployment.release.digest.removeprefix("sha256:")[:16])


def templates_of(sandbox, mig):
    return sorted(i.template.rsplit("/", 1)[-1] for i in sandbox.mig("nemo-prod", mig).live())


def test_canary_serves_beside_the_old_version_then_takes_over(engine):
    deployment = new_release(engine, "prod", "backend")
    assert deployment.strategy == "canary"
    drive(deployment)
    deployment.refresh_from_db()
    assert deployment.state == S.SUCCEEDED, deployment.reason
    timeline = " | ".join(deployment.events.values_list("message", flat=True))
    assert "canary analysis passed (score 100); promoting it to every instance" in timeline
    assert templates_of(engine, "nemo-backend-mig") == [deployment.template] * 4
    # While the canary was observed, one instance ran the new template beside three old ones.
    canary_states = [
        sorted(
            n
            for zone in state.values()
            for t, c in zone.items()
            if t == deployment.template
            for n in [c["available"]]
        )
        for _, state in engine.history("nemo-prod", "nemo-backend-mig")
    ]
    assert [1] in canary_states


def test_an_unhealthy_canary_is_taken_away(engine):
    deployment = new_release(engine, "prod", "backend")
    unhealthy(engine, deployment)
    deployment = drive(deployment)
    assert deployment.state == S.ROLLED_BACK
    # The canary never turns healthy: it is given up after GANTRY_VERIFY_TIMEOUT (300 simulated
    # seconds) of UNHEALTHY, before the rollout's 900 s deadline.
    assert "stayed UNHEALTHY" in deployment.reason and "(limit 300s)" in deployment.reason
    assert deployment.template not in templates_of(engine, "nemo-backend-mig")
    assert len(templates_of(engine, "nemo-backend-mig")) == 4


def test_blue_green_swaps_traffic_in_one_patch_and_retires_the_old_colour(engine):
    deployment = drive(new_release(engine, "prod", "ai-server"))
    assert deployment.state == S.SUCCEEDED, deployment.reason
    gcp = GcpAdapter.from_settings()
    assert gcp.serving_groups("nemo-prod", "nemo-ai-bes") == {"nemo-ai-green-mig"}
    assert templates_of(engine, "nemo-ai-green-mig") == [deployment.template] * 2
    assert templates_of(engine, "nemo-ai-blue-mig") == []  # retired after the warm window
    swaps = [op for op in deployment.operations if op["what"] == "swap"]
    assert len(swaps) == 1


def test_blue_green_swaps_back_when_verification_fails(engine):
    deployment = new_release(engine, "prod", "ai-server")
    engine.inject_fault("down", environment="prod", component="ai-server")
    deployment = drive(deployment)
    assert deployment.state == S.ROLLED_BACK, deployment.reason
    # The load balancer's 5xx share (all of them, once a minute has passed) fails it before the
    # probes' 300 s run out.
    assert (
        "verification failed" in deployment.reason and "above the 10 % ceiling" in deployment.reason
    )
    serving = GcpAdapter.from_settings().serving_groups("nemo-prod", "nemo-ai-bes")
    assert serving == {"nemo-ai-blue-mig"}
    assert len(templates_of(engine, "nemo-ai-blue-mig")) == 2
    assert templates_of(engine, "nemo-ai-green-mig") == []
    whats = [op["what"] for op in deployment.operations]
    assert whats.index("swap") < whats.index("swap-back") < whats.index("idle-retire")


def test_the_dev_vm_gets_the_new_image_by_metadata(engine):
    deployment = drive(new_release(engine, "dev", "backend"))
    assert deployment.state == S.SUCCEEDED, deployment.reason
    vm = GcpAdapter.from_settings().get_instance("nemo-dev", "asia-northeast3-a", "nemo-dev-vm")
    items = vm.metadata
    assert items["backend-image"] == deployment.target_image
    assert items["frontend-image"] != deployment.target_image  # the others are untouched
    assert deployment.previous["image"] and deployment.previous["image"] != items["backend-image"]


def test_an_unhealthy_template_rolls_back_a_rolling_update(engine, settings):
    # A rollout deadline shorter than the 300 s that UNHEALTHY instances are given: the rollout
    # is the one to give up, 120 simulated seconds in (the first instances boot in 20).
    settings.GANTRY_ROLLOUT_TIMEOUT = 120.0
    deployment = new_release(engine, "prod", "frontend")
    unhealthy(engine, deployment)
    deployment = drive(deployment)
    assert deployment.state == S.ROLLED_BACK, deployment.reason
    assert "not done after 120s" in deployment.reason
    assert deployment.template not in templates_of(engine, "nemo-frontend-mig")
    assert min(available_over_time(engine, "nemo-prod", "nemo-frontend-mig")) >= 4


@pytest.mark.parametrize(
    ("status", "reason"),
    [(429, None), (503, None), (403, "rateLimitExceeded"), (403, "userRateLimitExceeded")],
)
def test_throttling_and_outages_are_retried_and_visible(engine, status, reason):
    """Real Compute throttles with 403 rateLimitExceeded too: a healthy rollout goes on."""
    engine.inject_fault(
        "http_error",
        path="*/instanceGroupManagers/nemo-frontend-mig",
        method="PATCH",
        status=status,
        count=2,
        **({"reason": reason} if reason else {}),
    )
    deployment = drive(new_release(engine, "prod", "frontend"))
    assert deployment.state == S.SUCCEEDED, deployment.reason
    retries = list(deployment.events.filter(kind="retry").values_list("message", flat=True))
    assert len(retries) == 2 and retries[0].startswith("retry 1/")


def test_a_quota_refusal_is_not_retried_and_says_so(engine):
    engine.inject_fault(
        "http_error",
        path="*/instanceGroupManagers/nemo-frontend-mig",
        method="PATCH",
        status=403,
        reason="quotaExceeded",
        count=1,
    )
    deployment = drive(new_release(engine, "prod", "frontend"))
    assert deployment.state == S.ROLLED_BACK, deployment.reason
    assert "cause: GCP refused (403 quotaExceeded): " in deployment.reason
    assert deployment.events.filter(kind="retry").count() == 0
    assert templates_of(engine, "nemo-frontend-mig")[0] != deployment.template


def test_endless_throttling_gives_up_and_asks_for_a_person(engine, settings):
    """The API keeps refusing the patch: the rollout gives up, and so does the rollback, which
    needs the same API; the deployment says so instead of pretending it rolled back."""
    settings.GANTRY_MAX_RETRIES = 2
    engine.inject_fault(
        "http_error",
        path="*/instanceGroupManagers/nemo-frontend-mig",
        method="PATCH",
        status=503,
        count=50,
    )
    deployment = drive(new_release(engine, "prod", "frontend"))
    assert deployment.state == S.FAILED
    assert deployment.reason.startswith("rollback failed, needs a person: gave up after 2 retries")
    assert deployment.events.filter(kind="retry").count() == 4  # 2 rolling out, 2 rolling back
    assert templates_of(engine, "nemo-frontend-mig")[0] != deployment.template


def test_a_failed_operation_rolls_back_with_its_error(engine):
    engine.inject_fault(
        "operation_error",
        target="*/instanceGroupManagers/nemo-frontend-mig",
        operationType="patch",
        count=1,
        code="QUOTA_EXCEEDED",
        message="Quota 'CPUS' exceeded",
    )
    deployment = drive(new_release(engine, "prod", "frontend"))
    assert deployment.state == S.ROLLED_BACK
    assert "QUOTA_EXCEEDED" in deployment.reason
    assert templates_of(engine, "nemo-frontend-mig")[0] != deployment.template


def test_a_never_ending_operation_times_out_and_rolls_back(engine, sim_time):
    """The rollout deadline (GANTRY_ROLLOUT_TIMEOUT, 900 s) is read on the engine's clock, here
    the sandbox's simulated one: not a moment before 900 simulated seconds, and at once after."""
    engine.inject_fault(
        "operation_stuck",
        target="*/instanceGroupManagers/nemo-frontend-mig",
        operationType="patch",
        count=1,
    )
    deployment = step_until(
        new_release(engine, "prod", "frontend"),
        lambda d: any(op["what"].startswith("patch") for op in d.operations),
    )
    assert deployment.state == S.ROLLING_OUT
    started = deployment.state_changed_at  # stamped by the simulated clock, as deadlines read it
    assert 0 <= (sim_time.now() - started).total_seconds() < 60
    sim_time.sleep(899 - (sim_time.now() - started).total_seconds())
    advance(deployment.pk)
    deployment.refresh_from_db()
    assert deployment.state == S.ROLLING_OUT, deployment.reason
    sim_time.sleep(2)
    advance(deployment.pk)
    deployment.refresh_from_db()
    assert deployment.state == S.ROLLING_BACK
    assert "patch not done after 900s" in deployment.reason
    deployment = drive(deployment)
    assert deployment.state == S.ROLLED_BACK
    assert "patch not done after 900s" in deployment.reason


def test_a_failed_promotion_fails_without_touching_gcp(engine):
    deployment = new_release(engine, "prod", "frontend")
    deployment.release.digest = "sha256:" + "0" * 64  # not in the registry: the copy must fail
    deployment.release.save()
    deployment = drive(deployment)
    assert deployment.state == S.FAILED
    assert deployment.reason.startswith("promotion failed: Cloud Build")
    assert deployment.template == "" and deployment.operations == []


def rolling_out_with_an_operation(deployment):
    return deployment.state == S.ROLLING_OUT and bool(deployment.operations)


def test_cancel_during_rollout_rolls_back_at_a_safe_point(engine):
    deployment = step_until(new_release(engine, "prod", "frontend"), rolling_out_with_an_operation)
    Deployment.objects.filter(pk=deployment.pk).update(cancel_requested=True)
    deployment = drive(deployment)
    assert deployment.state == S.ROLLED_BACK
    assert "cancelled; rolling back" in deployment.reason
    assert deployment.template not in templates_of(engine, "nemo-frontend-mig")


def test_a_worker_killed_mid_step_leaves_work_the_next_one_finishes(engine):
    """A worker that dies holding the step lease: nobody else runs the step until the lease
    lapses; then the next worker finds the recorded build/template/operation and carries on."""
    from datetime import timedelta

    from django.utils import timezone

    from deployments.engine import claim

    deployment = step_until(new_release(engine, "prod", "frontend"), rolling_out_with_an_operation)
    recorded = list(deployment.operations)
    assert claim(deployment.pk, "worker-that-dies")
    assert advance(deployment.pk).delay >= 1.0  # lease held: the step is not run twice
    Deployment.objects.filter(pk=deployment.pk).update(
        lease_until=timezone.now() - timedelta(seconds=1)
    )
    deployment = drive(deployment)
    assert deployment.state == S.SUCCEEDED, deployment.reason
    assert [op["id"] for op in deployment.operations[: len(recorded)]] == [
        op["id"] for op in recorded
    ]
    assert sum(op["what"] == "template" for op in deployment.operations) == 1
    assert sum(op["what"].startswith("patch") for op in deployment.operations) == 1
