"""A fake GitHub REST API under /github: deployments, deployment statuses, GitHub App installation
tokens and answers to custom deployment protection rules, kept in memory.

Point Gantry at it with GANTRY_GITHUB_API_URL=<sandbox>/github. Answers use GitHub's field names
and error shape ({"message", "documentation_url"}). Every call to /github is recorded (method,
path, which kind of credential, body; never the credential itself). Faults inject as for the
other APIs: {"kind": "http_error", "path": "/github/*", "status": 503, "count": 3}.

Credentials: REST calls need `Authorization: Bearer|token X`. Installation tokens this fake issued
count as "installation", anything else as "token". An app JWT (RS256, `iss` = app id, at most 10
minutes long) buys an installation token; its signature is checked when the app's public key was
registered. Like GitHub, only an installation token may answer a protection rule.

Control, under /_sandbox/github:
    GET  /_sandbox/github                   deployments, statuses, reviews, waiting rules, calls
    POST /_sandbox/github/apps              {"app_id", "public_key": PEM, "token_lifetime": s}
    POST /_sandbox/github/protection_rules  {"repository", "sha", "environment", "ref", "event",
         "sender", "installation_id"}: a workflow job now waits on a custom protection rule;
         answers the `deployment_protection_rule` webhook payload GitHub would send.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from datetime import UTC, datetime

import jwt

from .http import ApiError, Request, Response, Router

PREFIX = "/github"
DOCS = "https://docs.github.com/rest"
STATUS_STATES = {"error", "failure", "inactive", "in_progress", "queued", "pending", "success"}
REVIEW_STATES = {"approved", "rejected"}
MAX_JWT_SECONDS = 600
CLOCK_SKEW = 60
CALLS_KEPT = 5000


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
            "calls": self.calls,
        }

    def record(self, request: Request, auth: str) -> None:
        body = request.json() if request.method in ("POST", "PATCH", "PUT") else None
        self.calls.append(
            {
                "method": request.method,
                "path": request.path.removeprefix(PREFIX),
                "query": request.query,
                "auth": auth,
                "body": body,
            }
        )
        del self.calls[:-CALLS_KEPT]


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


def _deployment_body(state: GitHub, base: str, repository: str, body: dict, auth: str) -> dict:
    ref = body.get("ref")
    if not isinstance(ref, str) or not ref:
        raise ApiError(422, 'Invalid request.\n\n"ref" wasn\'t supplied.')
    environment = body.get("environment", "production")
    if not isinstance(environment, str) or not environment:
        raise ApiError(422, 'Invalid request.\n\n"environment" must be a string.')
    payload = body.get("payload", {})
    if not isinstance(payload, dict | str):
        raise ApiError(422, 'Invalid request.\n\n"payload" must be an object or a string.')
    if "required_contexts" in body and not isinstance(body["required_contexts"], list):
        raise ApiError(422, 'Invalid request.\n\n"required_contexts" must be an array.')
    number = state.new_id()
    url = f"{base}/repos/{repository}/deployments/{number}"
    now = _now_iso()
    return {
        "url": url,
        "id": number,
        "node_id": f"DE_fake{number}",
        "sha": _sha_for(ref),
        "ref": ref,
        "task": body.get("task", "deploy"),
        "payload": payload,
        "original_environment": environment,
        "environment": environment,
        "description": body.get("description"),
        "creator": {"login": "gantry[bot]" if auth == "installation" else "octocat"},
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

    @router.route("POST", PREFIX + "/app/installations/{installation}/access_tokens")
    def access_token(request: Request) -> Response:
        state = world.github
        claims = _check_app_jwt(state, _bearer(request))
        state.record(request, "app-jwt")
        lifetime = float(state.apps.get(str(claims["iss"]), {}).get("token_lifetime", 3600))
        token = "ghs_" + secrets.token_hex(18)
        expires = time.time() + lifetime
        state.tokens[hashlib.sha256(token.encode()).hexdigest()] = {
            "installation": request.params["installation"],
            "app": str(claims["iss"]),
            "expires": expires,
        }
        body = {
            "token": token,
            "expires_at": _now_iso(expires),
            "permissions": {"deployments": "write", "actions": "read", "metadata": "read"},
            "repository_selection": "all",
        }
        return Response.json(body, 201)

    @router.route("POST", PREFIX + "/repos/{owner}/{repo}/deployments")
    def create_deployment(request: Request) -> Response:
        state = world.github
        auth = _credential(state, request)
        state.record(request, auth)
        created = _deployment_body(state, base(request), repository(request), request.json(), auth)
        state.deployments[created["id"]] = created
        state.statuses[created["id"]] = []
        return Response.json(public(created), 201)

    @router.route("GET", PREFIX + "/repos/{owner}/{repo}/deployments")
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
        per_page = min(int(request.query.get("per_page", "30") or 30), 100)
        page = max(int(request.query.get("page", "1") or 1), 1)
        return Response.json(found[(page - 1) * per_page : page * per_page])

    @router.route("GET", PREFIX + "/repos/{owner}/{repo}/deployments/{id}")
    def get_deployment(request: Request) -> Response:
        state = world.github
        state.record(request, _credential(state, request))
        return Response.json(public(deployment(request)))

    @router.route("POST", PREFIX + "/repos/{owner}/{repo}/deployments/{id}/statuses")
    def create_status(request: Request) -> Response:
        state = world.github
        auth = _credential(state, request)
        state.record(request, auth)
        target = deployment(request)
        body = request.json()
        if body.get("state") not in STATUS_STATES:
            raise ApiError(
                422, f"Invalid request.\n\nstate must be one of {', '.join(sorted(STATUS_STATES))}."
            )
        status = _status(state, base(request), target, body, auth)
        state.statuses[target["id"]].append(status)
        if status["state"] == "success" and body.get("auto_inactive", True):
            _retire_older(state, base(request), target, auth)
        return Response.json(status, 201)

    @router.route("GET", PREFIX + "/repos/{owner}/{repo}/deployments/{id}/statuses")
    def list_statuses(request: Request) -> Response:
        state = world.github
        state.record(request, _credential(state, request))
        return Response.json(list(reversed(state.statuses[deployment(request)["id"]])))

    @router.route(
        "POST", PREFIX + "/repos/{owner}/{repo}/actions/runs/{run}/deployment_protection_rule"
    )
    def review(request: Request) -> Response:
        state = world.github
        auth = _credential(state, request)
        state.record(request, auth)
        if auth != "installation":
            raise ApiError(403, "Resource not accessible by personal access token")
        body = request.json()
        environment = body.get("environment_name")
        if not isinstance(environment, str) or not environment:
            raise ApiError(422, 'Invalid request.\n\n"environment_name" wasn\'t supplied.')
        if body.get("state") not in REVIEW_STATES:
            raise ApiError(422, "Invalid request.\n\nstate must be approved or rejected.")
        key = _waiting_key(repository(request), request.params["run"], environment)
        waiting = state.waiting.get(key)
        if waiting is None:
            raise ApiError(404, "Not Found")
        if waiting["reviewed"]:
            raise ApiError(422, "This deployment protection rule was already reviewed.")
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


def _status(state: GitHub, base: str, target: dict, body: dict, auth: str) -> dict:
    number = state.new_id()
    now = _now_iso()
    return {
        "url": f"{target['url']}/statuses/{number}",
        "id": number,
        "node_id": f"DES_fake{number}",
        "state": body["state"],
        "creator": {"login": "gantry[bot]" if auth == "installation" else "octocat"},
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
) -> dict:
    """A workflow job for `environment` now waits on a custom protection rule: record it, and
    return the `deployment_protection_rule` payload GitHub would deliver."""
    run_id = state.new_id()
    created = _deployment_body(
        state,
        base,
        repository,
        {"ref": sha, "environment": environment, "task": "deploy"},
        "installation",
    )
    created["ref"] = ref
    created["creator"] = {"login": "github-actions[bot]"}
    state.deployments[created["id"]] = created
    state.statuses[created["id"]] = [
        _status(state, base, created, {"state": "waiting"}, "installation")
    ]
    state.waiting[_waiting_key(repository, run_id, environment)] = {
        "repository": repository,
        "run_id": run_id,
        "environment": environment,
        "deployment_id": created["id"],
        "reviewed": None,
    }
    owner, _, name = repository.partition("/")
    return {
        "action": "requested",
        "environment": environment,
        "event": event,
        "deployment_callback_url": (
            f"{base}/repos/{repository}/actions/runs/{run_id}/deployment_protection_rule"
        ),
        "deployment": public(created),
        "pull_requests": [],
        "repository": {"full_name": repository, "name": name, "owner": {"login": owner}},
        "installation": {"id": installation_id},
        "sender": {"login": sender},
    }
