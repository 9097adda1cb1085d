"""POST /api/releases/: a release from a CI job that already knows its image digest."""

import json
import re

from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from environments.models import Environment, Repository
from portal.models import ApiToken

from .releases import create_release

SHA = re.compile(r"[0-9a-f]{40}")
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
FIELDS = {
    "repository": True,
    "component": True,
    "branch": True,
    "sha": True,
    "image": True,
    "digest": True,
    "run_url": False,
    "version": False,
    "title": False,
    "author": False,
}


class BadRequest(Exception):
    def __init__(self, field, message):
        super().__init__(message)
        self.field = field


def _fields(body: bytes) -> dict:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(None, f"body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest(None, "body must be a JSON object")
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise BadRequest(unknown[0], f"unknown field {unknown[0]!r}")
    for name, required in FIELDS.items():
        value = data.get(name, "")
        if not isinstance(value, str):
            raise BadRequest(name, f"{name} must be a string")
        if required and not value.strip():
            raise BadRequest(name, f"{name} is required")
    if not SHA.fullmatch(data["sha"]):
        raise BadRequest("sha", "sha must be a 40-character lower-case hex commit id")
    if not DIGEST.fullmatch(data["digest"]):
        raise BadRequest("digest", "digest must look like sha256:<64 hex digits>")
    if data.get("run_url"):
        try:
            URLValidator(schemes=["https", "http"])(data["run_url"])
        except ValidationError:
            raise BadRequest("run_url", "run_url must be an http(s) URL") from None
    return data


def _component(data):
    repository = Repository.objects.filter(full_name=data["repository"]).first()
    if repository is None:
        raise BadRequest("repository", f"repository {data['repository']} is not in the topology")
    if data["component"] not in repository.components:
        raise BadRequest(
            "component", f"{data['repository']} does not build component {data['component']!r}"
        )
    environment = Environment.objects.filter(branch=data["branch"]).first()
    if environment is None:
        raise BadRequest("branch", f"branch {data['branch']!r} deploys to no environment")
    component = environment.components.filter(name=data["component"]).first()
    if component is None or not component.is_deployable:
        raise BadRequest("component", f"{environment} has no deployable {data['component']!r}")
    return component


@csrf_exempt
@login_not_required
@require_POST
def create_release_view(request):
    token = ApiToken.authenticate(request.headers.get("Authorization", ""))
    if token is None:
        return JsonResponse(
            {"error": "a valid 'Authorization: Bearer' token is required"}, status=401
        )
    if not token.user.has_perm("deployments.add_release"):
        return JsonResponse({"error": f"{token.user} may not create releases"}, status=403)
    try:
        data = _fields(request.body)
        component = _component(data)
    except BadRequest as exc:
        return JsonResponse({"error": str(exc), "field": exc.field}, status=400)
    release, created = create_release(
        component,
        actor=token.user,
        request=request,
        repository=data["repository"],
        sha=data["sha"],
        branch=data["branch"],
        image=data["image"],
        digest=data["digest"],
        run_url=data.get("run_url", ""),
        version=data.get("version", ""),
        title=data.get("title", ""),
        author=data.get("author", ""),
        source="api",
    )
    if not created and release.digest != data["digest"]:
        return JsonResponse(
            {"error": f"{release} already exists with digest {release.digest}", "field": "digest"},
            status=409,
        )
    deployment = release.deployments.order_by("-created_at", "-id").first()
    body = {
        "release": release.pk,
        "url": request.build_absolute_uri(release.get_absolute_url()),
        "created": created,
        "deployment": {"id": deployment.pk, "state": deployment.state} if deployment else None,
    }
    return JsonResponse(body, status=201 if created else 200)
