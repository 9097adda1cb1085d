"""The few GitHub REST calls Gantry makes: deployments, their statuses, answers (and status
reports) to custom deployment protection rules, workflow runs, and the App's webhook deliveries.

It signs in with GANTRY_GITHUB_TOKEN or as a GitHub App installation (an RS256 JWT exchanged for
an installation token, kept per process until shortly before it expires). An App may be installed
more than once: the installation comes from what GitHub sent (`installation.id` in a webhook
payload), else GANTRY_GITHUB_APP_INSTALLATION_ID. The App's own endpoints (/app/...) take the
App's JWT, not an installation token. The base URL comes from GANTRY_GITHUB_API_URL, so tests and
the demo talk to the sandbox's fake GitHub. Tokens travel only in the Authorization header: never
in URLs, exceptions, logs or the database.

Rate limits are read as GitHub documents them ("Handle rate limit errors appropriately"): on a
403 or 429, `retry-after` seconds if sent; else, when `x-ratelimit-remaining` is 0, until
`x-ratelimit-reset`; else, for a secondary rate limit, at least a minute. `GitHubError.retry_after`
carries that wait; a 403 that is no rate limit (a permission) is permanent.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from pathlib import Path

import httpx
import jwt
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

API_VERSION = "2022-11-28"
TIMEOUT = httpx.Timeout(10.0, connect=5.0)
JWT_LIFETIME = 540  # seconds; GitHub refuses app JWTs that live longer than 10 minutes
JWT_BACKDATE = 60  # seconds; allows for clock drift between us and GitHub
TOKEN_MARGIN = 300  # seconds; a cached installation token is replaced this long before it expires
SECONDARY_WAIT = 60.0  # seconds; GitHub: "wait for at least one minute before retrying"
MIN_WAIT = 1.0  # seconds; never retry a rate limit sooner


class GitHubError(Exception):
    """GitHub refused or could not be reached. `status` is None for network trouble."""

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after

    @property
    def rate_limited(self) -> bool:
        """GitHub's rate limiter said no (a 429, or a 403 with a rate-limit wait)."""
        return self.status == 429 or (self.status == 403 and self.retry_after is not None)

    @property
    def retryable(self) -> bool:
        """Worth trying again later: network trouble, rate limits and GitHub's own errors."""
        return self.status is None or self.status >= 500 or self.rate_limited


@dataclass(frozen=True)
class App:
    """A GitHub App; `installation_id` is the default installation ("" when there is none)."""

    app_id: str
    installation_id: str = ""
    private_key: str = ""
    private_key_file: str = ""

    def key(self) -> str:
        if self.private_key:
            # A PEM pasted into one environment variable often arrives with literal "\n"s.
            return self.private_key.replace("\\n", "\n")
        try:
            return Path(self.private_key_file).read_text()
        except OSError as exc:
            raise ImproperlyConfigured(
                f"GANTRY_GITHUB_APP_PRIVATE_KEY_FILE cannot be read: {exc.strerror}"
            ) from None

    def jwt(self, now: float | None = None) -> str:
        """The app's own short-lived credential, good only for asking for installation tokens."""
        now = int(now if now is not None else time.time())
        claims = {"iat": now - JWT_BACKDATE, "exp": now + JWT_LIFETIME, "iss": self.app_id}
        return jwt.encode(claims, self.key(), algorithm="RS256")


def configured_app() -> App | None:
    """The configured GitHub App, or None. GANTRY_GITHUB_APP_INSTALLATION_ID is optional: it is
    the default for calls that are not given the installation GitHub named."""
    app_id, installation = settings.GANTRY_GITHUB_APP_ID, settings.GANTRY_GITHUB_APP_INSTALLATION_ID
    key, key_file = (
        settings.GANTRY_GITHUB_APP_PRIVATE_KEY,
        settings.GANTRY_GITHUB_APP_PRIVATE_KEY_FILE,
    )
    if not (app_id or installation or key or key_file):
        return None
    missing = [
        name
        for name, value in [
            ("GANTRY_GITHUB_APP_ID", app_id),
            ("GANTRY_GITHUB_APP_PRIVATE_KEY or _FILE", key or key_file),
        ]
        if not value
    ]
    if missing:
        raise ImproperlyConfigured(f"GitHub App settings incomplete: set {', '.join(missing)}")
    return App(str(app_id), str(installation or ""), key, key_file)


def configured() -> bool:
    """True when Gantry may talk to GitHub: a GitHub App or a token is set."""
    return bool(settings.GANTRY_GITHUB_TOKEN) or configured_app() is not None


class InstallationTokens:
    """Installation tokens by (API URL, app, installation), kept in this process only."""

    def __init__(self):
        self._lock = threading.Lock()
        self._tokens: dict[tuple, tuple[str, float]] = {}

    def get(self, client: GitHub, app: App) -> str:
        if not app.installation_id:
            raise ImproperlyConfigured(
                "GitHub App installation unknown: give the installation id GitHub sent "
                "(installation.id) or set GANTRY_GITHUB_APP_INSTALLATION_ID"
            )
        key = (client.base_url, app.app_id, app.installation_id)
        with self._lock:
            token, expires = self._tokens.get(key, ("", 0.0))
            if token and expires - TOKEN_MARGIN > time.time():
                return token
            token, expires = client.exchange(app)
            self._tokens[key] = (token, expires)
            return token

    def clear(self) -> None:
        with self._lock:
            self._tokens.clear()


tokens = InstallationTokens()


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict) and body.get("message"):
        errors = body.get("errors")
        return str(body["message"]) + (f" {errors}" if errors else "")
    return str(body)[:200]


def _seconds(value: str, now: float) -> float | None:
    """A Retry-After value: delay-seconds, or (RFC 9110 allows it) an HTTP-date."""
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return parsedate_to_datetime(value).timestamp() - now
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _retry_after(response: httpx.Response, now: float) -> float | None:
    """Seconds to wait before trying again, as GitHub's rate-limit guidance says; None when the
    answer is no rate limit (then a 5xx is retried with backoff, a 403 not at all). `now` is the
    caller's clock, in Unix seconds, against which `x-ratelimit-reset` is read."""
    status, headers = response.status_code, response.headers
    if status not in (403, 429):
        # Not a rate limit; a 5xx (503 Service Unavailable) may still say when to come back.
        wait = _seconds(headers["retry-after"], now) if "retry-after" in headers else None
        return None if wait is None else max(wait, MIN_WAIT)
    if "retry-after" in headers:
        wait = _seconds(headers["retry-after"], now)
        return max(wait if wait is not None else SECONDARY_WAIT, MIN_WAIT)
    if headers.get("x-ratelimit-remaining", "").strip() == "0":
        try:
            reset = float(headers.get("x-ratelimit-reset", ""))
        except ValueError:
            return SECONDARY_WAIT
        return max(float(math.ceil(reset - now)), MIN_WAIT)
    if status == 429 or "rate limit" in _message(response).lower():
        return SECONDARY_WAIT  # a secondary rate limit: "wait for at least one minute"
    return None  # a 403 about permissions: permanent


def _next_link(response: httpx.Response) -> str:
    """The `Link: <…>; rel="next"` URL, or ""."""
    return response.links.get("next", {}).get("url", "")


class GitHub:
    """One configured GitHub API. Use as a context manager, or call close()."""

    def __init__(
        self,
        base_url: str,
        token: str = "",
        app: App | None = None,
        installation_id: int | str | None = None,
        transport=None,
        *,
        clock: Callable[[], float] = time.time,
    ):
        """`installation_id` is the App installation to act as (from what GitHub sent); without
        it, the App's configured one. `clock` gives Unix seconds for reading rate-limit resets."""
        if not token and app is None:
            raise ImproperlyConfigured("GitHub needs GANTRY_GITHUB_TOKEN or a GitHub App")
        if app is not None and installation_id not in (None, ""):
            app = dataclasses.replace(app, installation_id=str(installation_id))
        self.base_url = base_url.rstrip("/")
        self._token, self.app, self.clock = token, app, clock
        self.http = httpx.Client(
            base_url=self.base_url,
            timeout=TIMEOUT,
            transport=transport,
            headers={
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": API_VERSION,
                "User-Agent": "gantry",
            },
        )

    @property
    def installation_id(self) -> str:
        """The App installation this client acts as ("" without an App or installation)."""
        return self.app.installation_id if self.app is not None else ""

    @classmethod
    def from_settings(cls, installation_id: int | str | None = None) -> GitHub:
        """The configured GitHub; with an App, acting as `installation_id` (what GitHub sent as
        `installation.id`), else as GANTRY_GITHUB_APP_INSTALLATION_ID."""
        return cls(
            settings.GANTRY_GITHUB_API_URL,
            settings.GANTRY_GITHUB_TOKEN,
            configured_app(),
            installation_id,
        )

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self.http.close()

    def owns(self, url: str) -> bool:
        """Whether `url` is on this API, so the token may be sent there."""
        return url.startswith(self.base_url + "/")

    # --- the calls ------------------------------------------------------------------------------

    def create_deployment(
        self,
        repository: str,
        *,
        ref: str,
        environment: str,
        description: str,
        payload: dict,
        production: bool = False,
    ) -> dict:
        return self._call(
            "POST",
            f"/repos/{repository}/deployments",
            json={
                "ref": ref,
                "task": "deploy",
                "environment": environment,
                "description": description[:140],
                "payload": payload,
                "auto_merge": False,
                "required_contexts": [],
                "production_environment": production,
                "transient_environment": False,
            },
        )

    def find_deployments(self, repository: str, *, sha: str, environment: str) -> list[dict]:
        return self._call(
            "GET",
            f"/repos/{repository}/deployments",
            params={"sha": sha, "environment": environment, "per_page": 100},
        )

    def create_status(
        self,
        repository: str,
        deployment_id: int,
        *,
        state: str,
        description: str = "",
        log_url: str = "",
        environment_url: str = "",
    ) -> dict:
        body = {"state": state, "description": description[:140], "auto_inactive": True}
        if log_url:
            body["log_url"] = log_url
        if environment_url:
            body["environment_url"] = environment_url
        return self._call(
            "POST", f"/repos/{repository}/deployments/{deployment_id}/statuses", json=body
        )

    def review_protection_rule(
        self, callback_url: str, *, environment: str, state: str, comment: str
    ) -> None:
        """Answer a deployment_protection_rule request: state is approved or rejected."""
        self._callback(
            callback_url,
            {"environment_name": environment, "state": state, "comment": comment[:1024]},
        )

    def report_protection_rule(self, callback_url: str, *, environment: str, comment: str) -> None:
        """A status report on a deployment_protection_rule request, without a verdict: the job
        keeps waiting and the comment shows on the run (GitHub's
        review-custom-gates-comment-required body)."""
        if not comment:
            raise ValueError("a protection rule status report needs a comment")
        self._callback(callback_url, {"environment_name": environment, "comment": comment[:1024]})

    def workflow_runs(
        self,
        repository: str,
        *,
        branch: str,
        event: str | None = "push",
        status: str | None = "success",
        created: str | None = None,
        per_page: int = 100,
        max_pages: int | None = 10,
    ) -> Iterator[dict]:
        """The repository's workflow runs (actions/list-workflow-runs-for-repo), newest first,
        page by page. `status` is a status or a conclusion; `created` is GitHub's date syntax,
        e.g. ">=2026-12-01T00:00:00Z". None leaves a filter out."""
        params = {"branch": branch, "event": event, "status": status, "created": created}
        params = {k: v for k, v in params.items() if v not in (None, "")}
        page, seen = 1, 0
        while max_pages is None or page <= max_pages:
            body = self._call(
                "GET",
                f"/repos/{repository}/actions/runs",
                params=params | {"per_page": per_page, "page": page},
            )
            runs = (body or {}).get("workflow_runs") or []
            yield from runs
            seen += len(runs)
            if len(runs) < per_page or seen >= int((body or {}).get("total_count") or 0):
                return
            page += 1

    def hook_deliveries(self, per_page: int = 100, max_pages: int | None = None) -> Iterator[dict]:
        """The App's webhook deliveries (apps/list-webhook-deliveries), newest first as GitHub
        returns them, following `Link: rel="next"` (a cursor) page by page. App JWT."""
        url: str = "/app/hook/deliveries"
        params: dict | None = {"per_page": per_page}
        pages = 0
        while url and (max_pages is None or pages < max_pages):
            response = self._request(
                "GET", url, authorization=self._app_authorization(), params=params
            )
            pages += 1
            yield from self._json("GET", "/app/hook/deliveries", response) or []
            url, params = _next_link(response), None
            if url and not self.owns(url):
                raise GitHubError(f"next page is not on {self.base_url}; not sending credentials")

    def redeliver(self, delivery_id: int) -> None:
        """Ask GitHub to send a webhook delivery again (apps/redeliver-webhook-delivery, 202)."""
        self._send(
            "POST",
            f"/app/hook/deliveries/{int(delivery_id)}/attempts",
            authorization=self._app_authorization(),
        )

    def exchange(self, app: App) -> tuple[str, float]:
        """Trade the app's JWT for an installation token: (token, expiry as a Unix time)."""
        body = self._send(
            "POST",
            f"/app/installations/{app.installation_id}/access_tokens",
            authorization=f"Bearer {app.jwt()}",
        )
        try:
            expires = datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
            return body["token"], expires.timestamp()
        except (KeyError, TypeError, ValueError, AttributeError):
            raise GitHubError(
                "GitHub's installation token answer has no token/expires_at"
            ) from None

    # --- plumbing -------------------------------------------------------------------------------

    def _callback(self, callback_url: str, body: dict) -> None:
        if not self.owns(callback_url):
            raise GitHubError(f"callback URL is not on {self.base_url}; not sending credentials")
        self._call("POST", callback_url.removeprefix(self.base_url), json=body)

    def _authorization(self) -> str:
        """An installation token with an App, else the token."""
        if self.app is not None:
            return f"Bearer {tokens.get(self, self.app)}"
        return f"Bearer {self._token}"

    def _app_authorization(self) -> str:
        """The App's JWT, for /app/... endpoints."""
        if self.app is None:
            raise ImproperlyConfigured(
                "GitHub's /app endpoints need a GitHub App (GANTRY_GITHUB_APP_ID and its key)"
            )
        return f"Bearer {self.app.jwt()}"

    def _call(self, method: str, path: str, **kwargs):
        return self._send(method, path, authorization=self._authorization(), **kwargs)

    def _send(self, method: str, path: str, *, authorization: str, **kwargs):
        return self._json(
            method, path, self._request(method, path, authorization=authorization, **kwargs)
        )

    def error(self, method: str, path: str, response: httpx.Response) -> GitHubError:
        """The GitHubError for GitHub's error answer, its rate-limit wait read on our clock."""
        return GitHubError(
            f"GitHub answered {response.status_code} to {method} {path}: {_message(response)}",
            status=response.status_code,
            retry_after=_retry_after(response, self.clock()),
        )

    def _request(self, method: str, path: str, *, authorization: str, **kwargs) -> httpx.Response:
        try:
            response = self.http.request(
                method, path, headers={"Authorization": authorization}, **kwargs
            )
        except httpx.HTTPError as exc:
            raise GitHubError(f"{method} {path}: {type(exc).__name__}: {exc}") from None
        if response.status_code >= 400:
            raise self.error(method, path, response)
        return response

    def _json(self, method: str, path: str, response: httpx.Response):
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise GitHubError(f"{method} {path}: GitHub's answer is not JSON") from None
