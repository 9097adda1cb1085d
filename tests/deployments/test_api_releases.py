import json

import pytest

from deployments.models import Deployment, Release
from portal.models import ApiToken

pytestmark = pytest.mark.django_db
S = Deployment.State


@pytest.fixture
def token(seed_topology, make_user):
    account = make_user("ci", "github-actions")
    token = ApiToken(name="actions", user=account)
    raw = token.issue()
    token.save()
    return raw


def body(**overrides):
    fields = {
        "repository": "nemo-team/nemo-api",
        "component": "backend",
        "branch": "develop",
        "sha": "a" * 40,
        "image": "asia-northeast3-docker.pkg.dev/nemo-dev/registry/backend:" + "a" * 40,
        "digest": "sha256:" + "b" * 64,
        "run_url": "https://github.com/nemo-team/nemo-api/actions/runs/1",
        "version": "v7",
    }
    fields.update(overrides)
    return fields


def post(client, data, token=None, raw=None):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    payload = raw if raw is not None else json.dumps(data)
    return client.post("/api/releases/", payload, content_type="application/json", **headers)


def test_a_develop_release_is_created_and_queued_for_dev(
    client, token, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        response = post(client, body(), token)
    assert response.status_code == 201
    answer = response.json()
    release = Release.objects.get()
    assert answer["release"] == release.pk and answer["created"] is True
    assert answer["deployment"]["state"] == "queued"
    assert (str(release.component), release.source, release.version) == ("dev/backend", "api", "v7")
    assert release.deployments.get().state == S.QUEUED
    assert len(callbacks) == 1


def test_a_main_release_waits_for_approval(client, token):
    response = post(client, body(branch="main"), token)
    assert response.json()["deployment"]["state"] == "pending_approval"
    assert Deployment.objects.get().approvals_required == 1


def test_the_same_build_twice_is_one_release(client, token):
    first, second = post(client, body(), token), post(client, body(), token)
    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json()["created"] is False
    assert Release.objects.count() == Deployment.objects.count() == 1


def test_the_same_build_with_another_digest_is_a_conflict(client, token):
    post(client, body(), token)
    response = post(client, body(digest="sha256:" + "c" * 64), token)
    assert response.status_code == 409
    assert Release.objects.get().digest == "sha256:" + "b" * 64


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        (body(sha="abc"), "sha", "40-character"),
        (body(digest="sha256:xyz"), "digest", "sha256:<64 hex digits>"),
        (body(component="mysql"), "component", "does not build component 'mysql'"),
        (body(repository="x/y"), "repository", "x/y is not in the topology"),
        (body(branch="feature"), "branch", "deploys to no environment"),
        (body(run_url="javascript:alert(1)"), "run_url", "http(s) URL"),
        (body(extra="1"), "extra", "unknown field"),
        ({k: v for k, v in body().items() if k != "image"}, "image", "image is required"),
        (body(version=7), "version", "must be a string"),
    ],
)
def test_bad_input_is_400_naming_the_field_and_writes_nothing(client, token, data, field, message):
    response = post(client, data, token)
    assert response.status_code == 400
    assert response.json()["field"] == field and message in response.json()["error"]
    assert Release.objects.count() == Deployment.objects.count() == 0


def test_malformed_json_is_400(client, token):
    response = post(client, None, token, raw="{nope")
    assert response.status_code == 400 and "not JSON" in response.json()["error"]


@pytest.mark.parametrize("header_token", [None, "gty_wrong", "not-a-gantry-token"])
def test_a_missing_or_wrong_token_is_401(client, token, header_token):
    assert post(client, body(), header_token).status_code == 401
    assert Release.objects.count() == 0


def test_a_revoked_token_is_401_and_a_viewer_token_is_403(client, token, make_user):
    ApiToken.objects.update(revoked=True)
    assert post(client, body(), token).status_code == 401
    viewer_token = ApiToken(name="v", user=make_user("viewer", "someone"))
    raw = viewer_token.issue()
    viewer_token.save()
    assert post(client, body(), raw).status_code == 403
    assert Release.objects.count() == 0


def test_tokens_are_stored_hashed_and_track_use(token):
    stored = ApiToken.objects.get()
    assert token not in (stored.key_hash, stored.key_prefix)
    assert stored.key_hash == ApiToken.hash(token) and token.startswith(stored.key_prefix)
    assert ApiToken.authenticate(f"Bearer {token}") == stored
    stored.refresh_from_db()
    assert stored.last_used_at is not None
