"""The OpenAPI document, the docs page, and schemathesis against every operation it lists."""

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from deployments.models import Deployment

pytestmark = pytest.mark.django_db

OPERATIONS = {
    ("get", "/api/releases/"),
    ("post", "/api/releases/"),
    ("get", "/api/releases/{id}/"),
    ("get", "/api/deployments/"),
    ("get", "/api/deployments/{id}/"),
    ("post", "/api/deployments/{id}/approve"),
    ("post", "/api/deployments/{id}/reject"),
    ("post", "/api/deployments/{id}/cancel"),
    ("post", "/api/deployments/{id}/pause"),
    ("post", "/api/deployments/{id}/resume"),
    ("post", "/api/deployments/{id}/promote"),
    ("post", "/api/deployments/{id}/abort"),
    ("post", "/api/deployments/{id}/swap-back"),
    ("post", "/api/releases/{id}/redeploy"),
    ("post", "/api/environments/{name}/components/{component}/rollback"),
    ("get", "/api/environments/"),
    ("get", "/api/environments/{name}/health"),
    ("get", "/api/deliveries/"),
    ("post", "/api/deliveries/{id}/retry"),
    ("get", "/api/insights/dora"),
}


def test_the_document_lists_every_operation_with_its_auth(client):
    response = client.get("/api/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.")
    listed = {(m, p) for p, item in document["paths"].items() for m in item}
    assert listed == OPERATIONS
    assert set(document["components"]["securitySchemes"]) == {"BearerToken", "SignedInSession"}
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert {"401", "403"} <= set(operation["responses"]), (method, path)


def test_the_docs_page_loads_swagger_ui_from_our_static_files(client):
    page = client.get("/api/docs").content.decode()
    assert "/static/ninja/swagger-ui-bundle.js" in page
    assert "cdn" not in page.lower() and "https://" not in page


def test_every_operation_refuses_a_user_without_a_role(client, token_for, make_deployment):
    """A new operation that forgets its permission fails here: nobody may call anything."""
    deployment = make_deployment("prod", "backend", state="pending_approval")
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token_for(None, 'nobody')}"}
    ids = {"{id}": str(deployment.pk), "{name}": "prod", "{component}": "backend"}
    for method, path in OPERATIONS:
        if path.startswith("/api/releases/{id}"):
            path = path.replace("{id}", str(deployment.release_id))
        for placeholder, value in ids.items():
            path = path.replace(placeholder, value)
        response = client.generic(method.upper(), path, "{}", "application/json", **headers)
        assert response.status_code == 403, (method, path)
    assert Deployment.objects.get().state == "pending_approval"


@pytest.fixture
def connection_kept():
    """Like Django's test client, leave the database connection open between requests to the
    WSGI app, so every call runs inside the test's transaction."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def admin_token(token_for, make_deployment):
    """A token with every role, and something to find: the topology, a release per environment,
    one deployment waiting for approval in prod and one queued in dev."""
    make_deployment("prod", "backend", state="pending_approval", approvals_required=1)
    make_deployment("dev", "frontend", state="queued")
    return token_for("admin", "everyone")


# Loaded when the module is collected: the document needs no database. (schemathesis's lazy
# from_fixture loader does not run under pytest 9.2: it sets a node attribute pytest dropped.)
schema = schemathesis.openapi.from_wsgi("/api/openapi.json", WSGIHandler())


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    database=None,  # no example database in the checkout
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_keeps_to_its_document(case, admin_token, connection_kept):
    """schemathesis's default checks: never a 5xx, only documented status codes, content types
    and response shapes, 401 without credentials, bad input refused. Left out: "schema-valid
    input is accepted": a well-formed release of a repository the topology lacks is a 400."""
    case.call_and_validate(
        headers={"Authorization": f"Bearer {admin_token}"},
        excluded_checks=[positive_data_acceptance],
    )
