"""A real CNCF distribution registry (Debian's `docker-registry`) on a free loopback port, and
pushes through its HTTP API: what the registry contract tests hold Gantry and the sandbox to."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import socket
import subprocess
import tarfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

BINARY = shutil.which("docker-registry") or "/usr/bin/docker-registry"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
# (manifest, config, layer) media types
DOCKER_TYPES = (
    DOCKER_MANIFEST,
    "application/vnd.docker.container.image.v1+json",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
)
OCI_TYPES = (
    OCI_MANIFEST,
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.oci.image.layer.v1.tar+gzip",
)
# Filesystem storage, no auth, loopback only; the health checker would only add goroutines.
CONFIG = """\
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {root}
http:
  addr: 127.0.0.1:{port}
"""


def available() -> bool:
    return Path(BINARY).is_file()


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running(workdir: Path, timeout: float = 15.0) -> Iterator[str]:
    """`docker-registry serve` on 127.0.0.1, its storage and log in `workdir`; yields its URL
    once /v2/ answers, and stops it afterwards."""
    port = _free_port()
    config = workdir / "config.yml"
    config.write_text(CONFIG.format(root=workdir / "storage", port=port))
    url = f"http://127.0.0.1:{port}"
    with (workdir / "registry.log").open("wb") as log:
        process = subprocess.Popen(
            [BINARY, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{url}/v2/", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                log_text = (workdir / "registry.log").read_text(errors="replace")
                raise RuntimeError(f"docker-registry did not start on {url}:\n{log_text}")
            time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def layer_tar(text: str) -> tuple[bytes, str]:
    """A one-file gzipped layer and its diff ID (the digest of the uncompressed tar)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        data = text.encode()
        info = tarfile.TarInfo("hello.txt")
        info.size, info.mtime = len(data), 0
        tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0), digest_of(raw.getvalue())


class Pusher:
    """Pushes blobs and manifests the way `docker push` does, through the Registry v2 API."""

    def __init__(self, http: httpx.Client, url: str):
        self.http, self.url = http, url
        self.pushed: list[tuple[str, str, str, bytes]] = []  # (repository, ref, type, bytes)

    def blob(self, repository: str, data: bytes, media_type: str) -> dict:
        """A monolithic upload (POST, then PUT ?digest=); returns the blob's descriptor."""
        started = self.http.post(f"{self.url}/v2/{repository}/blobs/uploads/")
        assert started.status_code == 202, started.text
        location = httpx.URL(self.url).join(started.headers["Location"])
        digest = digest_of(data)
        done = self.http.put(
            location.copy_merge_params({"digest": digest}),
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        assert done.status_code == 201, done.text
        return {"mediaType": media_type, "size": len(data), "digest": digest}

    def manifest(self, repository: str, tag: str | None, manifest: dict) -> str:
        """PUT `manifest` at `tag`, or by digest when None (its mediaType is the Content-Type);
        returns the digest the registry answered, checked to be the sha256 of the bytes sent."""
        body = json.dumps(manifest, indent=2).encode()
        put = self.http.put(
            f"{self.url}/v2/{repository}/manifests/{tag or digest_of(body)}",
            content=body,
            headers={"Content-Type": manifest["mediaType"]},
        )
        assert put.status_code == 201, put.text
        assert put.headers["Docker-Content-Digest"] == digest_of(body)
        self.pushed.append((repository, tag or digest_of(body), manifest["mediaType"], body))
        return put.headers["Docker-Content-Digest"]

    def image(self, repository: str, tag: str | None, arch: str, oci: bool = False) -> dict:
        """A single-arch image (config and one layer blob, then its manifest); returns the
        manifest's descriptor with its platform, for an index or a manifest list."""
        layer, diff_id = layer_tar(f"{repository} {arch}\n")
        config = json.dumps(
            {
                "architecture": arch,
                "os": "linux",
                "config": {"Cmd": ["/bin/true"]},
                "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            }
        ).encode()
        types = OCI_TYPES if oci else DOCKER_TYPES
        manifest = {
            "schemaVersion": 2,
            "mediaType": types[0],
            "config": self.blob(repository, config, types[1]),
            "layers": [self.blob(repository, layer, types[2])],
        }
        return {
            "mediaType": manifest["mediaType"],
            "size": len(json.dumps(manifest, indent=2).encode()),
            "digest": self.manifest(repository, tag, manifest),
            "platform": {"architecture": arch, "os": "linux"},
        }

    def index(self, repository: str, tag: str, oci: bool) -> str:
        """An amd64+arm64 OCI index or Docker manifest list, its children pushed by digest."""
        children = [self.image(repository, None, arch, oci) for arch in ("amd64", "arm64")]
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX if oci else DOCKER_LIST}
        return self.manifest(repository, tag, index | {"manifests": children})
