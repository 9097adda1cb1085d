"""The JSON API at /api/: one NinjaAPI with a router per app, its OpenAPI document at
/api/openapi.json and Swagger UI at /api/docs, served from ninja's static files (no CDN).

Callers are API tokens (service accounts) or the signed-in browser session; every operation then
checks the caller's role. Every error is JSON: {"error": message, "field": name-or-absent}.
"""

from functools import wraps

from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, JsonResponse
from django.urls import path, reverse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError

from deployments.api import router as deployments_router
from environments.api import router as environments_router
from github.api import router as github_router
from insights.api import router as insights_router

from .apitools import describe, needs


class GantryAPI(NinjaAPI):
    @property
    def urls(self):
        """Exempt from the sign-in redirect (each operation answers 401 itself), and JSON for
        every answer ninja gives outside an operation."""
        patterns, app_name, namespace = super().urls
        for pattern in patterns:
            pattern.callback = login_not_required(_json_errors(pattern.callback))
        patterns.append(path("<path:rest>", login_not_required(not_found), name="api-not-found"))
        return patterns, app_name, namespace


def _json_errors(view):
    """ninja answers a method a path lacks with a plain-text 405, and /api/ itself with Django's
    HTML 404; say both in JSON."""

    @wraps(view)
    def answer(request, *args, **kwargs):
        try:
            response = view(request, *args, **kwargs)
        except Http404:
            return not_found(request)
        if response.status_code != 405:
            return response
        allowed = response["Allow"]
        message = f"{request.method} is not allowed on {request.path}; use {allowed}"
        return JsonResponse({"error": message}, status=405, headers={"Allow": allowed})

    return answer


def not_found(request, rest=""):
    document = reverse("api:openapi-json")
    message = f"no API endpoint at {request.path}; {document} lists them"
    return JsonResponse({"error": message}, status=404)


api = GantryAPI(
    title="Gantry API",
    version="1",
    description="Releases, deployments, approvals, webhook deliveries and environment health. "
    "Authenticate with an API token (`Authorization: Bearer gty_…`) or a signed-in session.",
    urls_namespace="api",
    # Each operation names its permission; one that forgets is closed to all but superusers.
    auth=needs("portal.unnamed_api_permission", "call an operation that names no permission"),
)
api.add_router("", deployments_router)
api.add_router("/environments/", environments_router)
api.add_router("", github_router)
api.add_router("/insights/", insights_router)


def _error(request, status, message, field=None):
    body = {"error": message} | ({"field": field} if field else {})
    return api.create_response(request, body, status=status)


@api.exception_handler(ValidationError)
def _invalid(request, exc):
    message, field = describe(exc.errors[0])
    return _error(request, 400, message, field)


@api.exception_handler(AuthenticationError)
def _unauthenticated(request, exc):
    return _error(request, 401, "sign in, or send a valid 'Authorization: Bearer' API token")


@api.exception_handler(HttpError)
def _http_error(request, exc):
    if isinstance(exc.__cause__, ValueError):  # ninja's body parser: JSON that does not parse
        return _error(request, 400, f"body is not JSON: {exc.__cause__}")
    return _error(request, exc.status_code, str(exc), getattr(exc, "field", None))


@api.exception_handler(PermissionDenied)
def _forbidden(request, exc):
    return _error(request, 403, str(exc) or "forbidden")


@api.exception_handler(Http404)
def _not_found(request, exc):
    return _error(request, 404, str(exc) or "not found")
