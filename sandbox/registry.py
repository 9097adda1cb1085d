"""A Docker Registry HTTP API v2 subset: manifests by tag or digest, and tag lists.

Repositories are named by the image reference's path without its host, so
`asia-northeast3-docker.pkg.dev/nemo-prod/registry/backend:prod-v1` lives at
`/v2/nemo-prod/registry/backend/manifests/prod-v1`. Digests are sha256 of the manifest bytes,
so copying a manifest keeps its digest, as it does on Artifact Registry.
"""

from __future__ import annotations

import hashlib
import json
import re

from .http import Request, Response, Router

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MANIFEST_TYPES = {
    DOCKER_MANIFEST,
    OCI_MANIFEST,
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.index.v1+json",
}
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


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
    def __init__(self, repositories: dict | None = None):
        # repository → {"manifests": {digest: {"mediaType", "body"}}, "tags": {tag: digest}}
        self.repositories: dict[str, dict] = repositories or {}

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


def _error(status: int, code: str, message: str, detail=None) -> Response:
    body = {"errors": [{"code": code, "message": message, "detail": detail or {}}]}
    return Response.json(body, status, {"Docker-Distribution-API-Version": "registry/2.0"})


def routes(router: Router, world) -> None:
    headers = {"Docker-Distribution-API-Version": "registry/2.0"}

    @router.route("GET", "/v2/")
    def base(request: Request) -> Response:
        return Response.json({}, headers=headers)

    @router.route("GET", "/v2/_catalog")
    def catalog(request: Request) -> Response:
        return Response.json({"repositories": sorted(world.registry.repositories)}, headers=headers)

    @router.route("GET", "/v2/{name:path}/tags/list")
    def tags_list(request: Request) -> Response:
        name = request.params["name"]
        tags = world.registry.tags(name)
        if tags is None:
            return _error(
                404, "NAME_UNKNOWN", "repository name not known to registry", {"name": name}
            )
        return Response.json({"name": name, "tags": tags}, headers=headers)

    @router.route("GET", "/v2/{name:path}/manifests/{reference}")
    def get_manifest(request: Request) -> Response:
        name, reference = request.params["name"], request.params["reference"]
        found = world.registry.get(name, reference)
        if found is None:
            return _error(404, "MANIFEST_UNKNOWN", "manifest unknown", {"Tag": reference})
        digest, media_type, body = found
        return Response(
            200,
            body,
            headers
            | {"Content-Type": media_type, "Docker-Content-Digest": digest, "Etag": f'"{digest}"'},
        )

    @router.route("PUT", "/v2/{name:path}/manifests/{reference}")
    def put_manifest(request: Request) -> Response:
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
