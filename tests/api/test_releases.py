"""Reading releases. Creating them (POST /api/releases/) is tested in
tests/deployments/test_api_releases.py."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from deployments.models import Deployment

pytestmark = pytest.mark.django_db
S = Deployment.State


@pytest.fixture
def releases(make_deployment):
    """Three releases: dev backend, prod frontend (redeployed once), prod backend; oldest first."""
    dev = make_deployment("dev", "backend", state=S.SUCCEEDED)
    frontend = make_deployment("prod", "frontend", state=S.SUCCEEDED)
    again = Deployment.objects.create(
        release=frontend.release, component=frontend.component, state=S.QUEUED, strategy="rolling"
    )
    backend = make_deployment("prod", "backend", state=S.PENDING_APPROVAL)
    return dev.release, frontend.release, backend.release, again


def test_the_list_is_newest_first_and_filters(api, releases, token_for):
    dev, frontend, backend, _ = releases
    raw = token_for("viewer")

    def ids(**query):
        return [r["id"] for r in api("GET", "/api/releases/", raw, **query).json()["items"]]

    assert ids() == [backend.pk, frontend.pk, dev.pk]
    assert ids(environment="prod") == [backend.pk, frontend.pk]
    assert ids(component="backend") == [backend.pk, dev.pk]
    assert ids(environment="dev", component="frontend") == []


def test_pages_are_limit_and_offset_with_a_total(api, releases, token_for):
    raw = token_for("viewer")
    answer = api("GET", "/api/releases/", raw, limit=2, offset=1).json()
    assert answer["count"] == 3
    assert [r["id"] for r in answer["items"]] == [releases[1].pk, releases[0].pk]
    assert api("GET", "/api/releases/", raw, offset=3).json() == {"items": [], "count": 3}


@pytest.mark.parametrize(
    ("query", "field"),
    [({"limit": 101}, "limit"), ({"limit": 0}, "limit"), ({"offset": -1}, "offset")],
)
def test_a_page_beyond_the_bounds_is_a_400(api, releases, token_for, query, field):
    response = api("GET", "/api/releases/", token_for("viewer"), **query)
    assert response.status_code == 400 and response.json()["field"] == field


def test_the_detail_lists_its_deployments_newest_first(api, releases, token_for):
    _, frontend, _, again = releases
    answer = api("GET", f"/api/releases/{frontend.pk}/", token_for("viewer")).json()
    first = frontend.deployments.order_by("id").first()
    assert answer["deployments"] == [
        {"id": again.pk, "state": "queued"},
        {"id": first.pk, "state": "succeeded"},
    ]
    assert (answer["environment"], answer["component"], answer["sha"]) == (
        "prod",
        "frontend",
        frontend.sha,
    )
    assert answer["digest"] == frontend.digest and answer["source"] == "manual"
    assert answer["url"] == f"http://testserver/releases/{frontend.pk}/"


def test_the_list_costs_the_same_queries_for_more_releases(
    api, make_deployment, token_for, django_assert_num_queries
):
    raw = token_for("viewer")
    make_deployment("prod", "backend")
    api("GET", "/api/releases/", raw)
    with CaptureQueriesContext(connection) as one:
        api("GET", "/api/releases/", raw)
    for _ in range(10):
        make_deployment("prod", "backend")
    with django_assert_num_queries(len(one)):
        assert len(api("GET", "/api/releases/", raw).json()["items"]) == 11


def test_an_unknown_or_malformed_id(api, releases, token_for):
    raw = token_for("viewer")
    missing = api("GET", "/api/releases/9999/", raw)
    assert missing.status_code == 404 and missing.json() == {"error": "no release 9999"}
    for bad in ("abc", "0", str(2**64)):
        response = api("GET", f"/api/releases/{bad}/", raw)
        assert response.status_code == 400 and response.json()["field"] == "id", bad
