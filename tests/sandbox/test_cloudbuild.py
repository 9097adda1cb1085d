"""Cloud Build through google-cloud-build: builds copy images on the sandbox registry."""

import time

import pytest
from google.cloud.devtools import cloudbuild_v1

DEV_IMAGE = "asia-northeast3-docker.pkg.dev/nemo-dev/registry/backend"
PROD_IMAGE = "asia-northeast3-docker.pkg.dev/nemo-prod/registry/backend"
Status = cloudbuild_v1.Build.Status


def digest(http, sandbox, repository: str, reference: str) -> str:
    response = http.head(f"{sandbox.url}/v2/{repository}/manifests/{reference}")
    assert response.status_code == 200, response.text
    return response.headers["Docker-Content-Digest"]


def finished(gcp, project: str, build_id: str, timeout: float = 5.0) -> cloudbuild_v1.Build:
    deadline = time.monotonic() + timeout
    while True:
        build = gcp.builds.get_build(project_id=project, id=build_id)
        if build.status not in (Status.QUEUED, Status.WORKING):
            return build
        assert time.monotonic() < deadline
        time.sleep(0.002)


def test_gcrane_copy_promotes_a_dev_image_to_prod_with_the_same_digest(gcp, sandbox, http):
    source = digest(http, sandbox, "nemo-dev/registry/backend", "dev-latest")
    step = cloudbuild_v1.BuildStep(
        name="gcr.io/go-containerregistry/gcrane",
        args=["cp", f"{DEV_IMAGE}@{source}", f"{PROD_IMAGE}:prod-v2"],
    )
    lro = gcp.builds.create_build(
        project_id="nemo-prod",
        build=cloudbuild_v1.Build(steps=[step], images=[f"{PROD_IMAGE}:prod-v2"]),
    )
    build_id = lro.metadata.build.id
    assert lro.metadata.build.status == Status.QUEUED
    build = finished(gcp, "nemo-prod", build_id)

    assert build.status == Status.SUCCESS
    assert build.steps[0].status == Status.SUCCESS
    assert build.start_time and build.finish_time >= build.start_time
    assert [(i.name, i.digest) for i in build.results.images] == [(f"{PROD_IMAGE}:prod-v2", source)]
    assert digest(http, sandbox, "nemo-prod/registry/backend", "prod-v2") == source
    assert digest(http, sandbox, "nemo-prod/registry/backend", "prod-v1") != source
    tags = http.get(f"{sandbox.url}/v2/nemo-prod/registry/backend/tags/list").json()["tags"]
    assert "prod-v2" in tags
    # The long-running operation reports the same build, finished, at /v1/operations/...
    assert lro.result(timeout=5).id == build_id


def test_docker_pull_tag_push(gcp, sandbox, http):
    source = digest(http, sandbox, "nemo-dev/registry/frontend", "dev-latest")
    docker = "gcr.io/cloud-builders/docker"
    steps = [
        {
            "name": docker,
            "args": ["pull", f"{DEV_IMAGE.replace('backend', 'frontend')}:dev-latest"],
        },
        {
            "name": docker,
            "args": ["tag", f"{DEV_IMAGE.replace('backend', 'frontend')}:dev-latest", "${_DST}"],
        },
        {"name": docker, "args": ["push", "${_DST}"]},
    ]
    lro = gcp.builds.create_build(
        project_id="nemo-prod",
        build=cloudbuild_v1.Build(
            steps=[cloudbuild_v1.BuildStep(s) for s in steps],
            substitutions={"_DST": f"{PROD_IMAGE.replace('backend', 'frontend')}:prod-v7"},
        ),
    )
    build = finished(gcp, "nemo-prod", lro.metadata.build.id)
    assert build.status == Status.SUCCESS, build.status_detail
    assert digest(http, sandbox, "nemo-prod/registry/frontend", "prod-v7") == source


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        ({"name": "gcr.io/cloud-builders/npm", "args": ["test"]}, "does not understand this step"),
        (
            {
                "name": "gcr.io/go-containerregistry/gcrane",
                "args": ["cp", f"{DEV_IMAGE}:no-such-tag", f"{PROD_IMAGE}:x"],
            },
            "MANIFEST_UNKNOWN",
        ),
    ],
)
def test_a_failing_step_fails_the_build_with_a_clear_log_line(gcp, sandbox, http, step, expected):
    lro = gcp.builds.create_build(
        project_id="nemo-dev", build=cloudbuild_v1.Build(steps=[cloudbuild_v1.BuildStep(step)])
    )
    build = finished(gcp, "nemo-dev", lro.metadata.build.id)
    assert build.status == Status.FAILURE
    assert build.steps[0].status == Status.FAILURE
    assert build.failure_info.type_ == cloudbuild_v1.Build.FailureInfo.FailureType.USER_BUILD_STEP
    assert expected in build.failure_info.detail and expected in build.status_detail
    log = http.get(build.log_url)
    assert log.status_code == 200
    assert any(
        line.startswith("ERROR: build step 0") and expected in line
        for line in log.text.splitlines()
    )
    with pytest.raises(Exception, match="Build failed"):
        lro.result(timeout=5)


def test_unknown_build_is_not_found(gcp):
    from google.api_core import exceptions

    with pytest.raises(exceptions.NotFound):
        gcp.builds.get_build(project_id="nemo-dev", id="0000")


def test_regional_builds(gcp):
    step = cloudbuild_v1.BuildStep(
        name="gcr.io/go-containerregistry/gcrane",
        args=["cp", f"{DEV_IMAGE}:dev-v1", f"{PROD_IMAGE}:prod-v3"],
    )
    parent = "projects/nemo-prod/locations/asia-northeast3"
    lro = gcp.builds.create_build(
        request={"parent": parent, "project_id": "nemo-prod", "build": {"steps": [step]}}
    )
    build = lro.metadata.build
    assert build.name == f"{parent}/builds/{build.id}"
    assert lro.result(timeout=5).status == Status.SUCCESS
    assert gcp.builds.get_build(name=build.name).status == Status.SUCCESS
