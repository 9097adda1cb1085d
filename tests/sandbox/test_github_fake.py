"""The sandbox's fake GitHub, over real HTTP: GitHub's shapes, its auth rules, faults, reset."""

import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from sandbox.server import Sandbox

REPO = "nemo-team/nemo-api"
SHA = "a" * 40
TOKEN = {"Authorization": "Bearer a-personal-token"}


@pytest.fixture
def gh(sandbox):
    return f"{sandbox.url}/github"


def app_jwt(private_key, iss="42", lifetime=540, **claims):
    now = int(time.time())
    body = {"iat": now - 60, "exp": now + lifetime, "iss": iss} | claims
    return jwt.encode({k: v for k, v in body.items() if v is not None}, private_key, "RS256")


def installation_token(http, sandbox, gh, app_key, lifetime=3600):
    http.post(
        f"{sandbox.url}/_sandbox/github/apps",
        json={"app_id": "42", "public_key": app_key[1], "token_lifetime": lifetime},
    )
    answer = http.post(
        f"{gh}/app/installations/7/access_tokens",
        headers={"Authorization": f"Bearer {app_jwt(app_key[0])}"},
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


def test_a_deployment_and_its_statuses_in_githubs_shapes(http, sandbox, gh):
    created = http.post(
        f"{gh}/repos/{REPO}/deployments",
        headers=TOKEN,
        json={
            "ref": SHA,
            "environment": "prod",
            "auto_merge": False,
            "required_contexts": [],
            "payload": {"gantry_deployment": 5},
            "production_environment": True,
        },
    )
    assert created.status_code == 201
    deployment = created.json()
    assert (deployment["sha"], deployment["ref"], deployment["environment"]) == (SHA, SHA, "prod")
    assert deployment["payload"] == {"gantry_deployment": 5}
    assert (
        deployment["statuses_url"] == f"{gh}/repos/{REPO}/deployments/{deployment['id']}/statuses"
    )
    assert not any(key.startswith("_") for key in deployment)
    for state in ("queued", "in_progress", "success"):
        answer = http.post(
            deployment["statuses_url"],
            headers=TOKEN,
            json={"state": state, "log_url": "https://gantry.test/deployments/5/"},
        )
        assert answer.status_code == 201
        assert answer.json()["log_url"] == answer.json()["target_url"]
    listed = http.get(deployment["statuses_url"], headers=TOKEN).json()
    assert [s["state"] for s in listed] == ["success", "in_progress", "queued"]  # newest first
    assert sandbox.github.states_of(deployment["id"]) == ["queued", "in_progress", "success"]
    found = http.get(
        f"{gh}/repos/{REPO}/deployments", headers=TOKEN, params={"sha": SHA, "environment": "prod"}
    ).json()
    assert [d["id"] for d in found] == [deployment["id"]]
    assert (
        http.get(
            f"{gh}/repos/{REPO}/deployments", headers=TOKEN, params={"environment": "dev"}
        ).json()
        == []
    )
    assert [c["auth"] for c in sandbox.github.calls_to("POST", r"/statuses$")] == ["token"] * 3


def test_bad_requests_get_githubs_errors_and_change_nothing(http, sandbox, gh):
    missing_auth = http.post(f"{gh}/repos/{REPO}/deployments", json={"ref": SHA})
    assert missing_auth.status_code == 401
    assert missing_auth.json()["message"] == "Requires authentication"
    assert "documentation_url" in missing_auth.json()
    no_ref = http.post(f"{gh}/repos/{REPO}/deployments", headers=TOKEN, json={"environment": "x"})
    assert no_ref.status_code == 422 and "ref" in no_ref.json()["message"]
    assert sandbox.github.deployments == {}
    deployment = http.post(
        f"{gh}/repos/{REPO}/deployments", headers=TOKEN, json={"ref": SHA}
    ).json()
    bad_state = http.post(deployment["statuses_url"], headers=TOKEN, json={"state": "done"})
    assert bad_state.status_code == 422
    assert sandbox.github.states_of(deployment["id"]) == []
    other_repo = http.get(
        f"{gh}/repos/nemo-team/other/deployments/{deployment['id']}", headers=TOKEN
    )
    assert other_repo.status_code == 404 and other_repo.json()["message"] == "Not Found"


def test_app_jwt_buys_an_installation_token_only_with_a_good_signature(http, sandbox, gh, app_key):
    issued = installation_token(http, sandbox, gh, app_key)
    assert issued["token"].startswith("ghs_") and issued["expires_at"].endswith("Z")
    use = http.post(
        f"{gh}/repos/{REPO}/deployments",
        headers={"Authorization": f"token {issued['token']}"},
        json={"ref": SHA},
    )
    assert use.status_code == 201 and use.json()["creator"]["login"] == "gantry[bot]"
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = app_jwt(other_key)
    cases = {
        forged: "could not be decoded",
        app_jwt(app_key[0], iss=None): "'iss'",
        app_jwt(app_key[0], lifetime=3600): "too far in the future",
        app_jwt(app_key[0], lifetime=-120): "too far in the past",
        "not-a-jwt": "could not be decoded",
    }
    for token, why in cases.items():
        answer = http.post(
            f"{gh}/app/installations/7/access_tokens", headers={"Authorization": f"Bearer {token}"}
        )
        assert answer.status_code == 401 and why in answer.json()["message"], (why, answer.text)
    assert len(sandbox.github.tokens) == 1
    jwt_on_rest = http.get(
        f"{gh}/repos/{REPO}/deployments", headers={"Authorization": f"Bearer {app_jwt(app_key[0])}"}
    )
    assert jwt_on_rest.status_code == 401


def test_an_expired_installation_token_is_refused(http, sandbox, gh, app_key):
    issued = installation_token(http, sandbox, gh, app_key, lifetime=0.05)
    time.sleep(0.1)
    answer = http.get(
        f"{gh}/repos/{REPO}/deployments", headers={"Authorization": f"Bearer {issued['token']}"}
    )
    assert answer.status_code == 401 and answer.json()["message"] == "Bad credentials"


def test_a_protection_rule_is_answered_once_and_only_by_the_app(http, sandbox, gh, app_key):
    payload = http.post(
        f"{sandbox.url}/_sandbox/github/protection_rules",
        json={"repository": REPO, "sha": SHA, "environment": "prod"},
    ).json()
    assert payload["action"] == "requested" and payload["environment"] == "prod"
    assert payload["deployment"]["sha"] == SHA
    callback = payload["deployment_callback_url"]
    assert callback.startswith(f"{gh}/repos/{REPO}/actions/runs/")
    answer = {"environment_name": "prod", "state": "approved", "comment": "ok"}
    assert http.post(callback, headers=TOKEN, json=answer).status_code == 403
    app = {"Authorization": f"Bearer {installation_token(http, sandbox, gh, app_key)['token']}"}
    assert http.post(callback, headers=app, json=answer | {"state": "maybe"}).status_code == 422
    assert sandbox.github.reviews == []
    assert http.post(callback, headers=app, json=answer).status_code == 204
    again = http.post(callback, headers=app, json=answer | {"state": "rejected"})
    assert again.status_code == 422 and "already reviewed" in again.json()["message"]
    wrong_env = http.post(callback, headers=app, json=answer | {"environment_name": "dev"})
    assert wrong_env.status_code == 404
    assert [(r["state"], r["comment"]) for r in sandbox.github.reviews] == [("approved", "ok")]
    assert sandbox.github.states_of(payload["deployment"]["id"]) == ["waiting", "queued"]


def test_faults_answer_in_githubs_shape_then_clear(http, sandbox, gh):
    sandbox.inject_fault("http_error", path="/github/repos/*/deployments", status=503, count=2)
    for _ in range(2):
        down = http.post(f"{gh}/repos/{REPO}/deployments", headers=TOKEN, json={"ref": SHA})
        assert down.status_code == 503
        assert down.json()["message"] == "The service is currently unavailable."
    assert (
        http.post(f"{gh}/repos/{REPO}/deployments", headers=TOKEN, json={"ref": SHA}).status_code
        == 201
    )
    sandbox.inject_fault("http_error", path="/github/*", status=429, count=1)
    limited = http.get(f"{gh}/repos/{REPO}/deployments", headers=TOKEN)
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "1"
    assert len(sandbox.github.deployments) == 1  # the refused calls created nothing


def test_reset_forgets_and_a_snapshot_remembers(http, sandbox_factory, tmp_path):
    snapshot = tmp_path / "world.json"
    box = sandbox_factory(snapshot=snapshot)
    http.post(f"{box.url}/github/repos/{REPO}/deployments", headers=TOKEN, json={"ref": SHA})
    box.stop()
    again = Sandbox(port=0, snapshot=snapshot)
    assert [d["sha"] for d in again.github.deployments.values()] == [SHA]
    again.reset()
    assert again.github.deployments == {} and again.github.calls == []
    again.httpd.server_close()
