import json

import pytest

from audit.models import AuditEvent
from deployments.approvals import ApprovalError, decide
from deployments.models import Deployment, Release
from portal.models import ApiToken, Profile

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
        "author": "dev-alice",
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


def issue(user) -> str:
    token = ApiToken(name=f"{user}-token", user=user)
    raw = token.issue()
    token.save()
    return raw


def nothing_written() -> bool:
    return Release.objects.count() == Deployment.objects.count() == 0 and not (
        AuditEvent.objects.filter(action="release.create").exists()
    )


# --- who the author is (issue 13, item 5) -------------------------------------------------------


def test_a_ci_token_must_name_the_runs_github_actor(client, token):
    response = post(client, body(author=""), token)
    assert response.status_code == 422
    assert response.json()["field"] == "author"
    assert "author is required with a ci token" in response.json()["error"]
    assert nothing_written()


@pytest.mark.parametrize(
    "author",
    [
        " approver",
        "approver\u200b",
        "Approver",
        "\u200b\uff21\uff30\uff30\uff32\uff2f\uff36\uff25\uff32 ",
    ],
)
def test_the_author_is_normalised_so_the_approver_cannot_approve_their_own_build(
    client, token, make_user, author
):
    response = post(client, body(branch="main", author=author), token)
    assert response.status_code == 201
    release = Release.objects.get()
    assert release.author.casefold() == "approver", "kept in GitHub's case, without the rest"
    approver = make_user("approver", "approver")
    Profile.objects.update_or_create(user=approver, defaults={"github_login": "approver"})
    with pytest.raises(ApprovalError, match="You triggered this build"):
        decide(release.deployments.get().pk, approver, "approve")


@pytest.mark.parametrize("author", ["\u200b", "   ", "two words", "<script>"])
def test_an_author_github_would_refuse_is_422(client, token, author):
    response = post(client, body(author=author), token)
    assert response.status_code == 422 and response.json()["field"] == "author"
    assert nothing_written()


def test_a_ci_token_may_name_the_triggering_actor_too(client, token):
    response = post(client, body(author="release-bot", triggering_actor=" Dev-Alice"), token)
    assert response.status_code == 201
    release = Release.objects.get()
    assert (release.author, release.triggering_actor) == ("release-bot", "Dev-Alice")


@pytest.fixture
def admin_token(make_user):
    """An admin's own token (the admin role may post releases): a person, not a CI job."""
    admin = make_user("admin", "ops@example.com")
    Profile.objects.update_or_create(user=admin, defaults={"github_login": "ops-gh"})
    return issue(admin)


def test_a_persons_token_authors_its_release_with_their_own_github_login(
    client, seed_topology, admin_token
):
    response = post(client, body(author=""), admin_token)
    assert response.status_code == 201
    assert Release.objects.get().author == "ops-gh"


def test_a_persons_token_cannot_name_someone_else_as_the_author(client, seed_topology, admin_token):
    response = post(client, body(author="dev-alice"), admin_token)
    assert response.status_code == 422 and response.json()["field"] == "author"
    assert "only a ci token may name the author" in response.json()["error"]
    assert nothing_written()
    assert post(client, body(author="OPS-GH"), admin_token).status_code == 201


def test_a_person_without_a_known_github_login_cannot_post_a_release(
    client, seed_topology, make_user
):
    admin = make_user("admin", "ops@example.com")
    Profile.objects.filter(user=admin).delete()
    response = post(client, body(author=""), issue(admin))
    assert response.status_code == 422 and response.json()["field"] == "author"
    assert "no known GitHub login" in response.json()["error"]
    assert nothing_written()


# --- where images may come from (issue 13, item 6) ----------------------------------------------

DEV = "asia-northeast3-docker.pkg.dev/nemo-dev/registry"
PROD = "asia-northeast3-docker.pkg.dev/nemo-prod/registry"


@pytest.mark.parametrize(
    "image",
    [
        "evil.example.net/attacker/backdoor",
        "evil.example.net/attacker/backdoor:" + "a" * 40,
        f"{DEV}-evil/backend:latest",
        f"{DEV}.evil.example.net/backend:latest",
        f"{DEV}/../../attacker/backdoor:latest",
        f"{DEV}//backend:latest",
        f"{DEV}/",
        DEV,
        f"evil.example.net/{DEV}/backend:latest",
        f"{DEV.upper()}/backend:latest",
        f"{DEV}/backend:latest@evil.example.net/x",
    ],
)
def test_an_image_from_elsewhere_is_422_naming_the_allowed_prefix_and_writes_nothing(
    client, token, image, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        response = post(client, body(image=image), token)
    assert response.status_code == 422
    answer = response.json()
    assert answer["field"] == "image"
    assert f"{DEV}/" in answer["error"]
    assert nothing_written() and callbacks == []


@pytest.mark.parametrize(
    ("branch", "image"),
    [
        ("develop", f"{DEV}/backend:" + "a" * 40),
        ("main", f"{DEV}/backend:" + "a" * 40),  # CI's registry, promoted from there
        ("main", f"{PROD}/backend@sha256:" + "b" * 64),  # already in prod's own
        ("develop", f"{DEV}/team/backend_2.x:v1.2-rc"),
    ],
)
def test_images_under_the_repositorys_or_the_environments_registry_are_taken(
    client, token, branch, image
):
    assert post(client, body(branch=branch, image=image), token).status_code == 201
    assert Release.objects.get().image == image


def test_the_error_names_both_registries_a_prod_release_may_come_from(client, token):
    response = post(client, body(branch="main", image="evil.example.net/x/y:1"), token)
    assert response.status_code == 422
    assert f"{DEV}/" in response.json()["error"] and f"{PROD}/" in response.json()["error"]


def test_the_commit_time_is_kept_with_its_offset(client, token):
    response = post(client, body(committed_at="2026-11-30T09:15:00+09:00"), token)
    assert response.status_code == 201
    release = Release.objects.get()
    assert release.committed_at.isoformat() == "2026-11-30T00:15:00+00:00"
    shown = client.get(f"/api/releases/{release.pk}/", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert shown.json()["committed_at"].startswith("2026-11-30T00:15:00")


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("2026-11-30T09:15:00", "needs a UTC offset"),
        ("2999-01-01T00:00:00Z", "in the future"),
        ("yesterday", "datetime"),
    ],
)
def test_a_bad_commit_time_is_a_400_and_writes_nothing(client, token, value, says):
    response = post(client, body(committed_at=value), token)
    assert response.status_code == 400
    assert response.json()["field"] == "committed_at" and says in response.json()["error"]
    assert Release.objects.count() == Deployment.objects.count() == 0
