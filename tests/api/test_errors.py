"""Every error is JSON {"error": …, "field"?: …}; bad input is a 400 that writes nothing."""

import pytest

from deployments.models import Deployment, Release

pytestmark = pytest.mark.django_db

RELEASE = {
    "repository": "nemo-team/nemo-api",
    "component": "backend",
    "branch": "develop",
    "sha": "a" * 40,
    "image": "asia-northeast3-docker.pkg.dev/nemo-dev/registry/backend:" + "a" * 40,
    "digest": "sha256:" + "b" * 64,
    "author": "dev-alice",
}


@pytest.fixture
def ci(seed_topology, token_for):
    return token_for("ci")


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"repository": "nemo-team/nemo-api\x00"}, "repository", "NUL"),
        ({"title": "x" * 201}, "title", "at most 200 characters"),
        ({"image": "r/" + "x" * 299}, "image", "at most 300 characters"),
        ({"branch": "   "}, "branch", "branch is required"),
        ({"sha": None}, "sha", "sha must be a string"),
        ({"author": ["a"]}, "author", "author must be a string"),
        ({"sha": "A" * 40}, "sha", "40-character lower-case hex"),
    ],
)
def test_bad_release_fields(api, ci, changes, field, message):
    response = api("POST", "/api/releases/", ci, RELEASE | changes)
    assert response.status_code == 400
    assert response.json()["field"] == field and message in response.json()["error"]
    assert Release.objects.count() == Deployment.objects.count() == 0


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "a JSON object body is required"),
        ("[1, 2]", "body must be a JSON object"),
        ('"text"', "body must be a JSON object"),
        ("\xff\xfe", "body is not JSON"),
        ("{'single': 'quotes'}", "body is not JSON"),
    ],
)
def test_bodies_that_are_not_a_json_object(api, ci, raw, message):
    response = api("POST", "/api/releases/", ci, raw=raw)
    assert response.status_code == 400 and message in response.json()["error"]
    assert Release.objects.count() == 0


def test_a_valid_release_still_goes_through(api, ci):
    response = api("POST", "/api/releases/", ci, RELEASE)
    assert response.status_code == 201 and Release.objects.count() == 1


def test_an_unknown_path_or_method_under_api_is_json(api, ci):
    missing = api("GET", "/api/nothing/here", ci)
    assert missing.status_code == 404
    assert missing.json() == {
        "error": "no API endpoint at /api/nothing/here; /api/openapi.json lists them"
    }
    for path in ("/api/releases", "/api/"):  # without the slash; the root lists nothing
        response = api("GET", path, ci)
        assert response.status_code == 404 and "no API endpoint" in response.json()["error"]


def test_filters_refuse_text_no_name_can_have(api, ci):
    for query in ({"environment": "pr\x00od"}, {"component": "a" * 51}, {"environment": "a b"}):
        response = api("GET", "/api/releases/", ci, **query)
        assert response.status_code == 400, query
        assert response.json()["field"] == next(iter(query))


def test_a_method_the_path_lacks_is_a_json_405(api, ci):
    response = api("DELETE", "/api/releases/", ci)
    assert response.status_code == 405
    assert set(response["Allow"].split(", ")) == {"GET", "POST"}
    assert response.json()["error"].startswith("DELETE is not allowed on /api/releases/; use ")
