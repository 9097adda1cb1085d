"""Promotion's digest reading against a real registry: Debian's `docker-registry` (CNCF
distribution), started here on a free 127.0.0.1 port with filesystem storage and no auth. Images
are pushed through its v2 API; Gantry must read back the digest the registry itself reports, and
the sandbox must negotiate Accept as the registry does."""

from __future__ import annotations

import httpx
import pytest

from gcp.errors import ImageNotFound
from gcp.registry import MANIFEST_TYPES, Registry
from tests.contract import real_registry as real

HOST = "asia-northeast3-docker.pkg.dev"  # as promotion names images; the URL decides the server
REPOSITORY = "nemo-prod/registry/backend"
SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+prettyjws"


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """(url, pusher, {tag: digest}) of a running registry holding one image of each kind."""
    if not real.available():
        pytest.skip(f"{real.BINARY} not installed (`make test` installs Debian's docker-registry)")
    with real.running(tmp_path_factory.mktemp("registry")) as url, httpx.Client() as http:
        pusher = real.Pusher(http, url)
        tags = {
            "docker-v2": pusher.image(REPOSITORY, "docker-v2", "amd64")["digest"],
            "oci-manifest": pusher.image(REPOSITORY, "oci-manifest", "amd64", oci=True)["digest"],
            "oci-index": pusher.index(REPOSITORY, "oci-index", oci=True),
            "docker-list": pusher.index(REPOSITORY, "docker-list", oci=False),
        }
        yield url, pusher, tags


@pytest.mark.parametrize("tag", ["docker-v2", "oci-manifest", "oci-index", "docker-list"])
def test_gantry_reads_the_digest_the_registry_reports(registry, tag):
    url, _, tags = registry
    reported = httpx.head(
        f"{url}/v2/{REPOSITORY}/manifests/{tag}", headers={"Accept": ", ".join(MANIFEST_TYPES)}
    ).headers["Docker-Content-Digest"]
    assert reported == tags[tag]  # what the PUT answered, the sha256 of the bytes pushed
    gantry = Registry(url)
    assert gantry.get_digest(f"{HOST}/{REPOSITORY}:{tag}") == reported
    assert gantry.get_digest(f"{HOST}/{REPOSITORY}", tag) == reported
    assert gantry.get_digest(f"{HOST}/{REPOSITORY}@{reported}") == reported


def test_a_missing_tag_or_repository_is_image_not_found(registry):
    gantry = Registry(registry[0])
    with pytest.raises(ImageNotFound):
        gantry.get_digest(f"{HOST}/{REPOSITORY}:never-pushed")
    with pytest.raises(ImageNotFound):
        gantry.get_digest(f"{HOST}/nemo-prod/registry/nobody:v1")
    with pytest.raises(ImageNotFound):
        gantry.get_digest(f"{HOST}/{REPOSITORY}@sha256:{'0' * 64}")


def _answer(response: httpx.Response) -> tuple:
    """What a client learns from a manifest answer: the status, then the type, digest and size
    served, or the error code (a HEAD has no body to tell it)."""
    if response.status_code == 200:
        headers = response.headers
        served = (headers["Content-Type"], headers["Docker-Content-Digest"])
        return 200, *served, headers["Content-Length"], response.content[:0]
    if response.request.method == "HEAD":
        return response.status_code, response.content
    return response.status_code, response.json()["errors"][0]["code"]


def test_the_sandbox_negotiates_accept_as_the_registry_does(registry, sandbox):
    """Every stored kind, by tag and by digest, for each single Accept type (and none): the
    same status and error code, or the same Content-Type and digest. One case is left out:
    a Docker v2 manifest asked for by tag without accepting it, which 2.8 (Debian's) tries to
    rewrite as schema 1 (400 here) and distribution v3, like the sandbox, serves as it is."""
    url, pusher, tags = registry
    for repository, reference, media_type, body in pusher.pushed:
        put = httpx.put(
            f"{sandbox.url}/v2/{repository}/manifests/{reference}",
            content=body,
            headers={"Content-Type": media_type},
        )
        assert put.status_code == 201
    accepts = ["", SCHEMA1, *MANIFEST_TYPES, "*/*"]
    mismatches = []
    with httpx.Client() as http:
        for tag, digest in tags.items():
            for reference in (tag, digest):
                for accept in accepts:
                    if tag == "docker-v2" and reference == tag and accept != real.DOCKER_MANIFEST:
                        continue
                    path = f"/v2/{REPOSITORY}/manifests/{reference}"
                    for method in ("GET", "HEAD"):
                        answers = [
                            _answer(http.request(method, base + path, headers={"Accept": accept}))
                            for base in (url, sandbox.url)
                        ]
                        if answers[0] != answers[1]:
                            mismatches.append(f"{method} {reference} Accept {accept!r}: {answers}")
    assert not mismatches, "\n".join(mismatches)
