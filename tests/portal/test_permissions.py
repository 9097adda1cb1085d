"""Who may do what: for every URL pattern, role and method, the status Gantry must answer.

A URL added to the project without a row here fails `test_every_url_pattern_has_a_row`, so a new
page or endpoint cannot ship without someone deciding who may use it. Admin pages are Django's
own (guarded by is_staff and model permissions); `admin:index` stands in for them.
"""

from urllib.parse import urlencode

import pytest
from django.urls import URLResolver, get_resolver, reverse

ROLES = ("anonymous", "nobody", "viewer", "ci", "deployer", "approver", "admin")
SIGNED_IN = ROLES[1:]
WITH_A_ROLE = ROLES[2:]
LOGIN = 302  # LoginRequiredMiddleware sends the anonymous to the sign-in page


def answers(default, **by_role):
    """{role: status}: `default` for every role, except those named."""
    return {role: by_role.get(role, default) for role in ROLES}


def reads(**by_role):
    """A page every role may read; a user with no role is refused; the anonymous sign in."""
    return answers(200, anonymous=LOGIN, nobody=403, **by_role)


def action(allowed, status=302):
    """A POST only `allowed` roles may make; the rest get 403, the anonymous sign in."""
    return answers(403, anonymous=LOGIN, **{role: status for role in allowed})


FORM = "application/x-www-form-urlencoded"
POST_ONLY = answers(405, anonymous=LOGIN)
PUBLIC = answers(200)
# The JSON API answers 401/403 in JSON instead of sending anyone to the sign-in page.
API_READS = answers(200, anonymous=401, nobody=403)


def api_action(allowed, status):
    return answers(403, anonymous=401, **{role: status for role in allowed})


# (url name, kwargs key, method) → {role: status}
TABLE = {
    ("home", None, "GET"): reads(),
    ("environment", "environment", "GET"): reads(),
    ("component", "component", "GET"): reads(),
    ("releases", None, "GET"): reads(),
    ("release", "release", "GET"): reads(),
    ("release-redeploy", "release", "GET"): POST_ONLY,
    ("release-redeploy", "release", "POST"): action({"deployer", "admin"}),
    ("component-rollback", "component", "GET"): POST_ONLY,
    # No release named: the component page again, saying to choose one.
    ("component-rollback", "component", "POST"): action({"deployer", "admin"}),
    ("deployment", "deployment", "GET"): reads(),
    ("deployments", None, "GET"): reads(),
    # The approvals inbox is an approver's: the rest get 403, as for deciding.
    ("approvals", None, "GET"): answers(403, anonymous=LOGIN, approver=200, admin=200),
    ("deployment-decide", "deployment", "GET"): POST_ONLY,
    ("deployment-decide", "deployment", "POST"): action({"approver", "admin"}),
    ("deployment-cancel", "deployment", "GET"): POST_ONLY,
    ("deployment-cancel", "deployment", "POST"): action({"deployer", "admin"}),
    # Canary and blue-green controls: the world's deployment is none, so the allowed are told
    # so (302 back to the release); promoting early in prod is an approver's call.
    ("deployment-pause", "deployment", "GET"): POST_ONLY,
    ("deployment-pause", "deployment", "POST"): action({"deployer", "admin"}),
    ("deployment-resume", "deployment", "GET"): POST_ONLY,
    ("deployment-resume", "deployment", "POST"): action({"deployer", "admin"}),
    ("deployment-promote", "deployment", "GET"): POST_ONLY,
    ("deployment-promote", "deployment", "POST"): action({"approver", "admin"}),
    ("deployment-abort", "deployment", "GET"): POST_ONLY,
    ("deployment-abort", "deployment", "POST"): action({"deployer", "admin"}),
    ("deployment-swap-back", "deployment", "GET"): POST_ONLY,
    ("deployment-swap-back", "deployment", "POST"): action({"deployer", "admin"}),
    ("deliveries", None, "GET"): reads(),
    ("delivery-retry", "delivery", "GET"): POST_ONLY,
    ("delivery-retry", "delivery", "POST"): action({"deployer", "admin"}),
    ("notifications", None, "GET"): reads(),
    ("deployment-override-freeze", "deployment", "GET"): POST_ONLY,
    ("deployment-override-freeze", "deployment", "POST"): action({"admin"}),
    ("audit", None, "GET"): reads(),
    ("insights", None, "GET"): reads(),
    # Machine endpoints: their own credentials (signature, bearer token), never the session.
    ("github-webhook", None, "GET"): answers(405),
    ("github-webhook", None, "POST"): answers(401),
    # The JSON API, with the session (bearer tokens: tests/api/test_auth.py). A JSON body of {}.
    ("api:openapi-json", None, "GET"): PUBLIC,
    ("api:openapi-view", None, "GET"): PUBLIC,
    ("api:api-root", None, "GET"): answers(404),
    ("api:api-not-found", "api-rest", "GET"): answers(404),
    ("api:api-releases", None, "GET"): API_READS,
    ("api:api-releases", None, "POST"): api_action({"ci", "admin"}, 400),  # {} lacks fields
    ("api:api-release", "api-release", "GET"): API_READS,
    ("api:api-deployments", None, "GET"): API_READS,
    ("api:api-deployment", "api-deployment", "GET"): API_READS,
    ("api:api-deployment-approve", "api-deployment", "POST"): api_action(
        {"approver", "admin"}, 200
    ),
    ("api:api-deployment-reject", "api-deployment", "POST"): api_action({"approver", "admin"}, 200),
    ("api:api-deployment-cancel", "api-deployment", "POST"): api_action({"deployer", "admin"}, 200),
    ("api:api-release-redeploy", "api-release", "POST"): api_action({"deployer", "admin"}, 201),
    # Not a running canary (nor a warm blue-green): 409; {} gives promote no reason: 400.
    ("api:api-deployment-pause", "api-deployment", "POST"): api_action({"deployer", "admin"}, 409),
    ("api:api-deployment-resume", "api-deployment", "POST"): api_action({"deployer", "admin"}, 409),
    ("api:api-deployment-promote", "api-deployment", "POST"): api_action(
        {"approver", "admin"}, 400
    ),
    ("api:api-deployment-abort", "api-deployment", "POST"): api_action({"deployer", "admin"}, 409),
    ("api:api-deployment-swap-back", "api-deployment", "POST"): api_action(
        {"deployer", "admin"}, 409
    ),
    # {} names no release to roll back to.
    ("api:api-component-rollback", "api-component", "POST"): api_action({"deployer", "admin"}, 400),
    ("api:api-deliveries", None, "GET"): API_READS,
    ("api:api-delivery-retry", "api-delivery", "POST"): api_action({"deployer", "admin"}, 200),
    ("api:api-environments", None, "GET"): API_READS,
    ("api:api-environment-health", "api-environment", "GET"): API_READS,
    ("api:api-insights-dora", None, "GET"): API_READS,
    ("healthz", None, "GET"): PUBLIC,
    # Prometheus shows GANTRY_METRICS_TOKEN (tests/portal/test_metrics.py); people need a role.
    ("metrics", None, "GET"): answers(200, anonymous=401, nobody=403),
    ("login", None, "GET"): answers(302, anonymous=200),
    ("logout", None, "GET"): answers(405, anonymous=LOGIN),
    ("logout", None, "POST"): answers(302),
    ("admin:index", None, "GET"): answers(302, admin=200),
}


def url_names():
    """Every named URL pattern, with its namespace; the admin's own stand as admin:index."""

    def walk(patterns, namespace=""):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                if pattern.namespace == "admin":
                    yield "admin:index"
                    continue
                inner = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
                yield from walk(pattern.url_patterns, inner)
            else:
                yield f"{namespace}{pattern.name}" if pattern.name else f"unnamed {pattern}"

    return set(walk(get_resolver().url_patterns))


def test_every_url_pattern_has_a_row():
    covered = {name for name, _, _ in TABLE}
    missing = url_names() - covered
    assert not missing, f"URL patterns without a row in the permission table: {sorted(missing)}"
    assert not covered - url_names(), "rows for URL names that no longer exist"


@pytest.fixture
def world(make_deployment):
    """What the URLs point at: the seeded topology and a prod deployment awaiting approval."""
    from github.models import WebhookDelivery
    from tests.github.payloads import workflow_run

    deployment = make_deployment("prod", "frontend", state="pending_approval")
    deployment.approvals_required = 1
    deployment.save()
    delivery = WebhookDelivery.objects.create(
        guid="failed-one", event="workflow_run", outcome="failed", payload=workflow_run()
    )
    return {
        None: {},
        "environment": {"name": "prod"},
        "component": {"name": "prod", "component": "frontend"},
        "release": {"pk": deployment.release_id},
        "deployment": {"pk": deployment.pk},
        "api-release": {"id": deployment.release_id},
        "api-deployment": {"id": deployment.pk},
        "api-environment": {"name": "prod"},
        "api-component": {"name": "prod", "component": "frontend"},
        "api-rest": {"rest": "no/such/thing"},
        "delivery": {"pk": delivery.pk},
        "api-delivery": {"id": delivery.pk},
    }


@pytest.fixture
def client_for(client, make_user):
    def sign_in(role):
        if role == "anonymous":
            return client
        user = make_user(None if role == "nobody" else role, username=f"{role}-user")
        if role == "admin":
            user.is_staff = True
            user.save()
        client.force_login(user)
        return client

    return sign_in


CASES = [
    pytest.param(name, key, method, role, expected, id=f"{name}-{method}-{role}")
    for (name, key, method), by_role in TABLE.items()
    for role, expected in by_role.items()
]


@pytest.mark.sqlite_is_enough  # who may do what does not depend on the database
@pytest.mark.parametrize(("name", "key", "method", "role", "expected"), CASES)
def test_role_url_method(world, client_for, name, key, method, role, expected):
    client = client_for(role)
    url = reverse(name, kwargs=world[key])
    if name.startswith("api:"):
        response = client.generic(method, url, data="{}", content_type="application/json")
    else:
        data = {"decision": "approve", "reason": "a reason", "confirm": "1"}
        response = client.generic(method, url, data=urlencode(data), content_type=FORM)
    assert response.status_code == expected, (
        f"{role} {method} {url}: expected {expected}, got {response.status_code}"
    )
    if expected == LOGIN and role == "anonymous" and name != "logout":
        assert "login/?next=" in response.headers["Location"]


def test_refused_actions_change_nothing(world, client_for):
    """A 403 leaves the deployment where it was and writes no approval or audit row."""
    from audit.models import AuditEvent
    from deployments.models import Approval, Deployment

    client = client_for("viewer")
    before = AuditEvent.objects.exclude(action="auth.login").count()
    pk = world["deployment"]["pk"]
    for name in (
        "deployment-decide",
        "deployment-cancel",
        "deployment-pause",
        "deployment-promote",
        "deployment-abort",
    ):
        response = client.post(reverse(name, args=[pk]), {"decision": "approve"})
        assert response.status_code == 403
    redeploy = reverse("release-redeploy", args=[world["release"]["pk"]])
    assert client.post(redeploy).status_code == 403
    rollback = reverse("component-rollback", kwargs=world["component"])
    release = world["release"]["pk"]
    assert client.post(rollback, {"release": release, "confirm": "1"}).status_code == 403
    assert Deployment.objects.get(pk=pk).state == "pending_approval"
    assert Approval.objects.count() == 0
    assert Deployment.objects.count() == 1
    assert AuditEvent.objects.exclude(action="auth.login").count() == before
