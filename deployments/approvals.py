"""Approving and rejecting deployments that wait for a person.

The rules: only approvers decide; nobody approves a build a GitHub run made (one with an author,
or from the webhook) unless Gantry knows their GitHub login (`portal.models.github_login`: set by
the topology's `people:` section or a superuser, never their username), and neither the run's
actor nor its triggering actor may approve it, compared after normalisation (both refusals are
audited, as `deployment.approval_refused`); anyone with the permission may reject; each person
decides once (until their approval expires); one rejection ends it; enough live approvals queue
the deployment. The deployment row is locked while deciding, so two approvers at the same moment
produce two approval rows and exactly one queued deployment.
"""

from datetime import timedelta

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from audit.models import AuditEvent
from portal.models import github_login

from .models import Approval, Deployment
from .tasks import enqueue_advance

ALREADY_APPROVED = "You have already approved this deployment."


class ApprovalError(Exception):
    """A decision that the rules refuse; the message tells the person why."""


class SelfApprovalError(ApprovalError):
    """The build's author tried to approve it, or someone Gantry cannot tell apart from them;
    audited as `deployment.approval_refused` with `reason`."""

    def __init__(self, message, deployment, reason="self-approval"):
        super().__init__(message)
        self.deployment = deployment
        self.reason = reason


def own_build_refusal(release, user, login: str | None = None) -> tuple[str, str] | None:
    """(why, reason code) when `user` may not approve `release`, a build a GitHub run made,
    because they are one of its actors or Gantry does not know their GitHub login (so it cannot
    tell); None when nothing stands in the way. `login`: the user's github_login, normalised,
    when the caller has it already (lists of many users or deployments), else it is looked up."""
    if not release.from_github:
        return None
    login = github_login(user) if login is None else login
    if not login:
        actors = ", ".join(sorted(release.github_actors)) or "unknown"
        return (
            "Gantry does not know your GitHub login, so it cannot tell whether you triggered "
            f"this build (GitHub user {actors}). An admin can add you to the people: section "
            "of the topology (manage.py load_topology), or a superuser can set your GitHub "
            f"login in the admin (Users → {user.get_username()}).",
            "no-github-login",
        )
    if login in release.github_actors:
        return (
            f"You triggered this build (GitHub user {login}); someone else must approve it.",
            "self-approval",
        )
    return None


def check_not_own_build(deployment, user) -> None:
    """Raise SelfApprovalError when own_build_refusal refuses `user` the deployment's build."""
    if refusal := own_build_refusal(deployment.release, user):
        raise SelfApprovalError(refusal[0], deployment, reason=refusal[1])


def why_not_approve(deployment, user) -> str | None:
    """Why `user` may not approve `deployment` now (for pages, where the button would be), or
    None when they may. The same rules `decide` enforces."""
    if not user.has_perm("deployments.approve_deployment"):
        return "Only approvers can approve deployments."
    if deployment.state != Deployment.S.PENDING_APPROVAL:
        return None
    try:
        check_not_own_build(deployment, user)
    except SelfApprovalError as exc:
        return str(exc)
    if live_approvals(deployment).filter(user=user).exists():
        return ALREADY_APPROVED
    return None


def approval_cutoff():
    """Approvals made before this moment no longer count: GANTRY_APPROVAL_TTL seconds ago."""
    return timezone.now() - timedelta(seconds=settings.GANTRY_APPROVAL_TTL)


def live_approvals(deployment):
    """Approvals that still count: not older than GANTRY_APPROVAL_TTL seconds."""
    return deployment.approvals.filter(
        decision=Approval.Decision.APPROVE, created_at__gte=approval_cutoff()
    )


def decide(deployment_id, user, decision, comment="", request=None) -> Deployment:
    """Record `user`'s approve/reject decision and move the deployment on if it settles it."""
    if not user.has_perm("deployments.approve_deployment"):
        raise PermissionDenied("Only approvers can approve or reject deployments.")
    decision = Approval.Decision(decision)
    try:
        return _decide(deployment_id, user, decision, comment, request)
    except SelfApprovalError as exc:
        # After the decision's transaction has rolled back, so the refusal itself is kept.
        release = exc.deployment.release
        AuditEvent.record(
            "deployment.approval_refused",
            actor=user,
            obj=exc.deployment,
            message=str(exc),
            data={
                "reason": exc.reason,
                "author": release.author,
                "triggering_actor": release.triggering_actor,
                "comment": comment,
            },
            request=request,
        )
        raise


def _decide(deployment_id, user, decision, comment, request) -> Deployment:
    with transaction.atomic():
        deployment = (
            Deployment.objects.select_for_update()
            .select_related("release", "component__environment")
            .get(pk=deployment_id)
        )
        if deployment.state != Deployment.S.PENDING_APPROVAL:
            raise ApprovalError(
                f"This deployment is {deployment.get_state_display().lower()}; "
                "it no longer waits for a decision."
            )
        if decision == Approval.Decision.APPROVE:
            check_not_own_build(deployment, user)
        if live_approvals(deployment).filter(user=user).exists():
            raise ApprovalError(ALREADY_APPROVED)
        Approval.objects.create(
            deployment=deployment, user=user, decision=decision, comment=comment
        )
        verb = "approved" if decision == Approval.Decision.APPROVE else "rejected"
        AuditEvent.record(
            f"deployment.{decision}",
            actor=user,
            obj=deployment,
            message=comment,
            request=request,
        )
        deployment.log(
            "step", f"{user.get_username()} {verb}" + (f": {comment}" if comment else "")
        )
        if decision == Approval.Decision.REJECT:
            reason = f"rejected by {user.get_username()}" + (f": {comment}" if comment else "")
            deployment.transition(Deployment.S.REJECTED, actor=user, reason=reason, request=request)
            return deployment
        approvers = list(
            live_approvals(deployment).values_list("user__username", flat=True).order_by("id")
        )
        if len(approvers) >= deployment.approvals_required:
            deployment.transition(
                Deployment.S.QUEUED,
                actor=user,
                reason=f"approved by {', '.join(approvers)}",
                request=request,
            )
            enqueue_advance(deployment.pk)
    return deployment
