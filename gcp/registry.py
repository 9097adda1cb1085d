"""The image registry, through the Docker Registry HTTP API v2 (Artifact Registry speaks it)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from functools import cached_property
from time import monotonic

import httpx

from .errors import ImageNotFound, RegistryError
from .types import ImageName

MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
)
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
TOKEN_USER = "oauth2accesstoken"  # Artifact Registry's user name for an OAuth access token
DEFAULT_TOKEN_SECONDS = 60  # what the token spec says a token without expires_in lasts

# RFC 9110 §11: challenge = auth-scheme [ 1*SP ( token68 / #auth-param ) ],
# auth-param = token BWS "=" BWS ( token / quoted-string ).
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_SCHEME = re.compile(rf"[\s,]*({_TOKEN})(?=[\s,]|$)(?:\s+[0-9A-Za-z._~+/-]+=*(?=\s*(?:,|$)))?\s*")
_PARAM = re.compile(rf'({_TOKEN})\s*=\s*(?:"((?:[^"\\]|\\.)*)"|({_TOKEN}))\s*(?:,\s*|$)')


def parse_challenges(header: str) -> list[tuple[str, dict[str, str]]]:
    """A WWW-Authenticate value as [(scheme, {param: value})], schemes and param names
    lower-cased, quoted strings unescaped. Several challenges may share one value, so this
    reads params until the next bare token; it stops at anything malformed."""
    challenges, pos = [], 0
    while scheme := _SCHEME.match(header, pos):
        pos, params = scheme.end(), {}
        while param := _PARAM.match(header, pos):
            name, quoted, bare = param.groups()
            params[name.lower()] = bare if quoted is None else re.sub(r"\\(.)", r"\1", quoted)
            pos = param.end()
        challenges.append((scheme.group(1).lower(), params))
    return challenges


def _bearer_challenge(response: httpx.Response) -> dict[str, str] | None:
    for value in response.headers.get_list("www-authenticate"):
        for scheme, params in parse_challenges(value):
            if scheme == "bearer":
                return params
    return None


# Google's registries: Artifact Registry (*.pkg.dev), Container Registry (gcr.io, *.gcr.io).
GOOGLE_REGISTRY_HOSTS = ("gcr.io",)
GOOGLE_REGISTRY_DOMAINS = (".pkg.dev", ".gcr.io")


def may_send_access_token(url: str, configured: str = "") -> bool:
    """Whether the worker's Google access token may go to `url`: only to Google's registries
    (`*.pkg.dev`, `gcr.io`, `*.gcr.io`) over HTTPS, or to the host of the configured registry
    (GANTRY_REGISTRY_URL). Anywhere else it would let that host act as the worker on GCP."""
    host, scheme = _host(url)
    if not host:
        return False
    if configured and host == _host(configured)[0]:
        return True
    google = host in GOOGLE_REGISTRY_HOSTS or host.endswith(GOOGLE_REGISTRY_DOMAINS)
    return scheme == "https" and google


def _host(url: str) -> tuple[str, str]:
    """(host without a trailing dot, scheme) of `url`; ("", "") when it is not a URL."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return "", ""
    return parsed.host.rstrip("."), parsed.scheme


def _origin(url: str) -> tuple[str, str, int | None]:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return ("", "", None)
    return parsed.scheme, parsed.host, parsed.port or {"http": 80, "https": 443}.get(parsed.scheme)


class Registry:
    """`url` set (the sandbox, a local registry): that server. Empty: the image's own host over
    HTTPS. Either way a 401 Bearer challenge is answered with a token from its realm, fetched
    with Basic `oauth2accesstoken:<access token>` (from `access_token`, else Application
    Default Credentials): at once for Google, only when the token endpoint asks for a `url`.
    The access token goes only where may_send_access_token allows; elsewhere the realm is asked
    without it, and a realm that wants credentials is a RegistryError."""

    def __init__(self, url: str = "", access_token: Callable[[], str] | None = None):
        self.url = url.rstrip("/")
        self._token_source = access_token
        self._tokens: dict[tuple[str, str, str], tuple[str, float]] = {}  # → (token, expiry)
        self._challenges: dict[tuple[str, str], dict[str, str]] = {}  # (base, repo) → last one

    @cached_property
    def http(self) -> httpx.Client:
        return httpx.Client(timeout=10.0)

    def _base(self, image: ImageName) -> str:
        return self.url or f"https://{image.host}"

    def _access_token(self) -> str:
        if self._token_source is not None:
            return self._token_source()
        import google.auth
        import google.auth.transport.requests

        credentials = getattr(self, "_credentials", None)
        if credentials is None:
            credentials, _ = google.auth.default(scopes=[CLOUD_PLATFORM])
            self._credentials = credentials
        if not credentials.valid:
            credentials.refresh(google.auth.transport.requests.Request())
        return credentials.token

    @staticmethod
    def _key(challenge: dict[str, str]) -> tuple[str, str, str]:
        return challenge.get("realm", ""), challenge.get("service", ""), challenge.get("scope", "")

    def _cached_token(self, challenge: dict[str, str]) -> str | None:
        token, expiry = self._tokens.get(self._key(challenge), ("", 0.0))
        return token if token and expiry > monotonic() else None

    def _token(self, challenge: dict[str, str], name: ImageName, base: str) -> str:
        """A token from the challenge's realm, only on this registry's own origin or the
        image's host over HTTPS: a realm elsewhere would make us send credentials (or just a
        request) wherever a registry says."""
        if cached := self._cached_token(challenge):
            return cached
        realm = challenge.get("realm", "")
        if _origin(realm) not in {_origin(base), _origin(f"https://{name.host}")}:
            raise RegistryError(
                f"refusing the token realm {realm!r} of {name.repository}: "
                f"not {base} or https://{name.host}",
                401,
            )
        query = [("service", challenge["service"])] if challenge.get("service") else []
        query += [("scope", scope) for scope in challenge.get("scope", "").split()]
        trusted = may_send_access_token(realm, self.url)
        auth = (TOKEN_USER, self._access_token()) if trusted and not self.url else None
        response = self.http.get(realm, params=query, auth=auth)
        if response.status_code == 401 and auth is None:  # it asks for credentials
            if not trusted:
                raise RegistryError(
                    f"token endpoint {realm} wants credentials for {name.repository}: not sending "
                    f"the Google access token to {httpx.URL(realm).host} (only to *.pkg.dev, "
                    "gcr.io, *.gcr.io or GANTRY_REGISTRY_URL's host)",
                    401,
                )
            response = self.http.get(realm, params=query, auth=(TOKEN_USER, self._access_token()))
        if response.status_code != 200:
            raise RegistryError(
                f"token endpoint {realm} answered {response.status_code} for {name.repository}",
                response.status_code,
            )
        try:
            body = response.json()
            token = body.get("token") or body.get("access_token")
            seconds = float(body.get("expires_in") or DEFAULT_TOKEN_SECONDS)
        except (ValueError, AttributeError, TypeError):
            token = None
        if not token or not isinstance(token, str):
            raise RegistryError(f"token endpoint {realm} gave no token", response.status_code)
        self._tokens[self._key(challenge)] = (token, monotonic() + seconds * 0.9)
        return token

    def _send(self, method: str, url: str, name: ImageName, base: str) -> httpx.Response:
        """`method` on `url`, with the token this repository last needed if it is still cached;
        a 401 Bearer challenge is answered once, with a fresh token."""
        headers = {"Accept": ", ".join(MANIFEST_TYPES)}
        known = self._challenges.get((base, name.repository))
        sent = self._cached_token(known) if known else None
        if sent:
            headers["Authorization"] = f"Bearer {sent}"
        response = self.http.request(method, url, headers=headers)
        challenge = _bearer_challenge(response) if response.status_code == 401 else None
        if challenge is None:
            return response
        if known and sent:
            self._tokens.pop(self._key(known), None)  # refused: don't offer it again
        self._challenges[(base, name.repository)] = challenge
        token = self._token(challenge, name, base)
        return self.http.request(
            method, url, headers=headers | {"Authorization": f"Bearer {token}"}
        )

    def get_digest(self, image: str, tag: str | None = None) -> str:
        """The manifest digest of `image` (host/repo:tag or host/repo@digest, or host/repo and
        `tag`), as the registry's Docker-Content-Digest header gives it."""
        name = ImageName.parse(image)
        reference = tag or name.reference
        base = self._base(name)
        url = f"{base}/v2/{name.repository}/manifests/{reference}"
        try:
            response = self._send("HEAD", url, name, base)
            if response.status_code == 200 and "docker-content-digest" not in response.headers:
                response = self._send("GET", url, name, base)
                if response.status_code == 200:
                    return "sha256:" + hashlib.sha256(response.content).hexdigest()
        except httpx.TransportError as exc:
            raise RegistryError(f"registry unreachable for {image}: {exc}") from exc
        if response.status_code == 404:
            raise ImageNotFound(f"{name.host}/{name.repository}:{reference} not found", 404)
        if response.status_code != 200:
            raise RegistryError(
                f"registry answered {response.status_code} for {name.repository}:{reference}",
                response.status_code,
            )
        return response.headers["docker-content-digest"]
