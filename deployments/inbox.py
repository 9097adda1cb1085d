"""The approvals inbox: what waits for the signed-in approver, and the top bar's count of it.

The rules are approvals.py's (`why_not_approve`): a deployment waiting for approval is the
user's to approve when they hold the approve permission, `own_build_refusal` does not refuse
them the build (they are not one of its GitHub actors, and Gantry knows their GitHub login when
a GitHub run made it), and they have no live approval on it yet. Here they are applied to every
waiting deployment at once, from rows read in a fixed number of queries, so the inbox and the
badge cost the same with 3 or 300 deployments waiting.
"""

from dataclasses import dataclass, field
from functools import cached_property

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.decorators import permission_required
from django.db.models import Exists, OuterRef, Prefetch, QuerySet, Subquery
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from environments.models import freeze_in_force
from portal.models import Profile, github_login, normalize_login

from .approvals import ALREADY_APPROVED, approval_cutoff, own_build_refusal
from .models import Approval, Deployment, Release

APPROVE = "deployments.approve_deployment"


@dataclass
class Waiting:
    """One deployment waiting for approval, as the inbox shows it to one user."""

    deployment: Deployment
    why_not: str = ""  # why this user may not approve it; "" when they may
    approvals: list[Approval] = field(default_factory=list)  # the live ones
    others: list[str] = field(default_factory=list)  # usernames of who else may approve it
    freeze: tuple | None = None  # (window, until) of the freeze that would hold it

    @property
    def still_needed(self) -> int:
        return max(self.deployment.approvals_required - len(self.approvals), 0)


def approvers() -> QuerySet:
    """Active users who hold the approve permission (by role, directly, or as superuser)."""
    users = get_user_model().objects.with_perm(
        APPROVE, backend="django.contrib.auth.backends.ModelBackend"
    )
    return users.select_related("profile").order_by("username")


def _login(user) -> str:
    try:
        return normalize_login(user.profile.github_login)
    except Profile.DoesNotExist:
        return ""


def waiting_for(user) -> tuple[list[Waiting], list[Waiting]]:
    """(the user's to approve, the others with why not), each oldest first. Who else may
    approve a deployment: approvers other than the user whom the rules do not refuse and who
    have not approved it yet. The freeze is Deployment.frozen_until's, read once per
    environment."""
    cutoff = approval_cutoff()
    deployments = (
        Deployment.objects.filter(state=Deployment.S.PENDING_APPROVAL)
        .select_related("release", "component__environment")
        .prefetch_related(Prefetch("approvals", queryset=Approval.objects.select_related("user")))
        .order_by("created_at", "id")
    )
    rows = list(deployments)
    if not rows:
        return [], []
    people = [(person, _login(person)) for person in approvers()]
    mine = next((login for person, login in people if person.pk == user.pk), None)
    if mine is None:  # an approver by a backend of its own: look the login up
        mine = github_login(user)
    freezes: dict[int, tuple | None] = {}
    yours, theirs = [], []
    for deployment in rows:
        environment = deployment.component.environment
        if environment.pk not in freezes:
            freezes[environment.pk] = freeze_in_force(environment)
        live = [
            approval
            for approval in deployment.approvals.all()
            if approval.decision == Approval.Decision.APPROVE and approval.created_at >= cutoff
        ]
        approved = {approval.user_id for approval in live}
        release = deployment.release
        refusal = own_build_refusal(release, user, login=mine)
        item = Waiting(
            deployment=deployment,
            why_not=refusal[0] if refusal else (ALREADY_APPROVED if user.pk in approved else ""),
            approvals=live,
            others=[
                person.get_username()
                for person, login in people
                if person.pk != user.pk
                and person.pk not in approved
                and own_build_refusal(release, person, login=login) is None
            ],
            freeze=None if deployment.freeze_override_by else freezes[environment.pk],
        )
        (theirs if item.why_not else yours).append(item)
    return yours, theirs


def approvable_count(user) -> int:
    """How many deployments waiting for approval `user` may approve now, in one query: the
    waiting ones they have not approved, with their build's actors and the user's GitHub login,
    sorted out by own_build_refusal. 0 for someone without the permission."""
    if not user.is_authenticated or not user.has_perm(APPROVE):
        return 0
    theirs = Approval.objects.filter(
        deployment=OuterRef("pk"),
        user=user,
        decision=Approval.Decision.APPROVE,
        created_at__gte=approval_cutoff(),
    )
    login = Profile.objects.filter(user=user).values("github_login")[:1]
    rows = (
        Deployment.objects.filter(state=Deployment.S.PENDING_APPROVAL)
        .filter(~Exists(theirs))
        .annotate(my_login=Subquery(login))
        .values_list("release__author", "release__triggering_actor", "release__source", "my_login")
    )
    return sum(
        1
        for author, triggering_actor, source, my_login in rows
        if own_build_refusal(
            Release(author=author, triggering_actor=triggering_actor, source=source),
            user,
            login=normalize_login(my_login or ""),
        )
        is None
    )


class Badge:
    """The top bar's inbox link: shown to approvers; the count is read only when a page draws
    it (never for an HTMX fragment), once per request."""

    def __init__(self, user: AbstractBaseUser | None) -> None:
        self.user = user

    @cached_property
    def shown(self) -> bool:
        return bool(self.user and self.user.is_authenticated and self.user.has_perm(APPROVE))

    @cached_property
    def count(self) -> int:
        return approvable_count(self.user) if self.shown else 0


@permission_required(APPROVE, raise_exception=True)
def approvals(request: HttpRequest) -> HttpResponse:
    """The approvals inbox: what the user may approve, then what waits for someone else."""
    yours, theirs = waiting_for(request.user)
    return render(request, "deployments/approvals.html", {"yours": yours, "theirs": theirs})
