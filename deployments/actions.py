"""What deployers do by hand: cancel a deployment, redeploy a past release, roll a component
back to an earlier good release; and what a person may do to a deployment now, for its page."""

import hashlib
from dataclasses import dataclass

from django.core.exceptions import PermissionDenied
from django.db import transaction

from audit.models import AuditEvent
from environments.models import Component

from .approvals import own_build_refusal, why_not_approve
from .models import Deployment, InvalidTransition, Release
from .releases import new_deployment
from .tasks import enqueue_advance

REASON_MAX = 500


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


def redeploy(release, user, *, skip_approval_reason: str = "", request=None) -> Deployment:
    """Deploy a past release again (a rollback to it). Where the environment needs approval,
    the new deployment waits for it like any other, even for a release that ran there before:
    approving a build once is not approving it for ever. Unless `user` may approve, is not one
    of the build's GitHub actors, and says why (`skip_approval_reason`): then it is queued at
    once, and that is audited as `deployment.approval_skipped`."""
    if not user.has_perm("deployments.start_deployment"):
        raise PermissionDenied("Only deployers can redeploy releases.")
    reason = skip_approval_reason.strip()
    gated = release.component.environment.requires_approval
    skip = bool(reason) and gated
    if skip:
        if not user.has_perm("deployments.approve_deployment"):
            raise PermissionDenied("Only approvers may deploy without a new approval.")
        if len(reason) > REASON_MAX:
            raise ActionError(f"Say why in at most {REASON_MAX} characters.")
        if refusal := own_build_refusal(release, user):
            raise ActionError(f"{refusal[0]} It must go through approval.")
    with transaction.atomic():
        deployment = new_deployment(release, actor=user, request=request, approved=skip)
        note = f"; approval skipped: {reason}" if skip else ""
        deployment.log("step", f"redeploy requested by {user.get_username()}{note}")
        if skip:
            AuditEvent.record(
                "deployment.approval_skipped",
                actor=user,
                obj=deployment,
                message=reason,
                data={"release": release.pk},
                request=request,
            )
    return deployment


def rollback_refusal(component: Component, release: Release) -> str | None:
    """Why `release` cannot be rolled back to on `component`, or None when it can: it must be
    a release of that component, one of its deployments there must have succeeded (a build that
    never ran there is a new deployment, not a rollback), and it must not be what runs now."""
    if release.component_id != component.pk:
        return f"{release} is a release of {release.component}, not of {component}."
    running = Deployment.objects.running_on(component)
    if running and running.release_id == release.pk:
        return f"{release} is what runs on {component} now; there is nothing to roll back."
    succeeded = Deployment.objects.filter(
        component=component, release=release, state=Deployment.S.SUCCEEDED
    )
    if not succeeded.exists():
        return (
            f"{release} never succeeded on {component}: only a release that ran there can be "
            "rolled back to."
        )
    return None


def rollback(
    component: Component,
    release: Release,
    user,
    *,
    skip_approval_reason: str = "",
    request=None,
) -> Deployment:
    """Roll `component` back to an earlier good release (rollback_refusal says which): a
    redeploy of it, so where the environment needs approval it waits for it again unless an
    approver says why not (redeploy's rules). Audited as `deployment.rollback_requested`, from
    the release running now to `release`. A refusal writes nothing."""
    if not user.has_perm("deployments.start_deployment"):
        raise PermissionDenied("Only deployers can roll back.")
    with transaction.atomic():
        # One rollback decision at a time per component: what runs now cannot change under it.
        Component.objects.select_for_update().get(pk=component.pk)
        if refusal := rollback_refusal(component, release):
            raise ActionError(refusal)
        running = Deployment.objects.running_on(component)
        deployment = redeploy(
            release, user, skip_approval_reason=skip_approval_reason, request=request
        )
        deployment.log(
            "step",
            f"rollback from {running.release} to {release} requested by {user.get_username()}",
        )
        AuditEvent.record(
            "deployment.rollback_requested",
            actor=user,
            obj=deployment,
            message=f"{component}: {running.release} → {release}",
            data={
                "from": {"release": running.release_id, "deployment": running.pk},
                "to": {"release": release.pk},
                "approval_skipped": bool(skip_approval_reason.strip())
                and component.environment.requires_approval,
            },
            request=request,
        )
    return deployment


@dataclass(frozen=True)
class Available:
    """What a person may do to a deployment now, as its page offers it."""

    decide: bool  # the approve/reject form (an approver, and it waits for a decision)
    why_not_approve: str | None  # shown where the Approve button would be
    cancel: bool
    override_freeze: bool

    @property
    def key(self) -> str:
        """Changes exactly when the offer does: the page's live part compares it and redraws
        the actions only then, so a form someone is typing in is never redrawn under them."""
        text = repr((self.decide, self.why_not_approve, self.cancel, self.override_freeze))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def available(deployment: Deployment, user) -> Available:
    deciding = deployment.state == Deployment.S.PENDING_APPROVAL
    return Available(
        decide=deciding and user.has_perm("deployments.approve_deployment"),
        why_not_approve=why_not_approve(deployment, user) if deciding else None,
        cancel=(
            user.has_perm("deployments.cancel_deployment")
            and not deployment.is_final
            and deployment.state != Deployment.S.ROLLING_BACK
            and not deployment.cancel_requested
        ),
        override_freeze=(
            user.has_perm("deployments.override_freeze") and deployment.freeze is not None
        ),
    )


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
