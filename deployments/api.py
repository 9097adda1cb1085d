"""The API's releases, deployments and approvals (mounted by portal/api.py).

POST /api/releases/ is how a CI job that already knows its image digest posts a release. Who
authored it follows the token (releases.release_authors): a `ci` token, the CI job's, must name
the run's GitHub actor and may name its triggering actor; anyone else's release is authored by
their own GitHub login. Its image must be under its environment's or repository's registry
(releases.check_image). Either refusal is a 422 that writes nothing. The approve/reject
operations go through approvals.decide, the same rules and audit as the browser; cancel,
pause, resume, promote, abort, swap back, redeploy and rollback go through actions.py, as the
pages' buttons do: its refusals are 409s with the reason, and write nothing.
"""

import re
from datetime import datetime, timedelta

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import URLValidator
from django.db.models import Prefetch
from django.http import Http404
from django.utils import timezone
from ninja import Field, Router, Schema
from ninja.pagination import paginate
from ninja.responses import Status
from pydantic import ConfigDict, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from environments.models import Component, Environment, Repository
from portal.apitools import ApiError, Id, Pages, Slug, Text, errors, needs

from . import actions
from .approvals import ApprovalError, decide
from .models import Approval, Deployment, DeploymentEvent, Release
from .releases import ReleaseRefused, check_image, create_release, release_authors

router = Router()

SHA = re.compile(r"[0-9a-f]{40}")
# How far ahead of Gantry's clock a commit time may be (a committer's clock runs fast).
COMMIT_SKEW = timedelta(minutes=10)
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def _absolute(request, obj) -> str:
    return request.build_absolute_uri(obj.get_absolute_url())


class ReleaseIn(Schema):
    model_config = ConfigDict(extra="forbid")

    repository: Text = Field(min_length=1, max_length=140, description="owner/name on GitHub")
    component: Text = Field(min_length=1, max_length=40, description="component name, e.g. backend")
    branch: Text = Field(
        min_length=1, max_length=100, description="its environment follows from it"
    )
    sha: Text = Field(json_schema_extra={"pattern": f"^{SHA.pattern}$"})
    image: Text = Field(
        min_length=1, max_length=300, description="image as built, e.g. REGISTRY/NAME:TAG"
    )
    digest: Text = Field(json_schema_extra={"pattern": f"^{DIGEST.pattern}$"})
    run_url: Text = Field("", max_length=300, description="the CI run, http(s)")
    version: Text = Field("", max_length=64)
    title: Text = Field("", max_length=200)
    author: Text = Field(
        "",
        max_length=100,
        description="GitHub login of the run's actor (github.actor): required with a ci token; "
        "anyone else's release is authored by their own GitHub login",
    )
    triggering_actor: Text = Field(
        "",
        max_length=100,
        description="GitHub login of who started this run (github.triggering_actor), ci tokens",
    )
    committed_at: datetime | None = Field(
        None,
        description="the commit's time with its offset (github.event.head_commit.timestamp): "
        "DORA's change lead time counts from it, else from when the release is posted",
    )

    @field_validator("committed_at")
    @classmethod
    def _committed(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise PydanticCustomError("gantry", "committed_at needs a UTC offset, e.g. Z")
        if value > timezone.now() + COMMIT_SKEW:
            raise PydanticCustomError("gantry", "committed_at is in the future")
        return value

    @field_validator("repository", "component", "branch", "sha", "image", "digest")
    @classmethod
    def _required(cls, value: str, info: ValidationInfo) -> str:
        if not value.strip():
            raise PydanticCustomError("gantry", "{field} is required", {"field": info.field_name})
        return value

    @field_validator("sha")
    @classmethod
    def _sha(cls, value: str) -> str:
        if not SHA.fullmatch(value):
            raise PydanticCustomError(
                "gantry", "sha must be a 40-character lower-case hex commit id"
            )
        return value

    @field_validator("digest")
    @classmethod
    def _digest(cls, value: str) -> str:
        if not DIGEST.fullmatch(value):
            raise PydanticCustomError("gantry", "digest must look like sha256:<64 hex digits>")
        return value

    @field_validator("run_url")
    @classmethod
    def _run_url(cls, value: str) -> str:
        if value:
            try:
                URLValidator(schemes=["https", "http"])(value)
            except DjangoValidationError:
                raise PydanticCustomError("gantry", "run_url must be an http(s) URL") from None
        return value


class DeploymentRef(Schema):
    id: int
    state: Deployment.State


class ReleaseCreated(Schema):
    release: int
    url: str
    created: bool
    deployment: DeploymentRef | None


class ReleaseOut(Schema):
    id: int
    environment: str
    component: str
    repository: str
    branch: str
    sha: str
    version: str
    title: str
    author: str
    committed_at: datetime | None
    run_url: str
    image: str
    digest: str
    source: Release.Source
    created_at: datetime
    url: str
    deployments: list[DeploymentRef] = Field(description="newest first")

    @staticmethod
    def resolve_environment(release):
        return release.component.environment.name

    @staticmethod
    def resolve_component(release):
        return release.component.name

    @staticmethod
    def resolve_url(release, context):
        return _absolute(context["request"], release)

    @staticmethod
    def resolve_deployments(release):
        return release.deployments.all()


class EventOut(Schema):
    at: datetime
    kind: DeploymentEvent.Kind
    message: str


class ApprovalOut(Schema):
    user: str
    decision: Approval.Decision
    comment: str
    created_at: datetime

    @staticmethod
    def resolve_user(approval):
        return approval.user.get_username()


class DeploymentOut(Schema):
    id: int
    release: int = Field(alias="release_id")
    environment: str
    component: str
    state: Deployment.State
    strategy: str
    reason: str
    requested_by: str
    approvals_required: int
    created_at: datetime
    queued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    state_changed_at: datetime
    target_image: str
    url: str

    @staticmethod
    def resolve_environment(deployment):
        return deployment.component.environment.name

    @staticmethod
    def resolve_component(deployment):
        return deployment.component.name

    @staticmethod
    def resolve_url(deployment, context):
        return _absolute(context["request"], deployment)


class DeploymentDetail(DeploymentOut):
    cancel_requested: bool
    cancel_reason: str
    paused_by: str = Field(description="who paused this canary; empty when it is not paused")
    paused_at: datetime | None
    promote_requested_by: str = Field(description="who promoted this canary early, if anyone")
    progress: dict
    verification: dict
    analysis: dict = Field(
        description="a canary's judgements against its baseline: each metric's verdict, the "
        "score and the thresholds; empty when none was made"
    )
    events: list[EventOut] = Field(description="the timeline, oldest first")
    approvals: list[ApprovalOut]

    @staticmethod
    def resolve_events(deployment):
        return deployment.events.all()

    @staticmethod
    def resolve_approvals(deployment):
        return deployment.approvals.all()


class DecisionIn(Schema):
    model_config = ConfigDict(extra="forbid")

    comment: Text = Field("", max_length=2000)


def _releases():
    return Release.objects.select_related("component__environment").prefetch_related(
        Prefetch("deployments", queryset=Deployment.objects.order_by("-created_at", "-id"))
    )


def _deployments():
    return Deployment.objects.select_related("component__environment")


def _deployment_detail(pk):
    found = (
        _deployments()
        .prefetch_related(
            Prefetch("approvals", queryset=Approval.objects.select_related("user")),
            Prefetch("events", queryset=DeploymentEvent.objects.order_by("at", "id")),
        )
        .filter(pk=pk)
        .first()
    )
    if found is None:
        raise Http404(f"no deployment {pk}")
    return found


@router.get(
    "releases/",
    response={200: list[ReleaseOut], **errors(400, 401, 403)},
    tags=["releases"],
    auth=needs("deployments.view_release", "view releases"),
    url_name="api-releases",
)
@paginate(Pages)
def list_releases(request, environment: Slug | None = None, component: Slug | None = None):
    """Releases, newest first."""
    releases = _releases()
    if environment:
        releases = releases.filter(component__environment__name=environment)
    if component:
        releases = releases.filter(component__name=component)
    return releases


@router.get(
    "releases/{id}/",
    response={200: ReleaseOut, **errors(400, 401, 403, 404)},
    tags=["releases"],
    auth=needs("deployments.view_release", "view releases"),
    url_name="api-release",
)
def get_release(request, id: Id):
    release = _releases().filter(pk=id).first()
    if release is None:
        raise Http404(f"no release {id}")
    return release


def _component(data: ReleaseIn):
    """The component a release is of, and the repository that builds it."""
    repository = Repository.objects.filter(full_name=data.repository).first()
    if repository is None:
        raise ApiError(400, f"repository {data.repository} is not in the topology", "repository")
    if data.component not in repository.components:
        raise ApiError(
            400, f"{data.repository} does not build component {data.component!r}", "component"
        )
    environment = Environment.objects.filter(branch=data.branch).first()
    if environment is None:
        raise ApiError(400, f"branch {data.branch!r} deploys to no environment", "branch")
    component = environment.components.filter(name=data.component).first()
    if component is None or not component.is_deployable:
        raise ApiError(400, f"{environment} has no deployable {data.component!r}", "component")
    return component, repository


@router.post(
    "releases/",
    response={201: ReleaseCreated, 200: ReleaseCreated, **errors(400, 401, 403, 409, 422)},
    tags=["releases"],
    summary="Create a release",
    auth=needs("deployments.add_release", "create releases"),
    url_name="api-releases",
)
def post_release(request, payload: ReleaseIn):
    """A release of one build: 201 with its deployment (queued, or waiting for approval), or 200
    when the same build was posted before. The same build with another digest is a 409.

    A `ci` token (a CI job) must name the run's GitHub actor as `author`, and may name
    `triggering_actor`; any other caller's release is authored by their own GitHub login, and
    naming someone else is refused. The image must be under the environment's or the
    repository's registry. Either refusal is a 422 naming the field, and writes nothing."""
    component, repository = _component(payload)
    fields = payload.model_dump()
    del fields["component"]
    try:
        fields["author"], fields["triggering_actor"] = release_authors(
            request.auth, payload.author, payload.triggering_actor
        )
        check_image(component, repository, payload.image)
        release, created = create_release(
            component, actor=request.auth, request=request, source="api", **fields
        )
    except ReleaseRefused as exc:
        raise ApiError(422, str(exc), exc.field) from None
    if not created and release.digest != payload.digest:
        raise ApiError(409, f"{release} already exists with digest {release.digest}", "digest")
    deployment = release.deployments.order_by("-created_at", "-id").first()
    body = {
        "release": release.pk,
        "url": _absolute(request, release),
        "created": created,
        "deployment": deployment,
    }
    return Status(201 if created else 200, body)


@router.get(
    "deployments/",
    response={200: list[DeploymentOut], **errors(400, 401, 403)},
    tags=["deployments"],
    auth=needs("deployments.view_deployment", "view deployments"),
    url_name="api-deployments",
)
@paginate(Pages)
def list_deployments(
    request,
    state: Deployment.State | None = None,
    environment: Slug | None = None,
    component: Slug | None = None,
):
    """Deployments, newest first."""
    deployments = _deployments()
    if state:
        deployments = deployments.filter(state=state)
    if environment:
        deployments = deployments.filter(component__environment__name=environment)
    if component:
        deployments = deployments.filter(component__name=component)
    return deployments


@router.get(
    "deployments/{id}/",
    response={200: DeploymentDetail, **errors(400, 401, 403, 404)},
    tags=["deployments"],
    auth=needs("deployments.view_deployment", "view deployments"),
    url_name="api-deployment",
)
def get_deployment(request, id: Id):
    """One deployment with its timeline and the approvals it has."""
    return _deployment_detail(id)


def _decide(request, id, decision, payload):
    if not Deployment.objects.filter(pk=id).exists():
        raise Http404(f"no deployment {id}")
    comment = payload.comment.strip() if payload else ""
    try:
        decide(id, request.auth, decision, comment, request=request)
    except ApprovalError as exc:
        raise ApiError(409, str(exc)) from None
    return _deployment_detail(id)


DECISION = {
    "response": {200: DeploymentDetail, **errors(400, 401, 403, 404, 409)},
    "tags": ["approvals"],
    "auth": needs("deployments.approve_deployment", "approve or reject deployments"),
}


@router.post(
    "deployments/{id}/approve",
    url_name="api-deployment-approve",
    **DECISION,
)
def approve_deployment(request, id: Id, payload: DecisionIn | None = None):
    """Approve a deployment that waits for approval; enough approvals queue it. The author of
    the build cannot approve it, and each person approves once."""
    return _decide(request, id, Approval.Decision.APPROVE, payload)


@router.post(
    "deployments/{id}/reject",
    url_name="api-deployment-reject",
    **DECISION,
)
def reject_deployment(request, id: Id, payload: DecisionIn | None = None):
    """Reject a deployment that waits for approval; one rejection ends it."""
    return _decide(request, id, Approval.Decision.REJECT, payload)


class RedeployIn(Schema):
    model_config = ConfigDict(extra="forbid")

    skip_approval_reason: Text = Field(
        "",
        max_length=actions.REASON_MAX,
        description="where the environment needs approval: why this may go without a new one "
        "(approvers only, never the build's GitHub actors; audited). Empty: it waits for approval",
    )


class RollbackIn(RedeployIn):
    release: Id = Field(
        description="id of the earlier good release of this component to go back to"
    )


def _action_refused(exc: actions.ActionError):
    return ApiError(409, str(exc))


def _steered(request, id: int, act, reason: str = "") -> DeploymentDetail:
    """Apply actions.cancel/pause/…: 404 for no such deployment, 409 naming why it is refused."""
    if not Deployment.objects.filter(pk=id).exists():
        raise Http404(f"no deployment {id}")
    try:
        act(id, request.auth, reason, request=request)
    except actions.ActionError as exc:
        raise _action_refused(exc) from None
    return _deployment_detail(id)


class ReasonIn(Schema):
    model_config = ConfigDict(extra="forbid")

    reason: Text = Field("", max_length=actions.REASON_MAX, description="why (audited)")


class PromoteIn(Schema):
    model_config = ConfigDict(extra="forbid")

    reason: Text = Field(
        "", max_length=actions.REASON_MAX, description="required: why it may skip its judgement"
    )


STEER = {"response": {200: DeploymentDetail, **errors(400, 401, 403, 404, 409)}}
STEERING = needs("deployments.cancel_deployment", "steer deployments")


@router.post(
    "deployments/{id}/cancel",
    tags=["deployments"],
    auth=needs("deployments.cancel_deployment", "cancel deployments"),
    url_name="api-deployment-cancel",
    **STEER,
)
def cancel_deployment(request, id: Id, payload: ReasonIn | None = None):
    """Cancel a deployment: one waiting ends at once; a running one stops at its next safe point
    and rolls back (its `cancel_requested` then shows it). A finished one is a 409."""
    return _steered(request, id, actions.cancel, payload.reason if payload else "")


@router.post(
    "deployments/{id}/pause",
    tags=["deployments"],
    auth=STEERING,
    **STEER,
    url_name="api-deployment-pause",
)
def pause_deployment(request, id: Id, payload: ReasonIn | None = None):
    """Hold a running canary where it is: nothing more happens until it is resumed, promoted or
    aborted (`paused_by`, `paused_at`). Anything but a running canary is a 409."""
    return _steered(request, id, actions.pause, payload.reason if payload else "")


@router.post(
    "deployments/{id}/resume",
    tags=["deployments"],
    auth=STEERING,
    **STEER,
    url_name="api-deployment-resume",
)
def resume_deployment(request, id: Id, payload: ReasonIn | None = None):
    """Let a paused canary carry on; its deadlines and checks start over from now."""
    return _steered(request, id, actions.resume, payload.reason if payload else "")


@router.post(
    "deployments/{id}/promote",
    tags=["deployments"],
    auth=needs("deployments.view_deployment", "see deployments"),
    url_name="api-deployment-promote",
    **STEER,
)
def promote_deployment(request, id: Id, payload: PromoteIn | None = None):
    """Promote a running canary before it is judged: every instance moves to the new version,
    which is then verified as a whole. Where the environment needs approval only an approver
    may, elsewhere a deployer (else 403, whatever the body); audited with `reason`, which is
    required (400)."""
    deployment = _deployments().filter(pk=id).first()
    if deployment is None:
        raise Http404(f"no deployment {id}")
    if not actions.may_promote(deployment, request.auth):
        raise ApiError(403, "you may not promote this canary early")
    reason = payload.reason.strip() if payload else ""
    if not reason:
        raise ApiError(400, "say why the canary may skip its judgement", "reason")
    return _steered(request, id, actions.promote_now, reason)


@router.post(
    "deployments/{id}/abort",
    tags=["deployments"],
    auth=STEERING,
    **STEER,
    url_name="api-deployment-abort",
)
def abort_deployment(request, id: Id, payload: ReasonIn | None = None):
    """Take a running canary away: the group goes back to the old version alone and the
    deployment ends rolled back, `reason` in its cause."""
    return _steered(request, id, actions.abort, payload.reason if payload else "")


@router.post(
    "deployments/{id}/swap-back",
    tags=["deployments"],
    auth=STEERING,
    **STEER,
    url_name="api-deployment-swap-back",
)
def swap_back_deployment(request, id: Id, payload: ReasonIn | None = None):
    """During a blue-green deployment's warm window, send traffic back to the old colour; the
    new one is scaled to zero and the deployment ends rolled back."""
    return _steered(request, id, actions.swap_back, payload.reason if payload else "")


@router.post(
    "releases/{id}/redeploy",
    response={201: DeploymentDetail, **errors(400, 401, 403, 404, 409)},
    tags=["releases"],
    auth=needs("deployments.start_deployment", "redeploy releases"),
    url_name="api-release-redeploy",
)
def redeploy_release(request, id: Id, payload: RedeployIn | None = None):
    """Deploy a release again: 201 with the new deployment, waiting for approval where the
    environment needs it unless an approver gives `skip_approval_reason`."""
    release = Release.objects.select_related("component__environment").filter(pk=id).first()
    if release is None:
        raise Http404(f"no release {id}")
    reason = payload.skip_approval_reason if payload else ""
    try:
        deployment = actions.redeploy(
            release, request.auth, skip_approval_reason=reason, request=request
        )
    except actions.ActionError as exc:
        raise _action_refused(exc) from None
    return Status(201, _deployment_detail(deployment.pk))


@router.post(
    "environments/{name}/components/{component}/rollback",
    response={201: DeploymentDetail, **errors(400, 401, 403, 404, 409)},
    tags=["deployments"],
    auth=needs("deployments.start_deployment", "roll back components"),
    url_name="api-component-rollback",
)
def rollback_component(request, name: Slug, component: Slug, payload: RollbackIn):
    """Roll a component back to an earlier good release (one whose deployment there succeeded,
    not the one running now): 201 with the new deployment, which waits for approval where the
    environment needs it unless an approver gives `skip_approval_reason`. Audited as
    `deployment.rollback_requested`. A release it refuses is a 409 naming why."""
    found = (
        Component.objects.select_related("environment")
        .filter(environment__name=name, name=component)
        .first()
    )
    if found is None:
        raise Http404(f"no component {component} in {name}")
    release = Release.objects.select_related("component__environment")
    release = release.filter(pk=payload.release).first()
    if release is None:
        raise ApiError(404, f"no release {payload.release}", "release")
    try:
        deployment = actions.rollback(
            found,
            release,
            request.auth,
            skip_approval_reason=payload.skip_approval_reason,
            request=request,
        )
    except actions.ActionError as exc:
        raise _action_refused(exc) from None
    return Status(201, _deployment_detail(deployment.pk))
