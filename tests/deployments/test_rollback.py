"""Rolling a component back to an earlier good release (actions.rollback): which releases may be
rolled back to, approval again where the environment needs it, and refusals that write nothing."""

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied
from django.utils import timezone

from audit.models import AuditEvent
from deployments import actions
from deployments.models import Deployment, DeploymentEvent
from environments.models import Component

pytestmark = pytest.mark.django_db
S = Deployment.State


@pytest.fixture
def history(make_deployment):
    """make_history("prod") -> (component, old good deployment, the one running now)."""

    def make(environment="prod", component="backend"):
        now = timezone.now()
        old = make_deployment(
            environment,
            component,
            state=S.SUCCEEDED,
            started_at=now - timedelta(hours=2, minutes=5),
            finished_at=now - timedelta(hours=2),
        )
        running = make_deployment(
            environment,
            component,
            state=S.SUCCEEDED,
            started_at=now - timedelta(hours=1, minutes=5),
            finished_at=now - timedelta(hours=1),
        )
        target = Component.objects.get(environment__name=environment, name=component)
        return target, old, running

    return make


def counts():
    return (Deployment.objects.count(), DeploymentEvent.objects.count(), AuditEvent.objects.count())


def test_a_rollback_where_no_approval_is_needed_is_queued_and_audited_from_and_to(
    history, make_user
):
    component, old, running = history("dev")
    user = make_user("deployer", "dana")

    deployment = actions.rollback(component, old.release, user)

    assert (deployment.release, deployment.component, deployment.state) == (
        old.release,
        component,
        S.QUEUED,
    )
    assert deployment.requested_by == "dana"
    assert Deployment.objects.count() == 3
    audit = AuditEvent.objects.get(action="deployment.rollback_requested")
    assert (audit.actor, audit.object_id) == ("dana", str(deployment.pk))
    assert audit.data["from"] == {"release": running.release_id, "deployment": running.pk}
    assert audit.data["to"] == {"release": old.release_id}
    assert audit.data["approval_skipped"] is False
    assert deployment.events.filter(
        message=f"rollback from {running.release} to {old.release} requested by dana"
    ).exists()
    assert Deployment.objects.running_on(component) == running  # until the rollback succeeds


def test_where_the_environment_needs_approval_the_rollback_waits_for_it(history, make_user):
    component, old, _ = history("prod")
    deployment = actions.rollback(component, old.release, make_user("deployer"))
    assert deployment.state == S.PENDING_APPROVAL and deployment.approvals_required == 1
    assert not AuditEvent.objects.filter(action="deployment.approval_skipped").exists()
    assert AuditEvent.objects.filter(action="deployment.rollback_requested").count() == 1


def test_an_approver_who_rolls_back_may_skip_the_approval_by_saying_why(history, make_user):
    component, old, _ = history("prod")
    reason = "checkout broken since v2, incident 7"

    deployment = actions.rollback(
        component, old.release, make_user("admin", "carol"), skip_approval_reason=f" {reason} "
    )

    assert deployment.state == S.QUEUED and deployment.approvals_required == 0
    skipped = AuditEvent.objects.get(action="deployment.approval_skipped")
    assert (skipped.actor, skipped.message, skipped.object_id) == (
        "carol",
        reason,
        str(deployment.pk),
    )
    requested = AuditEvent.objects.get(action="deployment.rollback_requested")
    assert requested.data["approval_skipped"] is True


def test_a_rollback_supersedes_what_waits_on_the_component(history, make_deployment, make_user):
    component, old, _ = history("prod")
    waiting = make_deployment("prod", "backend", state=S.PENDING_APPROVAL, approvals_required=1)
    actions.rollback(component, old.release, make_user("deployer"))
    waiting.refresh_from_db()
    assert waiting.state == S.SUPERSEDED


def test_once_the_rollback_succeeded_the_release_it_replaced_is_a_target_in_turn(
    history, make_user
):
    component, old, replaced = history("dev")
    back = actions.rollback(component, old.release, make_user("deployer"))
    Deployment.objects.filter(pk=back.pk).update(state=S.SUCCEEDED, finished_at=timezone.now())

    assert Deployment.objects.running_on(component).pk == back.pk
    assert "is what runs on" in actions.rollback_refusal(component, old.release)
    assert actions.rollback_refusal(component, replaced.release) is None


@pytest.mark.parametrize(
    ("which", "message"),
    [
        ("other component", "is a release of prod/frontend, not of"),
        ("never succeeded", "never succeeded on"),
        ("failed", "never succeeded on"),
        ("running now", "is what runs on"),
    ],
)
def test_refusals_say_why_and_write_nothing(history, make_deployment, make_user, which, message):
    component, _, running = history("prod")
    release = {
        "other component": lambda: make_deployment("prod", "frontend", state=S.SUCCEEDED).release,
        "never succeeded": lambda: make_deployment("prod", "backend", state=S.SUPERSEDED).release,
        "failed": lambda: make_deployment("prod", "backend", state=S.FAILED).release,
        "running now": lambda: running.release,
    }[which]()
    before = counts()

    with pytest.raises(actions.ActionError, match=message):
        actions.rollback(component, release, make_user("admin", "carol"), skip_approval_reason="x")

    assert counts() == before


def test_a_release_of_another_component_names_both(history, make_deployment):
    component, _, _ = history("prod")
    other = make_deployment("prod", "frontend", state=S.SUCCEEDED).release
    refusal = actions.rollback_refusal(component, other)
    assert refusal == f"{other} is a release of {other.component}, not of {component}."


@pytest.mark.parametrize(
    ("role", "reason"),
    [("viewer", ""), ("approver", ""), ("deployer", "trust me")],  # a deployer may not skip
)
def test_who_may_not_roll_back_is_refused_and_nothing_is_written(history, make_user, role, reason):
    component, old, _ = history("prod")
    before = counts()
    with pytest.raises(PermissionDenied):
        actions.rollback(component, old.release, make_user(role), skip_approval_reason=reason)
    assert counts() == before


def test_the_builds_author_cannot_skip_its_approval_and_nothing_is_written(history, make_user):
    component, old, _ = history("prod")  # built by dev-alice
    before = counts()
    with pytest.raises(actions.ActionError, match="It must go through approval"):
        actions.rollback(
            component, old.release, make_user("admin", "dev-alice"), skip_approval_reason="mine"
        )
    assert counts() == before


def test_a_reason_too_long_is_refused_and_nothing_is_written(history, make_user):
    component, old, _ = history("prod")
    before = counts()
    with pytest.raises(actions.ActionError, match="at most 500 characters"):
        actions.rollback(
            component, old.release, make_user("admin", "carol"), skip_approval_reason="x" * 501
        )
    assert counts() == before


def test_the_history_row_offers_exactly_what_the_service_accepts(history, make_deployment):
    component, old, running = history("dev")
    failed = make_deployment("dev", "backend", state=S.FAILED)
    current = Deployment.objects.running_on(component)
    assert current == running
    for row in Deployment.objects.history(component):
        offered = row.is_rollback_target(current)
        assert offered == (actions.rollback_refusal(component, row.release) is None), row
    assert [
        d.pk for d in Deployment.objects.history(component) if d.is_rollback_target(current)
    ] == [old.pk]
    assert not failed.is_rollback_target(current)
