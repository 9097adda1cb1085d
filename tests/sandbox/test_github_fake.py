"""The sandbox's fake GitHub, over real HTTP: GitHub's shapes, its auth rules, faults, reset,
hook deliveries (made over HTTP to a local receiver) and workflow runs; each answer checked with
the contract helpers too (the sandbox fixture checks every call at teardown as well)."""

import hashlib
import hmac
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from sandbox.server import Sandbox
from tests.contract import github_artifacts as contract

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


@pytest.mark.github_bad_requests
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
    http.post(f"{box.url}/_sandbox/github/hook", json={"url": "http://127.0.0.1:9/h"})
    complete(http, box, deliver=False)
    box.stop()
    again = Sandbox(port=0, snapshot=snapshot)
    assert [d["sha"] for d in again.github.deployments.values()] == [SHA]
    assert [r["head_sha"] for r in again.github.runs.values()] == [f"{1:040x}"]
    assert again.github.hook["url"] == "http://127.0.0.1:9/h"
    assert [d["status"] for d in again.github.deliveries] == ["failed to connect"]
    again.reset()
    assert again.github.deployments == {} and again.github.calls == []
    again.httpd.server_close()


# --- hook deliveries and workflow runs ---------------------------------------------------------

SECRET = "hook-secret"


@pytest.fixture
def receiver():
    """A local webhook receiver on 127.0.0.1:0: `.received` holds (headers, raw body) of each
    POST; it answers `.status`, after calling `.during(headers)` when set."""
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            received.append((headers, body))
            if server.during:
                server.during(headers)
            self.send_response(server.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.received, server.status, server.during = received, 202, None
    server.url = f"http://127.0.0.1:{server.server_address[1]}/github/webhook"
    threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def app_auth(http, sandbox, app_key):
    http.post(
        f"{sandbox.url}/_sandbox/github/apps", json={"app_id": "42", "public_key": app_key[1]}
    )
    return {"Authorization": f"Bearer {app_jwt(app_key[0])}"}


def hook(http, sandbox, url, content_type="json"):
    answer = http.post(
        f"{sandbox.url}/_sandbox/github/hook",
        json={"url": url, "secret": SECRET, "content_type": content_type},
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


def complete(http, sandbox, n=1, **fields):
    body = {"repository": REPO, "head_sha": f"{n:040x}", "head_branch": "main"} | fields
    answer = http.post(f"{sandbox.url}/_sandbox/github/runs", json=body)
    assert answer.status_code == 201, answer.text
    return answer.json()


def test_a_completed_run_is_delivered_signed_in_githubs_shape(http, sandbox, receiver):
    contract.require()
    registered = hook(http, sandbox, receiver.url)
    made = complete(http, sandbox, actor="dev-bob", run_number=12, name="build")
    ((headers, body),) = receiver.received
    assert headers["x-hub-signature-256"] == (
        "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    )
    assert headers["x-github-event"] == "workflow_run"
    assert re.fullmatch(r"[0-9a-f-]{36}", headers["x-github-delivery"])
    assert headers["x-github-hook-id"] == str(registered["id"])
    assert headers["user-agent"].startswith("GitHub-Hookshot/")
    assert headers["content-type"] == "application/json"
    payload = json.loads(body)
    assert payload == made["payload"]
    contract.validate_webhook("workflow-run-completed", payload)
    run = payload["workflow_run"]
    assert (run["head_sha"], run["head_branch"], run["conclusion"]) == (
        f"{1:040x}",
        "main",
        "success",
    )
    assert run["html_url"] == f"https://github.com/{REPO}/actions/runs/{run['id']}"
    assert run["head_repository"]["full_name"] == REPO and run["actor"]["login"] == "dev-bob"
    assert (run["run_number"], run["run_attempt"], run["name"]) == (12, 1, "build")
    delivery = made["delivery"]
    assert (delivery["status"], delivery["status_code"], delivery["redelivery"]) == (
        "OK",
        202,
        False,
    )
    assert delivery["guid"] == headers["x-github-delivery"]
    assert delivery["event"] == "workflow_run" and delivery["action"] == "completed"


def test_form_encoded_deliveries_carry_the_json_in_payload(http, sandbox, receiver):
    hook(http, sandbox, receiver.url, content_type="form")
    made = complete(http, sandbox)
    ((headers, body),) = receiver.received
    assert headers["content-type"] == "application/x-www-form-urlencoded"
    assert headers["x-hub-signature-256"] == (
        "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    )
    assert json.loads(parse_qs(body.decode())["payload"][0]) == made["payload"]


def test_failed_deliveries_are_recorded_as_github_records_them(http, sandbox, receiver):
    hook(http, sandbox, receiver.url)
    receiver.status = 503
    assert complete(http, sandbox, 1)["delivery"]["status"] == "Invalid HTTP Response: 503"
    not_sent = complete(http, sandbox, 2, deliver=False)["delivery"]
    assert (not_sent["status"], not_sent["status_code"]) == ("failed to connect", 0)
    sandbox.inject_fault("http_error", path="/_sandbox/github/hook/deliver", status=502)
    faulted = complete(http, sandbox, 3)["delivery"]
    assert (faulted["status"], faulted["status_code"]) == ("Invalid HTTP Response: 502", 502)
    assert len(receiver.received) == 1  # neither the undelivered nor the faulted one was sent
    closed = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = closed.server_address[1]
    closed.server_close()
    hook(http, sandbox, f"http://127.0.0.1:{port}/hook")
    refused = complete(http, sandbox, 4)["delivery"]
    assert (refused["status"], refused["status_code"]) == ("failed to connect", 0)
    assert [d["status_code"] for d in sandbox.github.deliveries] == [503, 0, 502, 0]


def test_hook_deliveries_page_newest_first_with_a_link_cursor(
    http, sandbox, gh, receiver, app_auth
):
    contract.require()
    hook(http, sandbox, receiver.url)
    for n in range(5):
        complete(http, sandbox, n + 1, deliver=n != 2)
    pages, url, params = [], f"{gh}/app/hook/deliveries", {"per_page": 2}
    while url:
        answer = http.get(url, headers=app_auth, params=params)
        assert answer.status_code == 200, answer.text
        contract.validate_response("GET", "/app/hook/deliveries", 200, answer.json())
        pages.append(answer.json())
        link = answer.headers.get("link", "")
        found = re.fullmatch(r'<([^>]+)>; rel="next"', link)
        assert found or not link
        url, params = (found.group(1) if found else None), None
        if found:
            assert "cursor=" in url and "per_page=2" in url
    assert [len(p) for p in pages] == [2, 2, 1]
    ids = [d["id"] for page in pages for d in page]
    assert (
        ids == sorted(ids, reverse=True) == [d["id"] for d in reversed(sandbox.github.deliveries)]
    )
    item = pages[0][0]
    assert set(item) == {
        "id",
        "guid",
        "delivered_at",
        "redelivery",
        "duration",
        "status",
        "status_code",
        "event",
        "action",
        "installation_id",
        "repository_id",
        "throttled_at",
    }
    failed = http.get(f"{gh}/app/hook/deliveries", headers=app_auth, params={"status": "failure"})
    assert [d["status_code"] for d in failed.json()] == [0]
    one = http.get(f"{gh}/app/hook/deliveries/{item['id']}", headers=app_auth)
    assert one.status_code == 200
    contract.validate_response("GET", f"/app/hook/deliveries/{item['id']}", 200, one.json())
    detail = one.json()
    assert detail["request"]["headers"]["X-GitHub-Delivery"] == item["guid"]
    assert detail["request"]["payload"]["workflow_run"]["head_sha"] == f"{5:040x}"
    assert detail["response"]["payload"] == "{}"
    many = http.get(f"{gh}/app/hook/deliveries", headers=app_auth, params={"per_page": 500})
    assert len(many.json()) == 5 and "link" not in many.headers
    assert http.get(f"{gh}/app/hook/deliveries/999", headers=app_auth).status_code == 404
    bad = http.get(f"{gh}/app/hook/deliveries", headers=app_auth, params={"cursor": "nope"})
    assert bad.status_code == 400


def test_app_endpoints_refuse_a_pat_and_an_installation_token(http, sandbox, gh, app_key):
    issued = installation_token(http, sandbox, gh, app_key)
    for headers in (TOKEN, {"Authorization": f"token {issued['token']}"}, {}):
        for method, path in (
            ("GET", "/app/hook/deliveries"),
            ("GET", "/app/hook/deliveries/1"),
            ("POST", "/app/hook/deliveries/1/attempts"),
        ):
            answer = http.request(method, f"{gh}{path}", headers=headers)
            assert answer.status_code == 401, (method, path, headers, answer.text)
            assert "documentation_url" in answer.json()


def test_a_redelivery_keeps_the_guid_with_a_new_id(http, sandbox, gh, receiver, app_auth):
    hook(http, sandbox, receiver.url)
    missed = complete(http, sandbox, deliver=False)["delivery"]
    assert receiver.received == []
    answer = http.post(f"{gh}/app/hook/deliveries/{missed['id']}/attempts", headers=app_auth)
    assert answer.status_code == 202 and answer.json() == {}
    ((headers, body),) = receiver.received
    assert headers["x-github-delivery"] == missed["guid"]
    assert json.loads(body) == missed["request"]["payload"]
    listed = http.get(f"{gh}/app/hook/deliveries", headers=app_auth).json()
    assert [(d["guid"], d["redelivery"], d["status"]) for d in listed] == [
        (missed["guid"], True, "OK"),
        (missed["guid"], False, "failed to connect"),
    ]
    assert listed[0]["id"] > listed[1]["id"]


def test_a_receiver_may_call_the_fake_while_a_delivery_is_made(http, sandbox, gh, receiver):
    hook(http, sandbox, receiver.url)
    seen = []

    def call_back(headers):  # Gantry may ask for the run while handling its webhook
        import httpx

        seen.append(httpx.get(f"{gh}/repos/{REPO}/actions/runs", headers=TOKEN, timeout=3))

    receiver.during = call_back
    started = time.monotonic()
    complete(http, sandbox)
    assert time.monotonic() - started < 3
    assert seen[0].status_code == 200 and seen[0].json()["total_count"] == 1


def test_workflow_runs_filter_page_and_newest_first(http, sandbox, gh, app_key):
    contract.require()
    runs = [
        complete(http, sandbox, 1, head_branch="develop", created_at="2026-01-01T10:00:00Z"),
        complete(http, sandbox, 2, conclusion="failure", created_at="2026-01-02T10:00:00Z"),
        complete(http, sandbox, 3, event="workflow_dispatch", created_at="2026-01-03T10:00:00Z"),
        complete(http, sandbox, 4, actor="dev-bob", created_at="2026-01-04T10:00:00Z"),
    ]
    complete(http, sandbox, 9, repository="nemo-team/other")

    def ids(**query):
        answer = http.get(f"{gh}/repos/{REPO}/actions/runs", headers=TOKEN, params=query)
        assert answer.status_code == 200, answer.text
        contract.validate_response("GET", f"/repos/{REPO}/actions/runs", 200, answer.json())
        body = answer.json()
        return body["total_count"], [r["run_number"] for r in body["workflow_runs"]]

    assert ids() == (4, [4, 3, 2, 1])
    assert ids(branch="develop") == (1, [1])
    assert ids(event="workflow_dispatch") == (1, [3])
    assert ids(status="completed") == (4, [4, 3, 2, 1])
    assert ids(status="failure") == (1, [2])
    assert ids(status="success") == (3, [4, 3, 1])
    assert ids(status="in_progress") == (0, [])
    assert ids(actor="dev-bob") == (1, [4])
    assert ids(head_sha=f"{2:040x}") == (1, [2])
    assert ids(created=">=2026-01-03T00:00:00Z") == (2, [4, 3])
    assert ids(created="<2026-01-02T10:00:00Z") == (1, [1])
    assert ids(created="2026-01-02..2026-01-03") == (2, [3, 2])
    assert ids(created="2026-01-04") == (1, [4])
    assert ids(per_page=3, page=2) == (4, [1])
    listed = http.get(f"{gh}/repos/{REPO}/actions/runs", headers=TOKEN).json()["workflow_runs"]
    assert listed[0] == runs[3]["payload"]["workflow_run"] == runs[3]["run"]
    issued = installation_token(http, sandbox, gh, app_key)
    as_app = {"Authorization": f"token {issued['token']}"}
    assert http.get(f"{gh}/repos/{REPO}/actions/runs", headers=as_app).status_code == 200
    assert http.get(f"{gh}/repos/{REPO}/actions/runs").status_code == 401
    bad = http.get(f"{gh}/repos/{REPO}/actions/runs", headers=TOKEN, params={"status": "done"})
    assert bad.status_code == 422


def test_protection_rule_payloads_in_both_of_githubs_shapes(http, sandbox):
    contract.require()
    rule = f"{sandbox.url}/_sandbox/github/protection_rules"
    body = {"repository": REPO, "sha": SHA, "environment": "prod", "ref": "main"}
    with_deployment = http.post(rule, json=body).json()
    contract.validate_webhook("deployment-protection-rule-requested", with_deployment)
    assert (with_deployment["sha"], with_deployment["ref"]) == (SHA, "main")
    assert with_deployment["deployment"]["sha"] == SHA
    without = http.post(rule, json=body | {"with_deployment": False}).json()
    assert without["deployment"] is None and (without["sha"], without["ref"]) == (SHA, "main")
    # @octokit/openapi-webhooks 12.1.0 does not allow the null GitHub now sends; everything else
    # in the payload matches.
    with pytest.raises(AssertionError) as refused:
        contract.validate_webhook("deployment-protection-rule-requested", without)
    assert str(refused.value).splitlines()[1:] == ['  $.deployment: null is not of type "object"']
    contract.validate_webhook(
        "deployment-protection-rule-requested",
        {k: v for k, v in without.items() if k != "deployment"},
    )


def test_every_answer_the_fake_gave_matches_the_spec(http, sandbox, gh, app_key):
    """The contract check the sandbox fixture runs at teardown, run here on purpose."""
    from sandbox.pytest_plugin import github_contract_problems

    contract.require()
    issued = installation_token(http, sandbox, gh, app_key)
    app = {"Authorization": f"token {issued['token']}"}
    payload = http.post(
        f"{sandbox.url}/_sandbox/github/protection_rules",
        json={"repository": REPO, "sha": SHA, "environment": "prod"},
    ).json()
    deployment = http.post(f"{gh}/repos/{REPO}/deployments", headers=app, json={"ref": SHA}).json()
    http.post(deployment["statuses_url"], headers=app, json={"state": "success"})
    http.get(deployment["statuses_url"], headers=app)
    http.get(f"{gh}/repos/{REPO}/deployments/{deployment['id']}", headers=app)
    http.get(f"{gh}/repos/{REPO}/deployments", headers=app)
    http.post(
        payload["deployment_callback_url"],
        headers=app,
        json={"environment_name": "prod", "state": "approved", "comment": "ok"},
    )
    assert len(sandbox.github.calls) == 7
    assert all("status" in c and "response" in c for c in sandbox.github.calls)
    assert github_contract_problems(sandbox.github) == []
    sandbox.github.calls[2]["response"]["state"] = "done"  # a fake answering off-spec is caught
    (problem,) = github_contract_problems(sandbox.github)
    assert "POST /repos/nemo-team/nemo-api/deployments/" in problem and "$.state" in problem
    sandbox.github.calls[2]["response"]["state"] = "success"


def test_a_comment_without_a_state_is_a_status_report_and_the_job_keeps_waiting(
    http, sandbox, gh, app_key
):
    payload = http.post(
        f"{sandbox.url}/_sandbox/github/protection_rules",
        json={"repository": REPO, "sha": SHA, "environment": "prod"},
    ).json()
    app = {"Authorization": f"Bearer {installation_token(http, sandbox, gh, app_key)['token']}"}
    callback = payload["deployment_callback_url"]
    report = {"environment_name": "prod", "comment": "waiting for canary"}
    assert http.post(callback, headers=app, json=report).status_code == 204
    assert sandbox.github.reviews == []
    (waiting,) = sandbox.github.waiting.values()
    assert waiting["comments"] == ["waiting for canary"] and waiting["reviewed"] is None
    verdict = report | {"state": "approved"}
    assert http.post(callback, headers=app, json=verdict).status_code == 204
    assert [r["state"] for r in sandbox.github.reviews] == ["approved"]
