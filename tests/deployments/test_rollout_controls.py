"""A person steering a running rollout: pause, resume, promote now and abort a canary; swap a
blue-green deployment back while the old colour is warm. Each is a model method behind
actions.py, audited and permission-checked, and the engine acts on it at its next step.

Time is the sandbox's, frozen (the `engine` fixture): a pause "for an hour" is an hour of
simulated seconds, reached after the same steps on any machine.
"""

import pytest
from django.core.exceptions import PermissionDenied

from audit.models import AuditEvent
from deployments import actions
from deployments.engine import advance
from deployments.models import Deployment
from gcp.adapter import GcpAdapter

from .engine_helpers import drive, new_release, sim_time, step_until

S = Deployment.State
pytestmark = pytest.mark.django_db


def timeline(deployment) -> str:
    return " | ".join(deployment.events.order_by("id").values_list("message", flat=True))


def audited(deployment) -> list[str]:
    rows = AuditEvent.objects.filter(object_id=str(deployment.pk)).order_by("id")
    return list(rows.values_list("action", flat=True))


def versions(sandbox, mig="nemo-backend-mig") -> list[str]:
    return [v["name"] for v in sandbox.mig("nemo-prod", mig).config["versions"]]


def canary_verifying(deployment) -> bool:
    return deployment.state == S.VERIFYING and deployment.progress.get("phase") == "canary"


def warm(deployment) -> bool:
    return deployment.warm_window and deployment.progress.get("warm")


def test_a_paused_canary_holds_past_every_deadline_until_resumed(engine, make_user):
    deployer = make_user("deployer")
    deployment = step_until(new_release(engine, "prod", "backend"), canary_verifying)
    actions.pause(deployment.pk, deployer, "latency looks odd")
    deployment.refresh_from_db()
    assert deployment.paused_by == "deployer" and deployment.paused_at
    assert actions.available(deployment, deployer).resume
    # An hour passes: twelve times the verify deadline. Nothing moves, nothing is called.
    calls = len(engine.gcp_calls)
    for _ in range(12):
        outcome = advance(deployment.pk)
        sim_time().sleep(outcome.delay)
    deployment.refresh_from_db()
    assert deployment.state == S.VERIFYING and canary_verifying(deployment)
    assert len(engine.gcp_calls) == calls
    assert versions(engine) == ["stable", "canary"]
    assert deployment.progress["waiting"].startswith("paused by deployer")
    actions.resume(deployment.pk, deployer)
    deployment = drive(deployment)
    assert deployment.state == S.SUCCEEDED, deployment.reason
    assert "paused by deployer: latency looks odd" in timeline(deployment)
    assert "resumed by deployer" in timeline(deployment)
    assert [a for a in audited(deployment) if a in ("deployment.paused", "deployment.resumed")] == [
        "deployment.paused",
        "deployment.resumed",
    ]


def test_verification_starts_over_after_a_pause(engine, make_user):
    deployer = make_user("deployer")
    deployment = step_until(
        new_release(engine, "prod", "backend"),
        lambda d: canary_verifying(d) and d.verification.get("passes") == 1,
    )
    actions.pause(deployment.pk, deployer)
    sim_time().sleep(600)
    actions.resume(deployment.pk, deployer)
    deployment.refresh_from_db()
    advance(deployment.pk)
    deployment.refresh_from_db()
    assert deployment.verification["since"] == deployment.resumed_at.isoformat()
    assert len(deployment.verification["checks"]) == 1  # the one before the pause is gone


def test_promote_now_skips_the_canary_observation_then_verifies_the_whole_group(
    engine, make_user, settings
):
    settings.GANTRY_VERIFY_PASSES = 5
    approver = make_user("approver")
    deployment = step_until(new_release(engine, "prod", "backend"), canary_verifying)
    actions.promote_now(deployment.pk, approver, "hotfix for the checkout outage")
    deployment = drive(deployment)
    assert deployment.state == S.SUCCEEDED, deployment.reason
    assert templates(engine) == [deployment.template] * 4
    text = timeline(deployment)
    assert "verifying → rolling_out: promoted early by approver" in text
    assert "canary healthy" not in text and "canary analysis passed" not in text
    assert deployment.verification["passes"] == 5  # the whole group, as in any rollout
    event = AuditEvent.objects.get(action="deployment.promoted_early")
    assert event.message == "hotfix for the checkout outage" and event.actor == "approver"


def test_a_canary_promoted_while_it_rolls_out_goes_straight_to_every_instance(engine, make_user):
    approver = make_user("approver")
    deployment = step_until(
        new_release(engine, "prod", "backend"), lambda d: d.started_operation("patch-canary")
    )
    assert deployment.state == S.ROLLING_OUT
    actions.promote_now(deployment.pk, approver, "known good build")
    deployment = drive(deployment)
    assert deployment.state == S.SUCCEEDED, deployment.reason
    assert [op["what"] for op in deployment.operations if op["what"].startswith("patch")] == [
        "patch-canary",
        "patch-promote",
    ]
    assert "promoted early by approver: every instance moves" in timeline(deployment)


def templates(sandbox, mig="nemo-backend-mig"):
    return sorted(i.template.rsplit("/", 1)[-1] for i in sandbox.mig("nemo-prod", mig).live())


def test_aborting_a_canary_takes_it_away_with_the_reason_as_the_cause(engine, make_user):
    deployer = make_user("deployer")
    deployment = step_until(new_release(engine, "prod", "backend"), canary_verifying)
    actions.pause(deployment.pk, deployer)
    actions.abort(deployment.pk, deployer, "p99 doubled")
    deployment = drive(deployment)
    assert deployment.state == S.ROLLED_BACK
    assert "rolling_back: canary aborted by deployer: p99 doubled; rolling back" in timeline(
        deployment
    )
    assert "cause: canary aborted by deployer: p99 doubled" in deployment.reason
    assert deployment.template not in templates(engine)
    assert len(templates(engine)) == 4
    assert "deployment.canary_aborted" in audited(deployment)


def test_swap_back_in_the_warm_window_puts_traffic_on_the_old_colour(engine, make_user):
    deployer = make_user("deployer")
    deployment = step_until(new_release(engine, "prod", "ai-server"), warm)
    gcp = GcpAdapter.from_settings()
    assert gcp.serving_groups("nemo-prod", "nemo-ai-bes") == {"nemo-ai-green-mig"}
    assert actions.available(deployment, deployer).swap_back
    assert not actions.available(deployment, deployer).cancel  # swap back says it better
    actions.swap_back(deployment.pk, deployer, "errors from the new model")
    deployment = drive(deployment)
    assert deployment.state == S.ROLLED_BACK, deployment.reason
    assert "swapped back by deployer: errors from the new model" in deployment.reason
    assert gcp.serving_groups("nemo-prod", "nemo-ai-bes") == {"nemo-ai-blue-mig"}
    assert templates(engine, "nemo-ai-green-mig") == []
    assert len(templates(engine, "nemo-ai-blue-mig")) == 2
    assert "deployment.swapped_back" in audited(deployment)


def test_a_cancel_that_arrives_after_the_old_colour_is_retired_lets_it_finish(engine, make_user):
    """Nothing is left to swap back to, so the engine says so and finishes, never serving a
    colour that is going to zero."""
    deployment = step_until(
        new_release(engine, "prod", "ai-server"),
        lambda d: d.started_operation("retire-old"),
    )
    # As if the request was written while the step that retired blue ran.
    Deployment.objects.filter(pk=deployment.pk).update(cancel_requested=True)
    deployment = drive(deployment)
    assert deployment.state == S.SUCCEEDED, deployment.reason
    assert "too late to cancel" in timeline(deployment)
    serving = GcpAdapter.from_settings().serving_groups("nemo-prod", "nemo-ai-bes")
    assert serving == {"nemo-ai-green-mig"}


def test_a_request_written_during_a_step_survives_the_steps_save(engine, make_user):
    """The engine holds an older copy of the row; its transition saves only what it sets."""
    deployer = make_user("deployer")
    deployment = step_until(new_release(engine, "prod", "frontend"), lambda d: d.operations)
    stale = Deployment.objects.get(pk=deployment.pk)
    actions.cancel(deployment.pk, deployer, "wrong build")
    stale.transition(S.VERIFYING, reason="stable")
    fresh = Deployment.objects.get(pk=deployment.pk)
    assert fresh.cancel_requested and fresh.cancel_reason == "cancelled by deployer: wrong build"
    assert fresh.state == S.VERIFYING
    deployment = drive(fresh)
    assert deployment.state == S.ROLLED_BACK
    assert "cancelled by deployer: wrong build; rolling back" in timeline(deployment)


@pytest.mark.parametrize(
    ("component", "until", "act"),
    [
        ("frontend", lambda d: d.operations, "pause"),  # rolling: no canary
        ("frontend", lambda d: d.operations, "abort"),
        ("backend", canary_verifying, "swap_back"),  # a canary is not blue-green
        ("ai-server", lambda d: d.state == S.ROLLING_OUT, "swap_back"),  # not swapped yet
        ("backend", canary_verifying, "resume"),  # not paused
    ],
)
def test_a_control_that_does_not_fit_is_refused_and_writes_nothing(
    engine, make_user, component, until, act
):
    deployer = make_user("deployer")
    deployment = step_until(new_release(engine, "prod", component), until)
    events, audits = deployment.events.count(), AuditEvent.objects.count()
    with pytest.raises(actions.ActionError):
        getattr(actions, act)(deployment.pk, deployer, "because")
    fresh = Deployment.objects.get(pk=deployment.pk)
    assert (fresh.paused_at, fresh.cancel_requested, fresh.cancel_reason) == (None, False, "")
    assert fresh.events.count() == events and AuditEvent.objects.count() == audits


def test_who_may_steer_a_canary(engine, make_user):
    deployment = step_until(new_release(engine, "prod", "backend"), canary_verifying)
    viewer, deployer, approver = (make_user(r) for r in ("viewer", "deployer", "approver"))
    for act in (actions.pause, actions.abort):
        with pytest.raises(PermissionDenied):
            act(deployment.pk, viewer, "")
        with pytest.raises(PermissionDenied):
            act(deployment.pk, approver, "")
    # Promoting early in prod skips what approvers rely on: theirs to do, not a deployer's.
    with pytest.raises(PermissionDenied):
        actions.promote_now(deployment.pk, deployer, "trust me")
    with pytest.raises(actions.ActionError, match="Say why"):
        actions.promote_now(deployment.pk, approver, "  ")
    offered = actions.available(deployment, deployer)
    assert (offered.pause, offered.abort, offered.promote, offered.cancel) == (
        True,
        True,
        False,
        False,
    )
    assert actions.available(deployment, approver).promote
    fresh = Deployment.objects.get(pk=deployment.pk)
    assert not (fresh.paused_at or fresh.cancel_requested or fresh.promote_requested_by)
    assert not AuditEvent.objects.filter(action__startswith="deployment.p").exclude(
        action="deployment.promoting"
    )


def test_a_deployer_promotes_a_canary_where_no_approval_is_needed(engine, make_user):
    from environments.models import Environment

    Environment.objects.filter(name="prod").update(requires_approval=False)
    deployer = make_user("deployer")
    deployment = step_until(new_release(engine, "prod", "backend"), canary_verifying)
    assert actions.available(deployment, deployer).promote
    actions.promote_now(deployment.pk, deployer, "staging soak done")
    assert drive(deployment).state == S.SUCCEEDED
