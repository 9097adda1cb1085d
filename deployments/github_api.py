"""The few GitHub REST calls Gantry makes: deployments, their statuses, and answers to custom
deployment protection rules.

It signs in with GANTRY_GITHUB_TOKEN or as a GitHub App installation (an RS256 JWT exchanged for
an installation token, kept per process until shortly before it expires). The base URL comes from
GANTRY_GITHUB_API_URL, so tests and the demo talk to the sandbox's fake GitHub. Tokens travel only
in the Authorization header: never in URLs, exceptions, logs or the database.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime
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


class GitHubError(Exception):
    """GitHub refused or could not be reached. `status` is None for network trouble."""

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        """Worth trying again later: network trouble, rate limits and GitHub's own errors."""
        return (
            self.status is None
            or self.status == 429
            or self.status >= 500
            or (self.status == 403 and self.retry_after is not None)
        )


@dataclass(frozen=True)
class App:
    app_id: str
    installation_id: str
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
            ("GANTRY_GITHUB_APP_INSTALLATION_ID", installation),
            ("GANTRY_GITHUB_APP_PRIVATE_KEY or _FILE", key or key_file),
        ]
        if not value
    ]
    if missing:
        raise ImproperlyConfigured(f"GitHub App settings incomplete: set {', '.join(missing)}")
    return App(str(app_id), str(installation), key, key_file)


def configured() -> bool:
    """True when Gantry may talk to GitHub: a GitHub App or a token is set."""
    return bool(settings.GANTRY_GITHUB_TOKEN) or configured_app() is not None


class InstallationTokens:
    """Installation tokens by (API URL, app, installation), kept in this process only."""

    def __init__(self):
        self._lock = threading.Lock()
        self._tokens: dict[tuple, tuple[str, float]] = {}

    def get(self, client: GitHub, app: App) -> str:
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


def _retry_after(response: httpx.Response) -> float | None:
    if value := response.headers.get("Retry-After"):
        try:
            return float(value)
        except ValueError:
            return None
    if response.headers.get("X-RateLimit-Remaining") == "0":
        reset = response.headers.get("X-RateLimit-Reset", "")
        return max(float(reset) - time.time(), 1.0) if reset.isdigit() else 60.0
    return None


class GitHub:
    """One configured GitHub API. Use as a context manager, or call close()."""

    def __init__(self, base_url: str, token: str = "", app: App | None = None, transport=None):
        if not token and app is None:
            raise ImproperlyConfigured("GitHub needs GANTRY_GITHUB_TOKEN or a GitHub App")
        self.base_url = base_url.rstrip("/")
        self._token, self.app = token, app
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

    @classmethod
    def from_settings(cls) -> GitHub:
        app = configured_app()
        return cls(settings.GANTRY_GITHUB_API_URL, settings.GANTRY_GITHUB_TOKEN, app)

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
        if not self.owns(callback_url):
            raise GitHubError(f"callback URL is not on {self.base_url}; not sending credentials")
        self._call(
            "POST",
            callback_url.removeprefix(self.base_url),
            json={"environment_name": environment, "state": state, "comment": comment[:1024]},
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

    def _authorization(self) -> str:
        if self.app is not None:
            return f"Bearer {tokens.get(self, self.app)}"
        return f"Bearer {self._token}"

    def _call(self, method: str, path: str, **kwargs):
        return self._send(method, path, authorization=self._authorization(), **kwargs)

    def _send(self, method: str, path: str, *, authorization: str, **kwargs):
        try:
            response = self.http.request(
                method, path, headers={"Authorization": authorization}, **kwargs
            )
        except httpx.HTTPError as exc:
            raise GitHubError(f"{method} {path}: {type(exc).__name__}: {exc}") from None
        if response.status_code >= 400:
            raise GitHubError(
                f"GitHub answered {response.status_code} to {method} {path}: {_message(response)}",
                status=response.status_code,
                retry_after=_retry_after(response),
            )
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise GitHubError(f"{method} {path}: GitHub's answer is not JSON") from None
