"""The Docker Registry v2 subset: seeded images, manifests by tag and digest, push."""

import hashlib
import json

import pytest

ENVIRONMENTS = {"prod": "nemo-prod", "dev": "nemo-dev"}
DEPLOYED = ["frontend", "backend", "ai-server"]


@pytest.mark.parametrize("env", ENVIRONMENTS)
@pytest.mark.parametrize("image", DEPLOYED)
def test_each_deployed_component_is_seeded_with_two_tags(sandbox, http, env, image):
    repository = f"{ENVIRONMENTS[env]}/registry/{image}"
    tags = http.get(f"{sandbox.url}/v2/{repository}/tags/list").json()
    assert tags == {"name": repository, "tags": [f"{env}-latest", f"{env}-v1"]}
    manifest = http.get(f"{sandbox.url}/v2/{repository}/manifests/{env}-v1")
    assert (
        manifest.headers["Content-Type"] == "application/vnd.docker.distribution.manifest.v2+json"
    )
    digest = "sha256:" + hashlib.sha256(manifest.content).hexdigest()
    assert manifest.headers["Docker-Content-Digest"] == digest
    by_digest = http.get(f"{sandbox.url}/v2/{repository}/manifests/{digest}")
    assert by_digest.content == manifest.content


def test_the_running_template_names_the_seeded_digest(sandbox, http):
    head = http.head(f"{sandbox.url}/v2/nemo-prod/registry/backend/manifests/prod-latest")
    assert head.content == b"" and int(head.headers["Content-Length"]) > 0
    template = http.get(
        f"{sandbox.url}/compute/v1/projects/nemo-prod/regions/asia-northeast3/"
        "instanceTemplates/nemo-backend-mig-tmpl-v1"
    ).json()
    image = template["properties"]["metadata"]["items"][0]["value"]
    assert image == (
        "asia-northeast3-docker.pkg.dev/nemo-prod/registry/backend@"
        + head.headers["Docker-Content-Digest"]
    )


def test_put_then_get_by_tag(sandbox, http):
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {},
            "layers": [],
        }
    ).encode()
    put = http.put(
        f"{sandbox.url}/v2/nemo-dev/registry/backend/manifests/abc123",
        content=manifest,
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
    )
    assert put.status_code == 201
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    assert put.headers["Docker-Content-Digest"] == digest
    assert put.headers["Location"] == f"/v2/nemo-dev/registry/backend/manifests/{digest}"
    got = http.get(f"{sandbox.url}/v2/nemo-dev/registry/backend/manifests/abc123")
    assert got.content == manifest and got.headers["Docker-Content-Digest"] == digest
    wrong = http.put(
        f"{sandbox.url}/v2/nemo-dev/registry/backend/manifests/sha256:{'0' * 64}",
        content=manifest,
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
    )
    assert wrong.status_code == 400 and wrong.json()["errors"][0]["code"] == "DIGEST_INVALID"


def test_unknown_manifests_and_repositories(sandbox, http):
    missing = http.get(f"{sandbox.url}/v2/nemo-prod/registry/backend/manifests/nope")
    assert missing.status_code == 404
    assert missing.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"
    assert (
        http.get(f"{sandbox.url}/v2/nobody/tags/list").json()["errors"][0]["code"] == "NAME_UNKNOWN"
    )
    assert (
        http.get(f"{sandbox.url}/v2/").headers["Docker-Distribution-API-Version"] == "registry/2.0"
    )


def test_control_api_pushes_a_fresh_image_like_ci(sandbox, http):
    image = "asia-northeast3-docker.pkg.dev/nemo-dev/registry/backend:" + "a" * 40
    pushed = http.post(f"{sandbox.url}/_sandbox/images", json={"image": image}).json()
    head = http.head(f"{sandbox.url}/v2/nemo-dev/registry/backend/manifests/{'a' * 40}")
    assert head.headers["Docker-Content-Digest"] == pushed["digest"]
