"""Who may call what: a bearer token or a signed-in session, then the caller's role."""

import pytest
from django.test import Client

from audit.models import AuditEvent
from deployments.models import Approval, Deployment, Release
from portal.models import ApiToken

pytestmark = pytest.mark.django_db
S = Deployment.State

READS = [
    "/api/releases/",
    "/api/releases/{release}/",
    "/api/deployments/",
    "/api/deployments/{deployment}/",
    "/api/environments/",
    "/api/environments/prod/health",
]
DECISIONS = ["/api/deployments/{deployment}/approve", "/api/deployments/{deployment}/reject"]


@pytest.fixture
def waiting(make_deployment):
    return make_deployment("prod", "backend", state=S.PENDING_APPROVAL, approvals_required=1)


def url(template, deployment):
    return template.format(release=deployment.release_id, deployment=deployment.pk)


def test_without_credentials_every_operation_is_a_401_in_json(api, waiting):
    for template in READS:
        response = api("GET", url(template, waiting))
        assert response.status_code == 401, template
        assert "Bearer" in response.json()["error"]
    for template in [*DECISIONS, "/api/releases/"]:
        response = api("POST", url(template, waiting), json_body={})
        assert response.status_code == 401, template
    assert Approval.objects.count() == 0 and Release.objects.count() == 1


@pytest.mark.parametrize("header", ["Bearer gty_not-issued", "Bearer ", "Basic dXNlcjpwdw=="])
def test_a_wrong_token_is_a_401(api, waiting, header, client):
    response = client.get("/api/deployments/", HTTP_AUTHORIZATION=header)
    assert response.status_code == 401 and response["Content-Type"].startswith("application/json")


def test_a_revoked_token_or_an_inactive_owner_is_a_401(api, waiting, token_for):
    raw = token_for("approver", "bob")
    assert api("GET", "/api/deployments/", raw).status_code == 200
    ApiToken.objects.update(revoked=True)
    assert api("GET", "/api/deployments/", raw).status_code == 401
    response = api("POST", url(DECISIONS[0], waiting), raw)
    assert response.status_code == 401
    ApiToken.objects.update(revoked=False)
    ApiToken.objects.get().user.__class__.objects.filter(username="bob").update(is_active=False)
    assert api("GET", "/api/deployments/", raw).status_code == 401
    assert Approval.objects.count() == 0


@pytest.mark.parametrize("role", ["viewer", "ci", "deployer", "approver", "admin"])
def test_every_role_reads(api, waiting, token_for, role):
    raw = token_for(role)
    for template in READS:
        assert api("GET", url(template, waiting), raw).status_code == 200, template


def test_a_user_without_a_role_reads_nothing(api, waiting, token_for):
    raw = token_for(None, "nobody")
    for template in READS:
        response = api("GET", url(template, waiting), raw)
        assert response.status_code == 403, template
        assert "nobody may not view" in response.json()["error"]


@pytest.mark.parametrize("role", ["viewer", "ci", "deployer"])
def test_only_approvers_decide(api, waiting, token_for, role):
    raw = token_for(role)
    audit_before = AuditEvent.objects.count()
    for template in DECISIONS:
        response = api("POST", url(template, waiting), raw, {"comment": "ok"})
        assert response.status_code == 403
        assert response.json()["error"].endswith(
            "may not approve or reject deployments (needs deployments.approve_deployment)"
        )
    waiting.refresh_from_db()
    assert waiting.state == S.PENDING_APPROVAL
    assert Approval.objects.count() == 0 and AuditEvent.objects.count() == audit_before


@pytest.mark.parametrize("role", ["viewer", "deployer", "approver"])
def test_only_ci_and_admin_create_releases(api, seed_topology, token_for, role):
    response = api("POST", "/api/releases/", token_for(role), {"repository": "x/y"})
    assert response.status_code == 403
    assert "may not create releases" in response.json()["error"]
    assert Release.objects.count() == 0


def test_the_signed_in_session_reads_without_a_token(client_as, waiting):
    client = client_as("viewer", "vera")
    response = client.get("/api/deployments/")
    assert response.status_code == 200
    assert [d["id"] for d in response.json()["items"]] == [waiting.pk]


def test_a_session_post_needs_the_csrf_token(make_user, waiting):
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user("approver", "bob"))
    path = f"/api/deployments/{waiting.pk}/approve"
    refused = client.post(path, "{}", content_type="application/json")
    assert refused.status_code == 403 and "CSRF" in refused.json()["error"]
    assert Approval.objects.count() == 0
    client.get("/")  # any page with a form (here, sign-out) sets the csrftoken cookie
    token = client.cookies["csrftoken"].value
    accepted = client.post(path, "{}", content_type="application/json", HTTP_X_CSRFTOKEN=token)
    assert accepted.status_code == 200 and accepted.json()["state"] == "queued"
    assert Approval.objects.get().user.username == "bob"


def test_the_api_never_redirects_to_sign_in(client):
    for path in ("/api/deployments/", "/api/openapi.json", "/api/nowhere"):
        assert client.get(path).status_code != 302
