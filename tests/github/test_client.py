"""github/client.py against the sandbox's fake GitHub over real HTTP: rate limits, App
installations and their tokens, the App's webhook deliveries, workflow runs, and protection-rule
status reports.

The fault injector answers an injected error in GitHub's shape but sets no headers of its own
(only the 429's `Retry-After: 1`, as GitHub's limiter sends it), so the header-driven waits
(`x-ratelimit-remaining`/`-reset`, a long `retry-after`, a secondary limit's message) are checked
on httpx.Response objects built here with GitHub's documented headers: responses, not a fake
GitHub.
"""

import hashlib
import threading

import httpx
import pytest
from django.core.exceptions import ImproperlyConfigured

from github import client as github_api
from github.client import GitHub, GitHubError

REPO = "nemo-team/nemo-api"
APP_ID = "42"
NOW = 1_800_000_000.0  # the clock these tests give the client
SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(autouse=True)
def fresh_tokens():
    github_api.tokens.clear()
    yield
    github_api.tokens.clear()


@pytest.fixture
def api(sandbox_settings):
    return sandbox_settings.url + "/github"


@pytest.fixture
def app(sandbox_settings, settings, app_key):
    """Gantry as GitHub App 42 with no default installation; the fake checks its key."""
    answer = httpx.post(
        f"{sandbox_settings.url}/_sandbox/github/apps",
        json={"app_id": APP_ID, "public_key": app_key[1], "token_lifetime": 3600},
    )
    assert answer.status_code == 201
    settings.GANTRY_GITHUB_TOKEN = ""
    settings.GANTRY_GITHUB_APP_ID = APP_ID
    settings.GANTRY_GITHUB_APP_INSTALLATION_ID = ""
    settings.GANTRY_GITHUB_APP_PRIVATE_KEY = app_key[0]
    settings.GANTRY_GITHUB_APP_PRIVATE_KEY_FILE = ""
    return github_api.configured_app()


class Seen(httpx.HTTPTransport):
    """A real HTTP transport that notes, per request, the path and a hash of the credential sent
    (the fake keeps its installation tokens by the same hash)."""

    def __init__(self):
        super().__init__()
        self.requests: list[tuple[str, str, str]] = []
        self._lock = threading.Lock()

    def handle_request(self, request):
        credential = request.headers.get("authorization", "").partition(" ")[2]
        with self._lock:
            self.requests.append(
                (
                    request.method,
                    request.url.path.removeprefix("/github"),
                    hashlib.sha256(credential.encode()).hexdigest(),
                )
            )
        return super().handle_request(request)


def complete_runs(sandbox, count, **fields):
    """`count` completed workflow runs, each also a (failed, undelivered) webhook delivery."""
    with httpx.Client(base_url=sandbox.url) as http:
        for n in range(count):
            body = {
                "repository": REPO,
                "head_sha": f"{n:040x}",
                "head_branch": "main",
                "deliver": False,
            } | fields
            answer = http.post("/_sandbox/github/runs", json=body)
            assert answer.status_code == 201, answer.text


def response(status, message="", **headers):
    return httpx.Response(
        status,
        json={"message": message, "documentation_url": "https://docs.github.com/rest"},
        headers={k.replace("_", "-"): str(v) for k, v in headers.items()},
    )


def error(status, message="", clock=lambda: NOW, **headers):
    with GitHub("https://api.github.test", token="t", clock=clock) as github:
        return github.error("GET", "/repos/o/r", response(status, message, **headers))


# --- rate limits ----------------------------------------------------------------------------


def test_a_429_from_github_waits_as_long_as_retry_after_says(api, sandbox_settings):
    sandbox_settings.inject_fault("http_error", path="/github/*", status=429, count=1)
    with GitHub(api, token="ghp_x") as github, pytest.raises(GitHubError) as raised:
        github.find_deployments(REPO, sha=SHA, environment="dev")
    assert (raised.value.status, raised.value.retry_after) == (429, 1.0)
    assert raised.value.retryable and raised.value.rate_limited
    assert "Rate Limit Exceeded" in str(raised.value) and "ghp_x" not in str(raised.value)


@pytest.mark.parametrize("status", [403, 429])
def test_retry_after_is_the_wait_on_a_403_or_429(status):
    found = error(status, "You have exceeded a secondary rate limit.", retry_after=120)
    assert (found.retry_after, found.retryable) == (120.0, True)


def test_retry_after_zero_still_waits_a_second():
    assert error(429, retry_after=0).retry_after == 1.0


def test_a_retry_after_date_is_read_on_the_clients_clock():
    found = error(403, retry_after="Fri, 15 Jan 2027 08:00:30 GMT", clock=lambda: 1_800_000_000)
    # 2027-01-15T08:00:30Z is 1 800 000 030
    assert found.retry_after == 30.0


@pytest.mark.parametrize("status", [403, 429])
def test_an_exhausted_primary_limit_waits_until_the_reset_on_the_injected_clock(status):
    found = error(
        status,
        "API rate limit exceeded for installation ID 7.",
        x_ratelimit_limit=5000,
        x_ratelimit_remaining=0,
        x_ratelimit_used=5000,
        x_ratelimit_reset=int(NOW) + 1234,
    )
    assert (found.retry_after, found.retryable) == (1234.0, True)
    later = error(
        status, x_ratelimit_remaining=0, x_ratelimit_reset=int(NOW) + 1234, clock=lambda: NOW + 1000
    )
    assert later.retry_after == 234.0  # the wait is the clock's, not the machine's


def test_a_reset_already_past_waits_one_second_not_zero_or_less():
    found = error(403, x_ratelimit_remaining=0, x_ratelimit_reset=int(NOW) - 50)
    assert (found.retry_after, found.retryable) == (1.0, True)


def test_retry_after_comes_before_the_reset():
    found = error(429, retry_after=5, x_ratelimit_remaining=0, x_ratelimit_reset=int(NOW) + 900)
    assert found.retry_after == 5.0


def test_a_secondary_rate_limit_waits_at_least_a_minute():
    found = error(
        403,
        "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
        x_ratelimit_remaining=4321,
    )
    assert (found.retry_after, found.retryable) == (60.0, True)
    bare = error(429)  # any 429 is a rate limit, whatever it says
    assert (bare.retry_after, bare.retryable) == (60.0, True)


def test_a_remaining_limit_with_an_unreadable_reset_waits_a_minute():
    assert error(403, x_ratelimit_remaining=0, x_ratelimit_reset="soon").retry_after == 60.0


def test_a_permission_403_is_permanent_even_with_rate_limit_headers_left():
    found = error(
        403,
        "Resource not accessible by integration",
        x_ratelimit_remaining=4999,
        x_ratelimit_reset=int(NOW) + 60,
    )
    assert (found.retry_after, found.retryable, found.rate_limited) == (None, False, False)


def test_a_permission_403_from_github_is_not_retried(api, sandbox_settings):
    """Only an installation token may answer a protection rule: a token gets GitHub's 403."""
    rule = httpx.post(
        f"{sandbox_settings.url}/_sandbox/github/protection_rules",
        json={"repository": REPO, "sha": SHA, "environment": "prod"},
    ).json()
    with GitHub(api, token="ghp_x") as github, pytest.raises(GitHubError) as raised:
        github.review_protection_rule(
            rule["deployment_callback_url"], environment="prod", state="approved", comment="ok"
        )
    assert raised.value.status == 403
    assert (raised.value.retry_after, raised.value.retryable) == (None, False)


def test_an_injected_403_without_rate_limit_signs_is_permanent_and_a_503_is_retried(
    api, sandbox_settings
):
    sandbox_settings.inject_fault("http_error", path="/github/*", status=403, count=1)
    sandbox_settings.inject_fault("http_error", path="/github/*", status=503, count=1)
    with GitHub(api, token="ghp_x") as github:
        with pytest.raises(GitHubError) as forbidden:
            github.find_deployments(REPO, sha=SHA, environment="dev")
        with pytest.raises(GitHubError) as unavailable:
            github.find_deployments(REPO, sha=SHA, environment="dev")
        assert github.find_deployments(REPO, sha=SHA, environment="dev") == []
    assert (forbidden.value.status, forbidden.value.retryable) == (403, False)
    assert (unavailable.value.status, unavailable.value.retryable) == (503, True)
    assert unavailable.value.retry_after is None  # backoff is the task's to choose


# --- installations --------------------------------------------------------------------------


def test_two_installations_get_two_tokens_and_each_call_uses_its_own(api, app, sandbox_settings):
    seen = Seen()
    with (
        GitHub(api, app=app, installation_id=7, transport=seen) as seven,
        GitHub(api, app=app, installation_id="8", transport=seen) as eight,
    ):
        for github in (seven, eight, seven, eight):
            github.create_deployment(REPO, ref=SHA, environment="dev", description="d", payload={})
    issued = sandbox_settings.github.tokens
    assert sorted(t["installation"] for t in issued.values()) == ["7", "8"]
    exchanges = [p for m, p, _ in seen.requests if p.startswith("/app/")]
    assert exchanges == ["/app/installations/7/access_tokens", "/app/installations/8/access_tokens"]
    used = [issued[h]["installation"] for m, p, h in seen.requests if p.endswith("/deployments")]
    assert used == ["7", "8", "7", "8"]
    calls = sandbox_settings.github.calls_to("POST", r"/deployments$")
    assert [c["auth"] for c in calls] == ["installation"] * 4


def test_from_settings_acts_as_the_installation_github_named(api, app, settings, sandbox_settings):
    settings.GANTRY_GITHUB_APP_INSTALLATION_ID = "7"
    with GitHub.from_settings(installation_id=99) as named, GitHub.from_settings() as default:
        assert (named.installation_id, default.installation_id) == ("99", "7")
        named.find_deployments(REPO, sha=SHA, environment="dev")
        default.find_deployments(REPO, sha=SHA, environment="dev")
    exchanged = sandbox_settings.github.calls_to("POST", r"^/app/installations/")
    assert [c["path"] for c in exchanged] == [
        "/app/installations/99/access_tokens",
        "/app/installations/7/access_tokens",
    ]


def test_no_installation_is_an_error_only_for_calls_that_need_one(api, app, sandbox_settings):
    assert app is not None and app.installation_id == ""  # configured_app() did not raise
    complete_runs(sandbox_settings, 1)
    with GitHub.from_settings() as github:
        assert len(list(github.hook_deliveries())) == 1  # the App's JWT is enough
        with pytest.raises(ImproperlyConfigured, match="installation"):
            github.find_deployments(REPO, sha=SHA, environment="dev")
    assert sandbox_settings.github.calls_to("POST", r"^/app/installations/") == []


def test_app_settings_without_a_key_are_still_incomplete(settings):
    settings.GANTRY_GITHUB_APP_ID = APP_ID
    settings.GANTRY_GITHUB_APP_INSTALLATION_ID = "7"
    settings.GANTRY_GITHUB_APP_PRIVATE_KEY = settings.GANTRY_GITHUB_APP_PRIVATE_KEY_FILE = ""
    with pytest.raises(ImproperlyConfigured, match="PRIVATE_KEY"):
        github_api.configured_app()


def test_a_token_alone_cannot_use_app_endpoints(api):
    with GitHub(api, token="ghp_x") as github, pytest.raises(ImproperlyConfigured, match="App"):
        list(github.hook_deliveries())


# --- the App's webhook deliveries -------------------------------------------------------------


def test_hook_deliveries_page_through_the_cursor_newest_first_with_the_app_jwt(
    api, app, sandbox_settings
):
    complete_runs(sandbox_settings, 230)
    expected = [d["id"] for d in reversed(sandbox_settings.github.deliveries)]
    seen = Seen()
    with GitHub(api, app=app, installation_id=7, transport=seen) as github:
        found = list(github.hook_deliveries())
        first_two_pages = list(github.hook_deliveries(max_pages=2))
        small_pages = list(github.hook_deliveries(per_page=50, max_pages=1))
    assert [d["id"] for d in found] == expected and len(found) == 230
    assert {d["event"] for d in found} == {"workflow_run"}
    assert [d["id"] for d in first_two_pages] == expected[:200]
    assert [d["id"] for d in small_pages] == expected[:50]
    calls = sandbox_settings.github.calls_to("GET", r"^/app/hook/deliveries$")
    assert {c["auth"] for c in calls} == {"app-jwt"}
    assert [c["query"].get("cursor") for c in calls[:3]] == [
        None,
        f"v1_{expected[99]}",
        f"v1_{expected[199]}",
    ]
    assert [c["query"].get("per_page") for c in calls[:3]] == ["100"] * 3
    assert len(calls) == 3 + 2 + 1
    # The JWT is no installation token, and none was asked for.
    assert not any(p.startswith("/app/installations") for _, p, _ in seen.requests)


def test_redeliver_asks_github_to_send_a_delivery_again(api, app, sandbox_settings):
    answer = httpx.post(
        f"{sandbox_settings.url}/_sandbox/github/hook",
        json={"url": f"{sandbox_settings.url}/_sandbox/nowhere", "secret": "s"},
    )
    assert answer.status_code == 201
    complete_runs(sandbox_settings, 2)
    original = sandbox_settings.github.deliveries[0]
    with GitHub(api, app=app) as github:
        assert github.redeliver(original["id"]) is None
        newest = next(github.hook_deliveries(per_page=1, max_pages=1))
    again = sandbox_settings.github.deliveries[-1]
    assert (again["guid"], again["redelivery"]) == (original["guid"], True)
    assert again["id"] == newest["id"] and again["id"] != original["id"]
    attempts = sandbox_settings.github.calls_to("POST", r"/attempts$")
    assert [(c["path"], c["auth"], c["status"]) for c in attempts] == [
        (f"/app/hook/deliveries/{original['id']}/attempts", "app-jwt", 202)
    ]


def test_redelivering_an_unknown_delivery_is_githubs_404(api, app):
    with GitHub(api, app=app) as github, pytest.raises(GitHubError) as raised:
        github.redeliver(1)
    assert (raised.value.status, raised.value.retryable) == (404, False)


# --- workflow runs ----------------------------------------------------------------------------


def test_workflow_runs_page_through_the_branchs_successful_pushes(api, app, sandbox_settings):
    complete_runs(sandbox_settings, 130)
    complete_runs(sandbox_settings, 3, head_branch="develop")
    complete_runs(sandbox_settings, 2, conclusion="failure")
    complete_runs(sandbox_settings, 2, event="pull_request")
    wanted = [
        r["id"]
        for r in sorted(
            sandbox_settings.github.runs.values(),
            key=lambda r: (r["created_at"], r["id"]),
            reverse=True,
        )
        if (r["head_branch"], r["event"], r["conclusion"]) == ("main", "push", "success")
    ]
    assert len(wanted) == 130
    with GitHub(api, app=app, installation_id=7) as github:
        runs = list(github.workflow_runs(REPO, branch="main"))
        one_page = list(github.workflow_runs(REPO, branch="main", per_page=50, max_pages=1))
        failures = list(github.workflow_runs(REPO, branch="main", status="failure"))
    assert [r["id"] for r in runs] == wanted
    assert [r["id"] for r in one_page] == wanted[:50]
    assert len(failures) == 2
    calls = sandbox_settings.github.calls_to("GET", r"/actions/runs$")
    assert [c["query"] for c in calls[:2]] == [
        {"branch": "main", "event": "push", "status": "success", "per_page": "100", "page": p}
        for p in ("1", "2")
    ]
    assert len(calls) == 2 + 1 + 1
    assert {c["auth"] for c in calls} == {"installation"}


def test_workflow_runs_since_a_moment(api, sandbox_settings):
    complete_runs(sandbox_settings, 2, created_at="2026-11-30T23:59:59Z")
    complete_runs(sandbox_settings, 3, created_at="2026-12-01T00:00:00Z")
    with GitHub(api, token="ghp_x") as github:
        runs = list(github.workflow_runs(REPO, branch="main", created=">=2026-12-01T00:00:00Z"))
    assert [r["created_at"] for r in runs] == ["2026-12-01T00:00:00Z"] * 3
    (call,) = sandbox_settings.github.calls_to("GET", r"/actions/runs$")
    assert (call["query"]["created"], call["auth"]) == (">=2026-12-01T00:00:00Z", "token")


# --- protection rules -------------------------------------------------------------------------


def waiting_rule(sandbox, installation_id=7):
    answer = httpx.post(
        f"{sandbox.url}/_sandbox/github/protection_rules",
        json={
            "repository": REPO,
            "sha": SHA,
            "environment": "prod",
            "installation_id": installation_id,
        },
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


def test_a_status_report_sends_a_comment_and_no_verdict(api, app, sandbox_settings):
    payload = waiting_rule(sandbox_settings, installation_id=7)
    with GitHub.from_settings(installation_id=payload["installation"]["id"]) as github:
        github.report_protection_rule(
            payload["deployment_callback_url"],
            environment=payload["environment"],
            comment="Waiting for approval in Gantry",
        )
    (call,) = sandbox_settings.github.calls_to("POST", r"/deployment_protection_rule$")
    # GitHub's review-custom-gates-comment-required body: no `state`.
    assert call["body"] == {"environment_name": "prod", "comment": "Waiting for approval in Gantry"}
    assert (call["auth"], call["status"]) == ("installation", 204)
    assert sandbox_settings.github.reviews == []  # no verdict: the job still waits
    assert [w["reviewed"] for w in sandbox_settings.github.waiting.values()] == [None]


def test_a_verdict_still_carries_its_state(api, app, sandbox_settings):
    payload = waiting_rule(sandbox_settings)
    with GitHub(api, app=app, installation_id=7) as github:
        github.review_protection_rule(
            payload["deployment_callback_url"], environment="prod", state="rejected", comment="no"
        )
    (call,) = sandbox_settings.github.calls_to("POST", r"/deployment_protection_rule$")
    assert call["body"] == {"environment_name": "prod", "state": "rejected", "comment": "no"}
    assert call["auth"] == "installation"


@pytest.mark.parametrize("method", ["report", "review"])
def test_protection_calls_go_only_to_the_configured_api(api, app, sandbox_settings, method):
    elsewhere = "http://127.0.0.1:9/repos/o/r/actions/runs/1/deployment_protection_rule"
    with (
        GitHub(api, app=app, installation_id=7) as github,
        pytest.raises(GitHubError, match="not on"),
    ):
        if method == "report":
            github.report_protection_rule(elsewhere, environment="prod", comment="c")
        else:
            github.review_protection_rule(
                elsewhere, environment="prod", state="approved", comment="c"
            )
    assert sandbox_settings.github.calls == []


def test_a_status_report_needs_a_comment(api):
    with GitHub(api, token="t") as github, pytest.raises(ValueError):
        github.report_protection_rule(
            api + "/repos/o/r/actions/runs/1/x", environment="p", comment=""
        )
