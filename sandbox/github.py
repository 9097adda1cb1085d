"""A fake GitHub REST API under /github: deployments, deployment statuses, GitHub App installation
tokens, answers to custom deployment protection rules, the App's webhook deliveries (and
redelivery) and workflow runs, kept in memory, and webhook deliveries made over real HTTP.

Point Gantry at it with GANTRY_GITHUB_API_URL=<sandbox>/github. Answers use GitHub's field names,
the shapes @octokit/openapi documents (tests/contract/ checks every request and answer against
it), and GitHub's error shape ({"message", "documentation_url"}). Every call to /github is
recorded (method, path, query, which kind of credential, body, and the answer's status and body;
never the credential itself). Faults inject as for the other APIs:
{"kind": "http_error", "path": "/github/*", "status": 503, "count": 3}.

Credentials: REST calls need `Authorization: Bearer|token X`. Installation tokens this fake issued
count as "installation", anything else as "token". An app JWT (RS256, `iss` = app id, at most 10
minutes long) buys an installation token and reads the App's hook deliveries; its signature is
checked when the app's public key was registered. Like GitHub, only an installation token may
answer a protection rule, and only an app JWT may use /app endpoints.

REST endpoints:
    POST /app/installations/{id}/access_tokens              (app JWT)
    GET  /app/hook/deliveries?per_page=&cursor=&status=     (app JWT) newest first; `Link:
         <…?per_page=N&cursor=C>; rel="next"` while more remain, as GitHub pages them
    GET  /app/hook/deliveries/{id}                          (app JWT) with request and response
    POST /app/hook/deliveries/{id}/attempts                 (app JWT) 202; redelivers now, with
         the same X-GitHub-Delivery guid, a new delivery id and `redelivery: true`
    POST|GET /repos/{o}/{r}/deployments, GET …/deployments/{id}
    POST|GET /repos/{o}/{r}/deployments/{id}/statuses
    POST /repos/{o}/{r}/actions/runs/{run_id}/deployment_protection_rule   (installation token)
    GET  /repos/{o}/{r}/actions/runs?branch=&event=&status=&actor=&head_sha=&created=&per_page=
         &page=   {"total_count", "workflow_runs"} newest first; `status` is a status or a
         conclusion; `created` is a date, `>=date`, `<date`, … or `date..date`

Control, under /_sandbox/github:
    GET  /_sandbox/github                   deployments, statuses, reviews, waiting rules, runs,
                                            hook, deliveries, calls
    POST /_sandbox/github/apps              {"app_id", "public_key": PEM, "token_lifetime": s}
    POST /_sandbox/github/protection_rules  {"repository", "sha", "environment", "ref", "event",
         "sender", "installation_id", "with_deployment": true}: a workflow job now waits on a
         custom protection rule; answers the `deployment_protection_rule` webhook payload GitHub
         would send (top-level `sha` and `ref` always; `"with_deployment": false` sends
         `"deployment": null`, as GitHub now may).
    POST /_sandbox/github/hook              {"url", "secret", "content_type": "json"|"form"}: the
         App's webhook; answers {"id", "url", "content_type"} (the id is X-GitHub-Hook-ID).
    POST /_sandbox/github/runs              {"repository", "head_sha", "head_branch", "name",
         "event": "push", "conclusion": "success", "actor": "dev-alice", "run_number",
         "run_attempt": 1, "head_repository": full name (default the repository),
         "installation_id": 1, "created_at": RFC 3339 (default now), "deliver": true}: a workflow
         run completed. It is listed by /actions/runs and, unless `"deliver": false`, delivered as
         a `workflow_run` webhook to the registered hook (signed X-Hub-Signature-256, JSON or
         form-encoded `payload=`). `"deliver": false`, no hook, or an injected fault
         {"kind": "http_error", "path": "/_sandbox/github/hook/deliver", "status": 502} records
         a delivery GitHub tried and failed. Answers {"run", "payload", "delivery"}.

A delivery is recorded like GitHub's hook deliveries: status "OK" and the status code for a 2xx
answer, "Invalid HTTP Response: N" for another, "failed to connect" with status_code 0 when
nothing answered. Deliveries leave over HTTP without the world lock held: Gantry may call the fake
while it handles one.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
import uuid
from datetime import UTC, datetime
from urllib.parse import urlencode

import httpx
import jwt

from .http import ApiError, Request, Response, Router

PREFIX = "/github"
DOCS = "https://docs.github.com/rest"
STATUS_STATES = {"error", "failure", "inactive", "in_progress", "queued", "pending", "success"}
REVIEW_STATES = {"approved", "rejected"}
MAX_JWT_SECONDS = 600
CLOCK_SKEW = 60
CALLS_KEPT = 5000
DELIVERIES_KEPT = 5000
DELIVERY_TIMEOUT = 5.0  # seconds; GitHub gives up after 10
HOOKSHOT = "GitHub-Hookshot/f0e1d2c"
WEB = "https://github.com"
RUN_STATUSES = {"completed", "in_progress", "queued", "requested", "waiting", "pending"}
RUN_CONCLUSIONS = {
    "action_required",
    "cancelled",
    "failure",
    "neutral",
    "skipped",
    "stale",
    "success",
    "timed_out",
    "startup_failure",
}
DELIVER_FAULT_PATH = "/_sandbox/github/hook/deliver"


def _now_iso(t: float | None = None) -> str:
    moment = datetime.fromtimestamp(time.time() if t is None else t, UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


class GitHub:
    """The fake's whole state; the sandbox's world lock guards it."""

    def __init__(self, data: dict | None = None):
        data = data or {}
        self.next_id: int = data.get("next_id", 1)
        self.deployments: dict[int, dict] = {
            int(k): v for k, v in data.get("deployments", {}).items()
        }
        self.statuses: dict[int, list[dict]] = {
            int(k): v for k, v in data.get("statuses", {}).items()
        }
        self.reviews: list[dict] = data.get("reviews", [])
        self.waiting: dict[str, dict] = data.get("waiting", {})
        self.apps: dict[str, dict] = data.get("apps", {})
        self.tokens: dict[str, dict] = data.get("tokens", {})
        self.calls: list[dict] = data.get("calls", [])
        self.runs: dict[int, dict] = {int(k): v for k, v in data.get("runs", {}).items()}
        self.hook: dict | None = data.get("hook")
        self.deliveries: list[dict] = data.get("deliveries", [])

    def to_dict(self) -> dict:
        return {
            "next_id": self.next_id,
            "deployments": self.deployments,
            "statuses": self.statuses,
            "reviews": self.reviews,
            "waiting": self.waiting,
            "apps": self.apps,
            "tokens": self.tokens,
            "calls": self.calls,
            "runs": self.runs,
            "hook": self.hook,
            "deliveries": self.deliveries,
        }

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    # --- what tests read ------------------------------------------------------------------------

    def deployments_of(self, repository: str) -> list[dict]:
        """The repository's deployments, oldest first."""
        return [d for d in self.deployments.values() if d["_repository"] == repository]

    def states_of(self, deployment_id: int) -> list[str]:
        """The deployment's status states, oldest first."""
        return [s["state"] for s in self.statuses.get(deployment_id, [])]

    def calls_to(self, method: str, pattern: str) -> list[dict]:
        """Recorded calls whose path matches the regular expression `pattern` (under /github)."""
        return [c for c in self.calls if c["method"] == method and re.search(pattern, c["path"])]

    def summary(self) -> dict:
        return {
            "deployments": [public(d) for d in self.deployments.values()],
            "statuses": {str(k): v for k, v in self.statuses.items()},
            "reviews": self.reviews,
            "waiting": list(self.waiting.values()),
            "apps": sorted(self.apps),
            "runs": list(self.runs.values()),
            "hook": self.hook and {k: v for k, v in self.hook.items() if k != "secret"},
            "deliveries": [public(d) for d in self.deliveries],
            "calls": self.calls,
        }

    def delivery(self, delivery_id: int) -> dict | None:
        return next((d for d in self.deliveries if d["id"] == delivery_id), None)

    def record(self, request: Request, auth: str) -> None:
        body = request.json() if request.method in ("POST", "PATCH", "PUT") else None
        call = {
            "method": request.method,
            "path": request.path.removeprefix(PREFIX),
            "query": request.query,
            "auth": auth,
            "body": body,
        }
        self.calls.append(call)
        del self.calls[:-CALLS_KEPT]
        request.github_call = call  # the answer is added by routes()' wrapper


# --- GitHub's object shapes (@octokit/openapi's simple-user, repository, …) -----------------------


def _number(kind: str, name: str, digits: int = 8) -> int:
    """A stable id for a named thing, as GitHub's are stable."""
    return int(hashlib.sha256(f"{kind}:{name}".encode()).hexdigest()[:12], 16) % 10**digits + 1


def _node_id(prefix: str, number: int) -> str:
    return f"{prefix}_kgDO{number:08d}"


def user(login: str, base: str) -> dict:
    """simple-user; a login ending in [bot] is a Bot."""
    number = _number("user", login)
    api = f"{base}/users/{login}"
    return {
        "login": login,
        "id": number,
        "node_id": _node_id("U" if not login.endswith("[bot]") else "BOT", number),
        "avatar_url": f"https://avatars.githubusercontent.com/u/{number}?v=4",
        "gravatar_id": "",
        "url": api,
        "html_url": f"{WEB}/{login}",
        "followers_url": f"{api}/followers",
        "following_url": f"{api}/following{{/other_user}}",
        "gists_url": f"{api}/gists{{/gist_id}}",
        "starred_url": f"{api}/starred{{/owner}}{{/repo}}",
        "subscriptions_url": f"{api}/subscriptions",
        "organizations_url": f"{api}/orgs",
        "repos_url": f"{api}/repos",
        "events_url": f"{api}/events{{/privacy}}",
        "received_events_url": f"{api}/received_events",
        "type": "Bot" if login.endswith("[bot]") else "User",
        "user_view_type": "public",
        "site_admin": False,
    }


def repository_shape(full_name: str, base: str, created: str = "2024-01-15T09:00:00Z") -> dict:
    """A repository as webhooks carry it (repository-webhooks), which is also a superset of the
    REST minimal-repository: one shape for both."""
    owner, _, name = full_name.partition("/")
    api = f"{base}/repos/{full_name}"
    html = f"{WEB}/{full_name}"
    number = _number("repo", full_name, 9)
    owner_shape = user(owner, base) | {"type": "Organization"}
    return {
        "id": number,
        "node_id": _node_id("R", number),
        "name": name,
        "full_name": full_name,
        "private": True,
        "owner": owner_shape,
        "html_url": html,
        "description": None,
        "fork": False,
        "url": api,
        "archive_url": f"{api}/{{archive_format}}{{/ref}}",
        "assignees_url": f"{api}/assignees{{/user}}",
        "blobs_url": f"{api}/git/blobs{{/sha}}",
        "branches_url": f"{api}/branches{{/branch}}",
        "collaborators_url": f"{api}/collaborators{{/collaborator}}",
        "comments_url": f"{api}/comments{{/number}}",
        "commits_url": f"{api}/commits{{/sha}}",
        "compare_url": f"{api}/compare/{{base}}...{{head}}",
        "contents_url": f"{api}/contents/{{+path}}",
        "contributors_url": f"{api}/contributors",
        "deployments_url": f"{api}/deployments",
        "downloads_url": f"{api}/downloads",
        "events_url": f"{api}/events",
        "forks_url": f"{api}/forks",
        "git_commits_url": f"{api}/git/commits{{/sha}}",
        "git_refs_url": f"{api}/git/refs{{/sha}}",
        "git_tags_url": f"{api}/git/tags{{/sha}}",
        "git_url": f"git://github.com/{full_name}.git",
        "hooks_url": f"{api}/hooks",
        "issue_comment_url": f"{api}/issues/comments{{/number}}",
        "issue_events_url": f"{api}/issues/events{{/number}}",
        "issues_url": f"{api}/issues{{/number}}",
        "keys_url": f"{api}/keys{{/key_id}}",
        "labels_url": f"{api}/labels{{/name}}",
        "languages_url": f"{api}/languages",
        "merges_url": f"{api}/merges",
        "milestones_url": f"{api}/milestones{{/number}}",
        "notifications_url": f"{api}/notifications{{?since,all,participating}}",
        "pulls_url": f"{api}/pulls{{/number}}",
        "releases_url": f"{api}/releases{{/id}}",
        "ssh_url": f"git@github.com:{full_name}.git",
        "stargazers_url": f"{api}/stargazers",
        "statuses_url": f"{api}/statuses/{{sha}}",
        "subscribers_url": f"{api}/subscribers",
        "subscription_url": f"{api}/subscription",
        "tags_url": f"{api}/tags",
        "teams_url": f"{api}/teams",
        "trees_url": f"{api}/git/trees{{/sha}}",
        "clone_url": f"{html}.git",
        "mirror_url": None,
        "svn_url": html,
        "homepage": None,
        "language": None,
        "forks_count": 0,
        "forks": 0,
        "stargazers_count": 0,
        "watchers_count": 0,
        "watchers": 0,
        "size": 1024,
        "default_branch": "main",
        "open_issues_count": 0,
        "open_issues": 0,
        "is_template": False,
        "topics": [],
        "has_issues": True,
        "has_projects": False,
        "has_wiki": False,
        "has_pages": False,
        "has_downloads": True,
        "has_discussions": False,
        "archived": False,
        "disabled": False,
        "visibility": "private",
        "license": None,
        "allow_forking": False,
        "web_commit_signoff_required": False,
        "pushed_at": created,
        "created_at": created,
        "updated_at": created,
    }


def public(obj: dict) -> dict:
    return {k: v for k, v in obj.items() if not k.startswith("_")}


def error_response(exc: ApiError) -> Response:
    """GitHub's error shape, with Retry-After on 429 as its rate limiter sends it."""
    headers = {"Retry-After": "1"} if exc.code == 429 else None
    return Response.json({"message": exc.message, "documentation_url": DOCS}, exc.code, headers)


def _bearer(request: Request) -> str:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() not in ("bearer", "token") or not value.strip():
        raise ApiError(401, "Requires authentication")
    return value.strip()


def _credential(state: GitHub, request: Request) -> str:
    """ "installation" or "token" for a REST call; 401 without a usable credential."""
    value = _bearer(request)
    issued = state.tokens.get(hashlib.sha256(value.encode()).hexdigest())
    if issued:
        if issued["expires"] <= time.time():
            raise ApiError(401, "Bad credentials")
        return "installation"
    if value.count(".") == 2:
        raise ApiError(401, "A JSON web token could not be used to access this endpoint.")
    return "token"


def _check_app_jwt(state: GitHub, token: str) -> dict:
    """The JWT's claims, if GitHub would accept it for /app endpoints; else 401."""
    try:
        header = jwt.get_unverified_header(token)
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise ApiError(401, "A JSON web token could not be decoded") from None
    if header.get("alg") != "RS256":
        raise ApiError(401, "A JSON web token must be signed with RS256")
    issuer = claims.get("iss")
    if issuer in (None, ""):
        raise ApiError(401, "'Issuer' claim ('iss') must be an Integer")
    iat, exp, now = claims.get("iat"), claims.get("exp"), time.time()
    if not isinstance(iat, int) or not isinstance(exp, int):
        raise ApiError(401, "'Issued at' and 'Expiration time' claims must be integers")
    if exp <= now or iat > now + CLOCK_SKEW:
        raise ApiError(
            401, "'Expiration time' claim ('exp') is too far in the past or iat in the future"
        )
    if exp - now > MAX_JWT_SECONDS + CLOCK_SKEW or exp - iat > MAX_JWT_SECONDS + CLOCK_SKEW:
        raise ApiError(401, "'Expiration time' claim ('exp') is too far in the future")
    app = state.apps.get(str(issuer))
    if app and app.get("public_key"):
        try:
            jwt.decode(
                token,
                app["public_key"],
                algorithms=["RS256"],
                options={"verify_exp": False, "verify_iat": False},
            )
        except jwt.PyJWTError:
            raise ApiError(401, "A JSON web token could not be decoded") from None
    return claims


def _sha_for(ref: str) -> str:
    if re.fullmatch(r"[0-9a-f]{40}", ref):
        return ref
    return hashlib.sha1(f"ref:{ref}".encode()).hexdigest()  # a branch's head, as far as we know


def _invalid(message: str) -> ApiError:
    return ApiError(422, f"Invalid request.\n\n{message}")


def _check_types(body: dict, fields: dict[str, type | tuple]) -> None:
    """GitHub's 422 for a field of the wrong JSON type (bool is not an integer here)."""
    names = {str: "string", bool: "boolean", list: "array", dict: "object", int: "integer"}
    for name, kinds in fields.items():
        if name not in body:
            continue
        value = body[name]
        kinds = kinds if isinstance(kinds, tuple) else (kinds,)
        ok = value is None and type(None) in kinds
        ok = ok or any(
            isinstance(value, k) and not (k is int and isinstance(value, bool))
            for k in kinds
            if k is not type(None)
        )
        if not ok:
            wanted = " or ".join(names.get(k, "null") for k in kinds)
            raise _invalid(f"For '{name}', {json.dumps(value)} is not {wanted}.")


def _deployment_body(state: GitHub, base: str, repository: str, body: dict, auth: str) -> dict:
    ref = body.get("ref")
    if not isinstance(ref, str) or not ref:
        raise _invalid('"ref" wasn\'t supplied.')
    _check_types(
        body,
        {
            "task": str,
            "auto_merge": bool,
            "required_contexts": list,
            "payload": (dict, str),
            "environment": str,
            "description": (str, type(None)),
            "transient_environment": bool,
            "production_environment": bool,
        },
    )
    environment = body.get("environment", "production")
    if not environment:
        raise _invalid('"environment" must be a string.')
    payload = body.get("payload", {})
    if isinstance(payload, str):
        try:
            payload = json.loads(payload) if payload else {}
        except ValueError:
            raise _invalid('"payload" must be a JSON object or a JSON string.') from None
    if not all(isinstance(c, str) for c in body.get("required_contexts") or []):
        raise _invalid("For 'items', required_contexts must be strings.")
    number = state.new_id()
    url = f"{base}/repos/{repository}/deployments/{number}"
    now = _now_iso()
    return {
        "url": url,
        "id": number,
        "node_id": _node_id("DE", number),
        "sha": _sha_for(ref),
        "ref": ref,
        "task": body.get("task", "deploy"),
        "payload": payload,
        "original_environment": environment,
        "environment": environment,
        "description": body.get("description"),
        "creator": user("gantry[bot]" if auth == "installation" else "octocat", base),
        "created_at": now,
        "updated_at": now,
        "statuses_url": f"{url}/statuses",
        "repository_url": f"{base}/repos/{repository}",
        "transient_environment": bool(body.get("transient_environment", False)),
        "production_environment": bool(
            body.get("production_environment", environment == "production")
        ),
        "_repository": repository,
        "_auto_merge": body.get("auto_merge", True),
        "_required_contexts": body.get("required_contexts"),
    }


def routes(router: Router, world) -> None:
    def base(request: Request) -> str:
        return request.base_url + PREFIX

    def repository(request: Request) -> str:
        return f"{request.params['owner']}/{request.params['repo']}"

    def deployment(request: Request) -> dict:
        found = world.github.deployments.get(
            int(request.params["id"]) if request.params["id"].isdigit() else -1
        )
        if not found or found["_repository"] != repository(request):
            raise ApiError(404, "Not Found")
        return found

    def api(method: str, pattern: str, locked: bool = True):
        """A REST route: its answer (or GitHub's error) is recorded next to the recorded call."""

        def register(handler):
            def answered(request: Request) -> Response:
                try:
                    response = handler(request)
                except ApiError as exc:
                    response = error_response(exc)
                call = getattr(request, "github_call", None)
                if call is not None:
                    with world.lock:
                        call["status"] = response.status
                        call["response"] = json.loads(response.body) if response.body else None
                return response

            router.add(method, PREFIX + pattern, answered, locked)
            return handler

        return register

    @api("POST", "/app/installations/{installation}/access_tokens")
    def access_token(request: Request) -> Response:
        state = world.github
        claims = _check_app_jwt(state, _bearer(request))
        state.record(request, "app-jwt")
        body = request.json()
        _check_types(body, {"repositories": list, "repository_ids": list, "permissions": dict})
        lifetime = float(state.apps.get(str(claims["iss"]), {}).get("token_lifetime", 3600))
        token = "ghs_" + secrets.token_hex(18)
        expires = time.time() + lifetime
        state.tokens[hashlib.sha256(token.encode()).hexdigest()] = {
            "installation": request.params["installation"],
            "app": str(claims["iss"]),
            "expires": expires,
        }
        answer = {
            "token": token,
            "expires_at": _now_iso(expires),
            "permissions": {"deployments": "write", "actions": "read", "metadata": "read"},
            "repository_selection": "all",
        }
        return Response.json(answer, 201)

    @api("POST", "/repos/{owner}/{repo}/deployments")
    def create_deployment(request: Request) -> Response:
        state = world.github
        auth = _credential(state, request)
        state.record(request, auth)
        created = _deployment_body(state, base(request), repository(request), request.json(), auth)
        state.deployments[created["id"]] = created
        state.statuses[created["id"]] = []
        return Response.json(public(created), 201)

    @api("GET", "/repos/{owner}/{repo}/deployments")
    def list_deployments(request: Request) -> Response:
        state = world.github
        state.record(request, _credential(state, request))
        found = [
            public(d)
            for d in reversed(state.deployments_of(repository(request)))
            if all(
                request.query.get(key) in (None, d[key])
                for key in ("sha", "ref", "task", "environment")
            )
        ]
        per_page, page = _paging(request)
        return Response.json(found[(page - 1) * per_page : page * per_page])

    @api("GET", "/repos/{owner}/{repo}/deployments/{id}")
    def get_deployment(request: Request) -> Response:
        state = world.github
        state.record(request, _credential(state, request))
        return Response.json(public(deployment(request)))

    @api("POST", "/repos/{owner}/{repo}/deployments/{id}/statuses")
    def create_status(request: Request) -> Response:
        state = world.github
        auth = _credential(state, request)
        state.record(request, auth)
        target = deployment(request)
        body = request.json()
        _check_status_body(body)
        status = _status(state, base(request), target, body, auth)
        state.statuses[target["id"]].append(status)
        if status["state"] == "success" and body.get("auto_inactive", True):
            _retire_older(state, base(request), target, auth)
        return Response.json(status, 201)

    @api("GET", "/repos/{owner}/{repo}/deployments/{id}/statuses")
    def list_statuses(request: Request) -> Response:
        state = world.github
        state.record(request, _credential(state, request))
        found = list(reversed(state.statuses[deployment(request)["id"]]))
        per_page, page = _paging(request)
        return Response.json(found[(page - 1) * per_page : page * per_page])

    @api("POST", "/repos/{owner}/{repo}/actions/runs/{run}/deployment_protection_rule")
    def review(request: Request) -> Response:
        state = world.github
        auth = _credential(state, request)
        state.record(request, auth)
        if auth != "installation":
            raise ApiError(403, "Resource not accessible by personal access token")
        body = request.json()
        environment = body.get("environment_name")
        if not isinstance(environment, str) or not environment:
            raise _invalid('"environment_name" wasn\'t supplied.')
        _check_types(body, {"comment": str})
        report = "state" not in body  # review-custom-gates-comment-required: a status report
        if report and not body.get("comment"):
            raise _invalid('"state" or "comment" wasn\'t supplied.')
        if not report and body.get("state") not in REVIEW_STATES:
            raise _invalid("state must be approved or rejected.")
        key = _waiting_key(repository(request), request.params["run"], environment)
        waiting = state.waiting.get(key)
        if waiting is None:
            raise ApiError(404, "Not Found")
        if waiting["reviewed"]:
            raise ApiError(422, "This deployment protection rule was already reviewed.")
        if report:  # the job keeps waiting; the comment shows on the run
            waiting.setdefault("comments", []).append(body["comment"])
            return Response(204)
        waiting["reviewed"] = body["state"]
        state.reviews.append(
            {
                "repository": repository(request),
                "run_id": int(request.params["run"]),
                "environment_name": environment,
                "state": body["state"],
                "comment": body.get("comment", ""),
            }
        )
        state.statuses[waiting["deployment_id"]].append(
            _status(
                state,
                base(request),
                state.deployments[waiting["deployment_id"]],
                {"state": "queued" if body["state"] == "approved" else "failure"},
                "installation",
            )
        )
        return Response(204)

    @api("GET", "/repos/{owner}/{repo}/actions/runs")
    def list_runs(request: Request) -> Response:
        state = world.github
        state.record(request, _credential(state, request))
        found = _filter_runs(state, repository(request), request.query)
        per_page, page = _paging(request)
        return Response.json(
            {
                "total_count": len(found),
                "workflow_runs": found[(page - 1) * per_page : page * per_page],
            }
        )

    @api("GET", "/app/hook/deliveries")
    def list_deliveries(request: Request) -> Response:
        state = world.github
        _check_app_jwt(state, _bearer(request))
        state.record(request, "app-jwt")
        per_page, _ = _paging(request)
        found = list(reversed(state.deliveries))
        if wanted := request.query.get("status"):
            if wanted not in ("success", "failure"):
                raise _invalid("status must be success or failure.")
            found = [d for d in found if _delivery_ok(d) == (wanted == "success")]
        if cursor := request.query.get("cursor"):
            match = re.fullmatch(r"v1_(\d+)", cursor)
            if not match:
                raise ApiError(400, "Invalid cursor")
            found = [d for d in found if d["id"] < int(match.group(1))]
        shown = found[:per_page]
        headers = {}
        if len(found) > per_page:
            query = {k: v for k, v in request.query.items() if k != "cursor"}
            query |= {"per_page": str(per_page), "cursor": f"v1_{shown[-1]['id']}"}
            headers["Link"] = (
                f'<{base(request)}/app/hook/deliveries?{urlencode(query)}>; rel="next"'
            )
        return Response.json([_delivery_item(d) for d in shown], headers=headers)

    @api("GET", "/app/hook/deliveries/{delivery}")
    def get_delivery(request: Request) -> Response:
        state = world.github
        _check_app_jwt(state, _bearer(request))
        state.record(request, "app-jwt")
        found = _delivery_of(state, request.params["delivery"])
        return Response.json(public(found))

    @api("POST", "/app/hook/deliveries/{delivery}/attempts", locked=False)
    def redeliver(request: Request) -> Response:
        with world.lock:
            state = world.github
            _check_app_jwt(state, _bearer(request))
            state.record(request, "app-jwt")
            original = _delivery_of(state, request.params["delivery"])
            hook = state.hook
            if hook is None:
                raise _invalid("This App has no webhook.")
            attempt = _attempt(state, hook, original["event"], original["action"], original)
        _send(world, attempt)  # the world lock is not held: Gantry may call us meanwhile
        return Response.json({}, 202)

    # --- control ------------------------------------------------------------------------------

    @router.route("GET", "/_sandbox/github")
    def summary(request: Request) -> Response:
        return Response.json(world.github.summary())

    @router.route("POST", "/_sandbox/github/apps")
    def register_app(request: Request) -> Response:
        body = request.json()
        app_id = str(body.get("app_id") or "")
        if not app_id:
            raise ApiError(400, "Give 'app_id' (and 'public_key' to check signatures)")
        world.github.apps[app_id] = {
            "public_key": body.get("public_key", ""),
            "token_lifetime": float(body.get("token_lifetime", 3600)),
        }
        return Response.json({"app_id": app_id}, 201)

    @router.route("POST", "/_sandbox/github/protection_rules")
    def protection_rule(request: Request) -> Response:
        body = request.json()
        missing = [k for k in ("repository", "sha", "environment") if not body.get(k)]
        if missing:
            raise ApiError(400, f"Give {', '.join(missing)}")
        return Response.json(wait_for_rule(world.github, base(request), **body), 201)

    @router.route("POST", "/_sandbox/github/hook")
    def register_hook(request: Request) -> Response:
        body = request.json()
        url, content_type = body.get("url"), body.get("content_type", "json")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ApiError(400, "Give 'url', an http(s) URL")
        if content_type not in ("json", "form"):
            raise ApiError(400, "'content_type' is json or form")
        hook = {
            "id": _number("hook", url, 9),
            "url": url,
            "secret": str(body.get("secret") or ""),
            "content_type": content_type,
        }
        world.github.hook = hook
        return Response.json({k: v for k, v in hook.items() if k != "secret"}, 201)

    @router.route("POST", "/_sandbox/github/runs", locked=False)
    def complete_run(request: Request) -> Response:
        body = request.json()
        missing = [k for k in ("repository", "head_sha", "head_branch") if not body.get(k)]
        if missing:
            raise ApiError(400, f"Give {', '.join(missing)}")
        deliver = body.pop("deliver", True)
        with world.lock:
            state = world.github
            run, payload = workflow_run_completed(state, base(request), **body)
            attempt = None
            if state.hook is None or not deliver:
                failed = _attempt(state, state.hook, "workflow_run", "completed", None, payload)
                _failed(failed, 0, "failed to connect")
            elif status := world.faults.http_error("POST", DELIVER_FAULT_PATH):
                failed = _attempt(state, state.hook, "workflow_run", "completed", None, payload)
                _failed(failed, status, f"Invalid HTTP Response: {status}")
            else:
                attempt = _attempt(state, state.hook, "workflow_run", "completed", None, payload)
        if attempt is not None:
            _send(world, attempt)
        with world.lock:
            delivery = public(attempt or failed)
        return Response.json({"run": run, "payload": payload, "delivery": delivery}, 201)


def _paging(request: Request) -> tuple[int, int]:
    try:
        per_page = int(request.query.get("per_page") or 30)
        page = int(request.query.get("page") or 1)
    except ValueError:
        raise _invalid("per_page and page must be integers.") from None
    return min(max(per_page, 1), 100), max(page, 1)


def _check_status_body(body: dict) -> None:
    if body.get("state") not in STATUS_STATES:
        raise _invalid(f"state must be one of {', '.join(sorted(STATUS_STATES))}.")
    _check_types(
        body,
        {
            "target_url": str,
            "log_url": str,
            "description": str,
            "environment": str,
            "environment_url": str,
            "auto_inactive": bool,
        },
    )
    if len(body.get("description") or "") > 140:
        raise _invalid("description is too long (maximum is 140 characters)")


def _status(state: GitHub, base: str, target: dict, body: dict, auth: str) -> dict:
    number = state.new_id()
    now = _now_iso()
    return {
        "url": f"{target['url']}/statuses/{number}",
        "id": number,
        "node_id": _node_id("DES", number),
        "state": body["state"],
        "creator": user(body.get("_creator") or _actor(auth), base),
        "description": body.get("description", ""),
        "environment": body.get("environment", target["environment"]),
        "target_url": body.get("log_url") or body.get("target_url", ""),
        "log_url": body.get("log_url") or body.get("target_url", ""),
        "environment_url": body.get("environment_url", ""),
        "created_at": now,
        "updated_at": now,
        "deployment_url": target["url"],
        "repository_url": f"{base}/repos/{target['_repository']}",
    }


def _actor(auth: str) -> str:
    return "gantry[bot]" if auth == "installation" else "octocat"


def _retire_older(state: GitHub, base: str, target: dict, auth: str) -> None:
    """auto_inactive: older non-transient, non-production deployments of the same environment."""
    for other in state.deployments_of(target["_repository"]):
        if (
            other["id"] < target["id"]
            and other["environment"] == target["environment"]
            and not other["production_environment"]
            and not other["transient_environment"]
            and state.statuses[other["id"]]
            and state.statuses[other["id"]][-1]["state"] != "inactive"
        ):
            state.statuses[other["id"]].append(
                _status(state, base, other, {"state": "inactive"}, auth)
            )


def _waiting_key(repository: str, run_id, environment: str) -> str:
    return f"{repository}#{run_id}#{environment.lower()}"


def wait_for_rule(
    state: GitHub,
    base: str,
    repository: str,
    sha: str,
    environment: str,
    ref: str = "main",
    event: str = "push",
    sender: str = "dev-alice",
    installation_id: int = 1,
    with_deployment: bool = True,
) -> dict:
    """A workflow job for `environment` now waits on a custom protection rule: record it, and
    return the `deployment_protection_rule` payload GitHub would deliver. Top-level `sha` and
    `ref` are always there; `with_deployment=False` sends `"deployment": null`, as GitHub does
    for a job that creates no deployment."""
    run_id = _run_id(state)
    created = _deployment_body(
        state,
        base,
        repository,
        {"ref": sha, "environment": environment, "task": "deploy"},
        "installation",
    )
    created["ref"] = ref
    created["creator"] = user("github-actions[bot]", base)
    state.deployments[created["id"]] = created
    state.statuses[created["id"]] = [
        _status(
            state,
            base,
            created,
            {"state": "waiting", "_creator": "github-actions[bot]"},
            "installation",
        )
    ]
    state.waiting[_waiting_key(repository, run_id, environment)] = {
        "repository": repository,
        "run_id": run_id,
        "environment": environment,
        "deployment_id": created["id"],
        "reviewed": None,
    }
    return {
        "action": "requested",
        "environment": environment,
        "event": event,
        "sha": created["sha"],
        "ref": ref,
        "deployment_callback_url": (
            f"{base}/repos/{repository}/actions/runs/{run_id}/deployment_protection_rule"
        ),
        "deployment": public(created) if with_deployment else None,
        "pull_requests": [],
        "repository": repository_shape(repository, base),
        "installation": _installation(installation_id),
        "sender": user(sender, base),
    }


def _installation(installation_id: int) -> dict:
    return {"id": int(installation_id), "node_id": _node_id("MDIz", int(installation_id))}


# --- workflow runs ----------------------------------------------------------------------------


def _run_id(state: GitHub) -> int:
    return 9_000_000_000 + state.new_id()


def workflow_run_completed(
    state: GitHub,
    base: str,
    repository: str,
    head_sha: str,
    head_branch: str,
    name: str = "CI",
    event: str = "push",
    conclusion: str = "success",
    actor: str = "dev-alice",
    run_number: int | None = None,
    run_attempt: int = 1,
    head_repository: str | None = None,
    installation_id: int = 1,
    created_at: str | None = None,
    triggering_actor: str | None = None,
    display_title: str | None = None,
    path: str = ".github/workflows/ci.yml",
) -> tuple[dict, dict]:
    """A completed workflow run, recorded, and the `workflow_run` webhook payload GitHub sends
    for it. The run object is the one /actions/runs lists and payload["workflow_run"]."""
    if conclusion not in RUN_CONCLUSIONS:
        raise ApiError(400, f"'conclusion' is one of {sorted(RUN_CONCLUSIONS)}")
    if not re.fullmatch(r"[0-9a-f]{40}", str(head_sha)):
        raise ApiError(400, "'head_sha' is a 40-character hex SHA")
    number = _run_id(state)
    if run_number is None:
        run_number = 1 + sum(
            1 for r in state.runs.values() if r["repository"]["full_name"] == repository
        )
    created = created_at or _now_iso()
    api = f"{base}/repos/{repository}"
    workflow_id = _number("workflow", f"{repository}/{path}", 9)
    suite = _number("suite", str(number), 11)
    repo = repository_shape(repository, base)
    head_repo = repository_shape(head_repository or repository, base)
    run = {
        "id": number,
        "name": name,
        "node_id": _node_id("WFR", number),
        "head_branch": head_branch,
        "head_sha": head_sha,
        "path": path,
        "display_title": display_title or f"{name} on {head_branch}",
        "run_number": int(run_number),
        "event": event,
        "status": "completed",
        "conclusion": conclusion,
        "workflow_id": workflow_id,
        "check_suite_id": suite,
        "check_suite_node_id": _node_id("CS", suite),
        "url": f"{api}/actions/runs/{number}",
        "html_url": f"{WEB}/{repository}/actions/runs/{number}",
        "pull_requests": [],
        "created_at": created,
        "updated_at": created,
        "actor": user(actor, base),
        "run_attempt": int(run_attempt),
        "referenced_workflows": [],
        "run_started_at": created,
        "triggering_actor": user(triggering_actor or actor, base),
        "jobs_url": f"{api}/actions/runs/{number}/jobs",
        "logs_url": f"{api}/actions/runs/{number}/logs",
        "check_suite_url": f"{api}/check-suites/{suite}",
        "artifacts_url": f"{api}/actions/runs/{number}/artifacts",
        "cancel_url": f"{api}/actions/runs/{number}/cancel",
        "rerun_url": f"{api}/actions/runs/{number}/rerun",
        "previous_attempt_url": (
            f"{api}/actions/runs/{number}/attempts/{int(run_attempt) - 1}"
            if int(run_attempt) > 1
            else None
        ),
        "workflow_url": f"{api}/actions/workflows/{workflow_id}",
        "head_commit": {
            "id": head_sha,
            "tree_id": hashlib.sha1(f"tree:{head_sha}".encode()).hexdigest(),
            "message": display_title or f"Build {head_branch}",
            "timestamp": created,
            "author": {"name": actor, "email": f"{actor}@users.noreply.github.com"},
            "committer": {"name": "GitHub", "email": "noreply@github.com"},
        },
        "repository": repo,
        "head_repository": head_repo,
        "head_repository_id": head_repo["id"],
    }
    state.runs[number] = run
    workflow = {
        "id": workflow_id,
        "node_id": _node_id("W", workflow_id),
        "name": name,
        "path": path,
        "state": "active",
        "created_at": "2024-01-15T09:00:00Z",
        "updated_at": "2024-01-15T09:00:00Z",
        "url": f"{api}/actions/workflows/{workflow_id}",
        "html_url": f"{WEB}/{repository}/blob/main/{path}",
        "badge_url": f"{WEB}/{repository}/workflows/{name}/badge.svg",
    }
    payload = {
        "action": "completed",
        "workflow_run": run,
        "workflow": workflow,
        "repository": repo,
        "sender": user(actor, base),
        "installation": _installation(installation_id),
    }
    return run, payload


def _filter_runs(state: GitHub, repository: str, query: dict) -> list[dict]:
    runs = [r for r in state.runs.values() if r["repository"]["full_name"] == repository]
    checks = {
        "branch": lambda r, v: r["head_branch"] == v,
        "event": lambda r, v: r["event"] == v,
        "actor": lambda r, v: r["actor"]["login"] == v,
        "head_sha": lambda r, v: r["head_sha"] == v,
        "status": lambda r, v: v in (r["status"], r["conclusion"]),
        "created": _created_filter,
    }
    if (wanted := query.get("status")) and wanted not in RUN_STATUSES | RUN_CONCLUSIONS:
        raise _invalid(
            f"status must be one of {', '.join(sorted(RUN_STATUSES | RUN_CONCLUSIONS))}."
        )
    for key, check in checks.items():
        if value := query.get(key):
            runs = [r for r in runs if check(r, value)]
    return sorted(runs, key=lambda r: (r["created_at"], r["id"]), reverse=True)


def _moment(text: str, end: bool = False) -> datetime:
    text = text.strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            day = datetime.fromisoformat(text).replace(tzinfo=UTC)
            return day.replace(hour=23, minute=59, second=59) if end else day
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise _invalid(f"created: {text!r} is not a date or time (YYYY-MM-DDTHH:MM:SSZ).") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _created_filter(run: dict, value: str) -> bool:
    """GitHub's search date syntax: `date`, `>date`, `>=date`, `<date`, `<=date`, `a..b`."""
    created = _moment(run["created_at"])
    if ".." in value:
        low, _, high = value.partition("..")
        return (low in ("", "*") or created >= _moment(low)) and (
            high in ("", "*") or created <= _moment(high, end=True)
        )
    for op, test in (
        (">=", lambda x: created >= _moment(x)),
        ("<=", lambda x: created <= _moment(x, end=True)),
        (">", lambda x: created > _moment(x, end=True)),
        ("<", lambda x: created < _moment(x)),
    ):
        if value.startswith(op):
            return test(value[len(op) :])
    return _moment(value) <= created <= _moment(value, end=True)


# --- webhook deliveries -----------------------------------------------------------------------


def _delivery_ok(delivery: dict) -> bool:
    return 200 <= delivery["status_code"] < 300


def _delivery_item(delivery: dict) -> dict:
    """hook-delivery-item: the list's shape, without request and response."""
    return {k: v for k, v in public(delivery).items() if k not in ("request", "response", "url")}


def _delivery_of(state: GitHub, delivery_id: str) -> dict:
    found = state.delivery(int(delivery_id)) if delivery_id.isdigit() else None
    if found is None:
        raise ApiError(404, "Not Found")
    return found


def signature(secret: str, body: bytes) -> str:
    """X-Hub-Signature-256: HMAC-SHA256 of the raw body with the hook's secret."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _attempt(
    state: GitHub,
    hook: dict | None,
    event: str,
    action: str | None,
    original: dict | None,
    payload: dict | None = None,
) -> dict:
    """A delivery about to be made (or already failed), recorded; `original` for a redelivery."""
    payload = original["request"]["payload"] if original else payload
    guid = original["guid"] if original else str(uuid.uuid4())
    raw = json.dumps(payload, separators=(",", ":"))
    content_type = (hook or {}).get("content_type", "json")
    body = raw if content_type == "json" else urlencode({"payload": raw})
    headers = {
        "Accept": "*/*",
        "Content-Type": (
            "application/json" if content_type == "json" else "application/x-www-form-urlencoded"
        ),
        "User-Agent": HOOKSHOT,
        "X-GitHub-Delivery": guid,
        "X-GitHub-Event": event,
        "X-GitHub-Hook-ID": str((hook or {}).get("id", 0)),
        "X-GitHub-Hook-Installation-Target-ID": "42",
        "X-GitHub-Hook-Installation-Target-Type": "integration",
    }
    if hook and hook.get("secret"):
        headers["X-Hub-Signature"] = (
            "sha1=" + hmac.new(hook["secret"].encode(), body.encode(), hashlib.sha1).hexdigest()
        )
        headers["X-Hub-Signature-256"] = signature(hook["secret"], body.encode())
    installation = (payload or {}).get("installation") or {}
    repository = (payload or {}).get("repository") or {}
    delivery = {
        "id": 12_000_000_000 + state.new_id(),  # increasing, as GitHub's are
        "guid": guid,
        "delivered_at": _now_iso(),
        "redelivery": original is not None,
        "duration": 0.0,
        "status": "pending",
        "status_code": 0,
        "event": event,
        "action": action,
        "installation_id": installation.get("id"),
        "repository_id": repository.get("id"),
        "throttled_at": None,
        "url": (hook or {}).get("url", ""),
        "request": {"headers": headers, "payload": payload},
        "response": {"headers": None, "payload": None},
        "_body": body,
    }
    state.deliveries.append(delivery)
    del state.deliveries[:-DELIVERIES_KEPT]
    return delivery


def _failed(delivery: dict, status_code: int, status: str) -> None:
    delivery["status_code"] = status_code
    delivery["status"] = status


def _send(world, delivery: dict) -> None:
    """POST the delivery to its hook over HTTP, without the world lock, then record the answer."""
    with world.lock:
        url, body = delivery["url"], delivery["_body"]
        headers = dict(delivery["request"]["headers"])
    started = time.monotonic()
    try:
        answer = httpx.post(url, content=body.encode(), headers=headers, timeout=DELIVERY_TIMEOUT)
    except httpx.HTTPError:
        answer = None
    duration = round(time.monotonic() - started, 3)
    with world.lock:
        delivery["duration"] = duration
        if answer is None:
            _failed(delivery, 0, "failed to connect")
            return
        delivery["status_code"] = answer.status_code
        delivery["status"] = (
            "OK"
            if 200 <= answer.status_code < 300
            else f"Invalid HTTP Response: {answer.status_code}"
        )
        delivery["response"] = {"headers": dict(answer.headers), "payload": answer.text}
