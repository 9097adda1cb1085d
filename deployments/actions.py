"""What deployers do by hand: cancel a deployment; pause, resume, promote or abort a canary;
swap a blue-green deployment back; redeploy a past release, roll a component back to an earlier
good release; and what a person may do to a deployment now, for its page."""

import hashlib
from dataclasses import astuple, dataclass

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


def cancel(deployment_id, user, reason: str = "", request=None) -> Deployment:
    """Waiting deployments end at once; a running one stops at its next safe point and rolls
    back (Deployment.request_cancel)."""
    if not user.has_perm("deployments.cancel_deployment"):
        raise PermissionDenied("Only deployers can cancel deployments.")

    def change(deployment):
        if deployment.state in Deployment.WAITING:
            why = f"cancelled by {user.get_username()}" + (f": {reason}" if reason else "")
            deployment.transition(Deployment.S.CANCELLED, actor=user, reason=why, request=request)
            enqueue_next(deployment)
        else:
            deployment.request_cancel(user, reason.strip(), request=request)

    return _steer(deployment_id, change)


def _steer(deployment_id, change) -> Deployment:
    """Apply a person's request to a running deployment under its row lock, then wake the
    engine, which acts on it at its next step. A refusal (InvalidTransition) writes nothing."""
    with transaction.atomic():
        deployment = (
            Deployment.objects.select_for_update()
            .select_related("component__environment")
            .get(pk=deployment_id)
        )
        try:
            change(deployment)
        except InvalidTransition as exc:
            raise ActionError(str(exc)) from None
        enqueue_advance(deployment.pk)
    return deployment


def _steering(user, what: str) -> None:
    if not user.has_perm("deployments.cancel_deployment"):
        raise PermissionDenied(f"Only deployers can {what}.")


def pause(deployment_id, user, reason: str = "", request=None) -> Deployment:
    """Hold a running canary where it is (Deployment.pause)."""
    _steering(user, "pause a canary")
    return _steer(deployment_id, lambda d: d.pause(user, reason.strip(), request=request))


def resume(deployment_id, user, reason: str = "", request=None) -> Deployment:
    """Let a paused canary carry on (Deployment.resume)."""
    _steering(user, "resume a canary")
    return _steer(deployment_id, lambda d: d.resume(user, reason.strip(), request=request))


def abort(deployment_id, user, reason: str = "", request=None) -> Deployment:
    """Take a running canary away (Deployment.abort)."""
    _steering(user, "abort a canary")
    return _steer(deployment_id, lambda d: d.abort(user, reason.strip(), request=request))


def swap_back(deployment_id, user, reason: str = "", request=None) -> Deployment:
    """Send a blue-green deployment's traffic back to the still-warm old colour."""
    _steering(user, "swap traffic back")
    return _steer(deployment_id, lambda d: d.swap_back(user, reason.strip(), request=request))


def may_promote(deployment: Deployment, user) -> bool:
    """Promoting early skips the check approvers relied on: where the environment needs
    approval, only an approver may; elsewhere a deployer."""
    if deployment.component.environment.requires_approval:
        return user.has_perm("deployments.approve_deployment")
    return user.has_perm("deployments.start_deployment")


def promote_now(deployment_id, user, reason: str, request=None) -> Deployment:
    """Promote a running canary before it is judged (Deployment.promote_now); needs a reason."""

    def change(deployment):
        if not may_promote(deployment, user):
            raise PermissionDenied(
                "Only approvers can promote a canary early where its environment needs approval."
                if deployment.component.environment.requires_approval
                else "Only deployers can promote a canary early."
            )
        if len(reason) > REASON_MAX:
            raise ActionError(f"Say why in at most {REASON_MAX} characters.")
        deployment.promote_now(user, reason, request=request)

    return _steer(deployment_id, change)


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
    pause: bool = False
    resume: bool = False
    promote: bool = False
    abort: bool = False
    swap_back: bool = False

    @property
    def key(self) -> str:
        """Changes exactly when the offer does: the page's live part compares it and redraws
        the actions only then, so a form someone is typing in is never redrawn under them."""
        return hashlib.sha256(repr(astuple(self)).encode()).hexdigest()[:16]


def available(deployment: Deployment, user) -> Available:
    """A canary offers pause/resume, promote and abort, and a blue-green warm window offers
    swap back, in place of a plain cancel (which would do the same as abort or swap back)."""
    deciding = deployment.state == Deployment.S.PENDING_APPROVAL
    steers = user.has_perm("deployments.cancel_deployment")
    canary, warm = deployment.canary_running, deployment.warm_window
    return Available(
        decide=deciding and user.has_perm("deployments.approve_deployment"),
        why_not_approve=why_not_approve(deployment, user) if deciding else None,
        cancel=(
            steers
            and deployment.stoppable
            and not deployment.cancel_requested
            and not (canary or warm)
        ),
        override_freeze=(
            user.has_perm("deployments.override_freeze") and deployment.freeze is not None
        ),
        pause=steers and canary and not deployment.paused_at,
        resume=steers and canary and bool(deployment.paused_at),
        promote=canary and may_promote(deployment, user),
        abort=steers and canary,
        swap_back=steers and warm,
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
