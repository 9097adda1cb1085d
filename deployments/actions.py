"""What deployers do by hand: cancel a deployment, redeploy a past release."""

from django.core.exceptions import PermissionDenied
from django.db import transaction

from .models import Deployment, InvalidTransition
from .releases import new_deployment
from .tasks import enqueue_advance


class ActionError(Exception):
    """An action the current state does not allow; the message says why."""


def cancel(deployment_id, user, request=None) -> Deployment:
    """Waiting deployments end at once; a running one stops at its next safe point and rolls
    back (the engine sees `cancel_requested`)."""
    if not user.has_perm("deployments.cancel_deployment"):
        raise PermissionDenied("Only deployers can cancel deployments.")
    with transaction.atomic():
        deployment = Deployment.objects.select_for_update().get(pk=deployment_id)
        reason = f"cancelled by {user.get_username()}"
        if deployment.state in Deployment.WAITING:
            deployment.transition(
                Deployment.S.CANCELLED, actor=user, reason=reason, request=request
            )
            enqueue_next(deployment)
        elif deployment.state in (
            Deployment.S.PROMOTING,
            Deployment.S.ROLLING_OUT,
            Deployment.S.VERIFYING,
        ):
            if not deployment.cancel_requested:
                deployment.cancel_requested = True
                deployment.save(update_fields=["cancel_requested"])
                deployment.log("step", f"{reason}; stopping at the next safe point")
                enqueue_advance(deployment.pk)
        else:
            raise ActionError(
                f"A deployment that is {deployment.get_state_display().lower()} "
                "cannot be cancelled."
            )
    return deployment


def redeploy(release, user, request=None) -> Deployment:
    """Deploy a past release again (a rollback to it). A release that already succeeded in its
    environment needs no new approval; one that never did waits like a new one."""
    if not user.has_perm("deployments.start_deployment"):
        raise PermissionDenied("Only deployers can redeploy releases.")
    with transaction.atomic():
        proven = release.deployments.filter(state=Deployment.S.SUCCEEDED).exists()
        deployment = new_deployment(release, actor=user, request=request, approved=proven)
        deployment.log("step", f"redeploy requested by {user.get_username()}")
    return deployment


def override_freeze(deployment_id, user, reason, request=None) -> Deployment:
    """Let one waiting deployment start during its environment's deploy freeze."""
    if not user.has_perm("deployments.override_freeze"):
        raise PermissionDenied("Only admins can override a deploy freeze.")
    with transaction.atomic():
        deployment = Deployment.objects.select_for_update().get(pk=deployment_id)
        try:
            deployment.override_freeze(user, reason, request=request)
        except InvalidTransition as exc:
            raise ActionError(str(exc)) from None
        if deployment.state == Deployment.S.QUEUED:
            enqueue_advance(deployment.pk)
    return deployment


def enqueue_next(deployment):
    """When a deployment leaves the line or ends, let the next queued one on its component go."""
    following = Deployment.next_queued(deployment.component_id)
    if following:
        enqueue_advance(following.pk)
