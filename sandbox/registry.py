"""A Docker Registry HTTP API v2 subset: manifests by tag or digest, and tag lists.

Repositories are named by the image reference's path without its host, so
`asia-northeast3-docker.pkg.dev/nemo-prod/registry/backend:prod-v1` lives at
`/v2/nemo-prod/registry/backend/manifests/prod-v1`. Digests are sha256 of the manifest bytes,
so copying a manifest keeps its digest, as it does on Artifact Registry.

Manifests are served by `Accept` as CNCF distribution (v3) serves them: see
`Registry.negotiate`. With `auth` on (`POST /_sandbox/registry {"auth": true}`, or
`world.registry.auth = True`; a reset turns it off) every /v2/ call needs a Bearer token, as on
Artifact Registry: a 401 challenge names the realm `/v2/token`, which issues tokens for Basic
`oauth2accesstoken:<any non-empty password>`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import secrets
import time

from .http import Request, Response, Router

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST_TYPES = {DOCKER_MANIFEST, OCI_MANIFEST, DOCKER_LIST, OCI_INDEX}
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
TOKEN_USER = "oauth2accesstoken"  # Artifact Registry's user for an OAuth access token
TOKEN_SECONDS = 300


class ManifestRefused(LookupError):
    """What the registry answers instead of a manifest: (status, error code, message)."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.status, self.code, self.message = status, code, message


def accepted_types(accept: str) -> set[str]:
    """The manifest types an Accept header names, read as distribution reads it: split on
    commas, parameters (q=) ignored, no wildcards."""
    return {part.split(";")[0].strip().lower() for part in accept.split(",")} & MANIFEST_TYPES


class ImageRef:
    """host/path[:tag][@digest] → repository (path) and reference (digest, else tag)."""

    def __init__(self, text: str):
        self.text = text
        rest = text
        self.digest = ""
        if "@" in rest:
            rest, self.digest = rest.split("@", 1)
        self.tag = ""
        last = rest.rsplit("/", 1)[-1]
        if ":" in last:
            rest, self.tag = rest.rsplit(":", 1)
        first, _, path = rest.partition("/")
        if path and ("." in first or ":" in first or first == "localhost"):
            self.host, self.repository = first, path
        else:
            self.host, self.repository = "", rest
        if not self.tag and not self.digest:
            self.tag = "latest"

    @property
    def reference(self) -> str:
        return self.digest or self.tag


def digest_of(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


def fake_manifest(label: str) -> bytes:
    """A schema-2 manifest whose config and layer digests derive from `label` (an image's name)."""

    def blob(part: str) -> str:
        return digest_of(f"{label}/{part}".encode())

    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "size": 1469,
                "digest": blob("config"),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "size": 3_000_000 + i * 1_234_567,
                    "digest": blob(f"layer{i}"),
                }
                for i in range(3)
            ],
        },
        indent=3,
    ).encode()


class Registry:
    def __init__(self, repositories: dict | None = None, auth: bool = False):
        # repository → {"manifests": {digest: {"mediaType", "body"}}, "tags": {tag: digest}}
        self.repositories: dict[str, dict] = repositories or {}
        self.auth = auth  # require Bearer tokens, as Artifact Registry does
        self.tokens: dict[str, tuple[float, set[str]]] = {}  # token → (expiry, granted scopes)
        self.token_requests = 0

    def put(self, repository: str, reference: str, body: bytes, media_type: str) -> str:
        digest = digest_of(body)
        repo = self.repositories.setdefault(repository, {"manifests": {}, "tags": {}})
        repo["manifests"][digest] = {"mediaType": media_type, "body": body.decode()}
        if not DIGEST.match(reference):
            repo["tags"][reference] = digest
        return digest

    def get(self, repository: str, reference: str) -> tuple[str, str, bytes] | None:
        """(digest, media type, manifest bytes), or None when unknown."""
        repo = self.repositories.get(repository)
        if repo is None:
            return None
        digest = reference if DIGEST.match(reference) else repo["tags"].get(reference)
        manifest = repo["manifests"].get(digest) if digest else None
        if manifest is None:
            return None
        return digest, manifest["mediaType"], manifest["body"].encode()

    def negotiate(
        self, repository: str, reference: str, accept: set[str]
    ) -> tuple[str, str, bytes]:
        """(digest, media type, bytes) to serve a client accepting `accept`, as distribution v3's
        GetManifest does: an OCI manifest or index the client does not accept is 404
        MANIFEST_UNKNOWN; a Docker manifest list it does not accept, asked for by tag, gives way
        to its linux/amd64 manifest (400 MANIFEST_INVALID if that is a Docker manifest the client
        does not accept either); a Docker v2 manifest is served whatever Accept says (v3 no longer
        rewrites it to schema 1, and never refuses it)."""
        found = self.get(repository, reference)
        if found is None:
            raise ManifestRefused(404, "MANIFEST_UNKNOWN", "manifest unknown")
        _, media_type, body = found
        if media_type == OCI_MANIFEST and OCI_MANIFEST not in accept:
            message = "OCI manifest found, but accept header does not support OCI manifests"
            raise ManifestRefused(404, "MANIFEST_UNKNOWN", message)
        if media_type == OCI_INDEX and OCI_INDEX not in accept:
            message = "OCI index found, but accept header does not support OCI indexes"
            raise ManifestRefused(404, "MANIFEST_UNKNOWN", message)
        if media_type == DOCKER_LIST and DOCKER_LIST not in accept and not DIGEST.match(reference):
            amd64 = {"architecture": "amd64", "os": "linux"}
            child = next(
                (
                    m.get("digest", "")
                    for m in json.loads(body).get("manifests", [])
                    if {k: (m.get("platform") or {}).get(k) for k in amd64} == amd64
                ),
                "",
            )
            found = self.get(repository, child) if DIGEST.match(child) else None
            if found is None:
                raise ManifestRefused(404, "MANIFEST_UNKNOWN", "manifest unknown")
            if found[1] == DOCKER_MANIFEST and DOCKER_MANIFEST not in accept:
                message = "Schema 2 manifest not supported by client"
                raise ManifestRefused(400, "MANIFEST_INVALID", message)
        return found

    def issue_token(self, scopes: set[str]) -> str:
        """A Bearer token granting `scopes` ("repository:<name>:<action>") for TOKEN_SECONDS."""
        token = secrets.token_urlsafe(24)
        self.tokens[token] = (time.monotonic() + TOKEN_SECONDS, scopes)
        self.token_requests += 1
        return token

    def authorized(self, authorization: str, scope: str) -> bool:
        """Whether an Authorization header carries a live token granting `scope` (every
        action it lists); an empty scope (the /v2/ base) needs only a live token."""
        scheme, _, token = authorization.partition(" ")
        expiry, granted = self.tokens.get(token.strip(), (0.0, set()))
        if scheme.lower() != "bearer" or expiry < time.monotonic():
            return False
        return not scope or expand_scopes(scope) <= granted

    def tags(self, repository: str) -> list[str] | None:
        repo = self.repositories.get(repository)
        return sorted(repo["tags"]) if repo is not None else None

    def resolve(self, image: str) -> tuple[str, str, bytes] | None:
        ref = ImageRef(image)
        return self.get(ref.repository, ref.reference)

    def copy(self, source: str, destination: str) -> str:
        """Copy an image between references; returns the digest (unchanged by the copy)."""
        found = self.resolve(source)
        if found is None:
            raise LookupError(f"MANIFEST_UNKNOWN: {source} not found in the registry")
        _, media_type, body = found
        dst = ImageRef(destination)
        return self.put(dst.repository, dst.tag if not dst.digest else dst.digest, body, media_type)

    def push_new(self, image: str) -> str:
        """A fresh image at `image` (what a CI push would leave behind); returns its digest."""
        ref = ImageRef(image)
        return self.put(ref.repository, ref.tag, fake_manifest(image), DOCKER_MANIFEST)


def expand_scopes(scope: str) -> set[str]:
    """ "repository:a:pull,push repository:b:pull" → one "type:name:action" per action."""
    expanded = set()
    for item in scope.split():
        resource, _, actions = item.rpartition(":")
        expanded |= {f"{resource}:{action}" for action in actions.split(",") if resource}
    return expanded


def _error(status: int, code: str, message: str, detail=None, headers=None) -> Response:
    body = {"errors": [{"code": code, "message": message, "detail": detail or {}}]}
    return Response.json(
        body, status, {"Docker-Distribution-API-Version": "registry/2.0"} | (headers or {})
    )


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return user, password


def routes(router: Router, world) -> None:
    headers = {"Docker-Distribution-API-Version": "registry/2.0"}

    def challenge(request: Request, scope: str = "") -> Response | None:
        """None when auth is off or the request's token grants `scope`; else distribution's
        token-auth 401 with a Bearer challenge naming this sandbox's realm."""
        registry, authorization = world.registry, request.headers.get("authorization", "")
        if not registry.auth or registry.authorized(authorization, scope):
            return None
        service = request.base_url.split("://", 1)[-1]
        params = f'realm="{request.base_url}/v2/token",service="{service}"'
        if scope:
            params += f',scope="{scope}"'
        if authorization:
            live = registry.authorized(authorization, "")
            params += ',error="insufficient_scope"' if live else ',error="invalid_token"'
        fields = ("Type", "Name", "Action")
        detail = [dict(zip(fields, item.split(":"), strict=False)) for item in scope.split()]
        refusal = {"WWW-Authenticate": f"Bearer {params}"}
        return _error(401, "UNAUTHORIZED", "authentication required", detail, refusal)

    def pull(request: Request) -> str:
        return f"repository:{request.params['name']}:pull"

    @router.route("GET", "/v2/token")
    def token(request: Request) -> Response:
        """The realm: a token for Basic `oauth2accesstoken:<access token>`, as Artifact
        Registry's token endpoint gives one; anything else is 401 with a Basic challenge."""
        credentials = _basic_credentials(request)
        if credentials is None or credentials[0] != TOKEN_USER or not credentials[1]:
            realm = f'Basic realm="{request.base_url}/v2/token"'
            return _error(
                401,
                "UNAUTHORIZED",
                f"authentication required: Basic {TOKEN_USER}:<OAuth access token>",
                headers={"WWW-Authenticate": realm},
            )
        scope = request.query.get("scope", "")
        issued = world.registry.issue_token(expand_scopes(scope))
        return Response.json(
            {
                "token": issued,
                "access_token": issued,
                "expires_in": TOKEN_SECONDS,
                "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
        )

    @router.route("GET", "/_sandbox/registry")
    def settings(request: Request) -> Response:
        return Response.json({"auth": world.registry.auth})

    @router.route("POST", "/_sandbox/registry")
    def configure(request: Request) -> Response:
        """{"auth": true} makes every /v2/ call need a Bearer token, as Artifact Registry does."""
        body = request.json()
        if "auth" in body:
            world.registry.auth = bool(body["auth"])
        return Response.json({"auth": world.registry.auth})

    @router.route("GET", "/v2/")
    def base(request: Request) -> Response:
        return challenge(request) or Response.json({}, headers=headers)

    @router.route("GET", "/v2/_catalog")
    def catalog(request: Request) -> Response:
        if refused := challenge(request, "registry:catalog:*"):
            return refused
        return Response.json({"repositories": sorted(world.registry.repositories)}, headers=headers)

    @router.route("GET", "/v2/{name:path}/tags/list")
    def tags_list(request: Request) -> Response:
        if refused := challenge(request, pull(request)):
            return refused
        name = request.params["name"]
        tags = world.registry.tags(name)
        if tags is None:
            return _error(
                404, "NAME_UNKNOWN", "repository name not known to registry", {"name": name}
            )
        return Response.json({"name": name, "tags": tags}, headers=headers)

    @router.route("GET", "/v2/{name:path}/manifests/{reference}")
    def get_manifest(request: Request) -> Response:
        """GET and HEAD (the same headers, no body), negotiated by Accept."""
        if refused := challenge(request, pull(request)):
            return refused
        name, reference = request.params["name"], request.params["reference"]
        accept = accepted_types(request.headers.get("accept", ""))
        try:
            digest, media_type, body = world.registry.negotiate(name, reference, accept)
        except ManifestRefused as exc:
            detail = {"Tag": reference} if exc.message == "manifest unknown" else None
            return _error(exc.status, exc.code, exc.message, detail)
        return Response(
            200,
            body,
            headers
            | {"Content-Type": media_type, "Docker-Content-Digest": digest, "Etag": f'"{digest}"'},
        )

    @router.route("PUT", "/v2/{name:path}/manifests/{reference}")
    def put_manifest(request: Request) -> Response:
        if refused := challenge(request, f"repository:{request.params['name']}:pull,push"):
            return refused
        name, reference = request.params["name"], request.params["reference"]
        media_type = request.headers.get("content-type", DOCKER_MANIFEST).split(";")[0]
        if media_type not in MANIFEST_TYPES:
            return _error(400, "MANIFEST_INVALID", f"unsupported manifest type {media_type}")
        try:
            json.loads(request.body)
        except ValueError:
            return _error(400, "MANIFEST_INVALID", "manifest invalid: not JSON")
        if DIGEST.match(reference) and digest_of(request.body) != reference:
            return _error(400, "DIGEST_INVALID", "provided digest did not match uploaded content")
        digest = world.registry.put(name, reference, request.body, media_type)
        return Response(
            201,
            b"",
            headers
            | {"Location": f"/v2/{name}/manifests/{digest}", "Docker-Content-Digest": digest},
        )
