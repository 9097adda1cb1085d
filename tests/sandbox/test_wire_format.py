"""Every JSON body the sandbox returns parses strictly into the client libraries' messages:
no field the libraries would silently drop (json_format with ignore_unknown_fields=False)."""

import pytest
from google.cloud import compute_v1
from google.cloud.devtools import cloudbuild_v1
from google.longrunning import operations_pb2
from google.protobuf import json_format

P = "/compute/v1/projects/nemo-prod"
REGION = f"{P}/regions/asia-northeast3"


def strict(message_class, body: dict):
    pb = message_class.pb() if hasattr(message_class, "pb") else message_class
    return json_format.ParseDict(body, pb(), ignore_unknown_fields=False)


@pytest.mark.parametrize(
    ("method", "path", "message"),
    [
        (
            "GET",
            f"{REGION}/instanceGroupManagers/nemo-backend-mig",
            compute_v1.InstanceGroupManager,
        ),
        ("GET", f"{REGION}/instanceGroupManagers", compute_v1.RegionInstanceGroupManagerList),
        (
            "POST",
            f"{REGION}/instanceGroupManagers/nemo-backend-mig/listManagedInstances",
            compute_v1.RegionInstanceGroupManagersListInstancesResponse,
        ),
        (
            "GET",
            f"{REGION}/instanceTemplates/nemo-backend-mig-tmpl-v1",
            compute_v1.InstanceTemplate,
        ),
        ("GET", f"{REGION}/instanceTemplates", compute_v1.InstanceTemplateList),
        ("GET", f"{P}/global/backendServices/nemo-ai-bes", compute_v1.BackendService),
        ("GET", f"{P}/global/backendServices", compute_v1.BackendServiceList),
        ("GET", f"{P}/zones/asia-northeast3-a/instances", compute_v1.InstanceList),
        (
            "GET",
            "/compute/v1/projects/nemo-dev/zones/asia-northeast3-a/instances/nemo-dev-vm",
            compute_v1.Instance,
        ),
    ],
)
def test_compute_resources(sandbox, http, method, path, message):
    response = http.request(method, f"{sandbox.url}{path}")
    assert response.status_code == 200, response.text
    strict(message, response.json())


def test_compute_operations_running_done_and_failed(sandbox, http):
    sandbox.inject_fault("operation_error", operationType="resize")
    resize = f"{sandbox.url}{REGION}/instanceGroupManagers/nemo-backend-mig/resize?size=3"
    op = http.post(resize).json()
    strict(compute_v1.Operation, op)
    sandbox.advance(2)
    done = http.get(f"{sandbox.url}{REGION}/operations/{op['name']}").json()
    parsed = strict(compute_v1.Operation, done)
    assert parsed.status == compute_v1.Operation.Status.DONE.value and parsed.error.errors
    error = http.get(f"{sandbox.url}{REGION}/instanceGroupManagers/nope")
    assert set(error.json()["error"]) <= {"code", "message", "errors", "status", "details"}


def test_mid_rollout_mig_and_managed_instances(sandbox, http, gcp):
    url = gcp.new_template("nemo-backend-mig-tmpl-v2")
    gcp.patch(
        "nemo-backend-mig",
        versions=[
            compute_v1.InstanceGroupManagerVersion(
                instance_template=url, name="canary", target_size=compute_v1.FixedOrPercent(fixed=1)
            ),
            compute_v1.InstanceGroupManagerVersion(
                instance_template=gcp.template_url("nemo-backend-mig-tmpl-v1"), name="stable"
            ),
        ],
    )
    mig = http.get(f"{sandbox.url}{REGION}/instanceGroupManagers/nemo-backend-mig").json()
    strict(compute_v1.InstanceGroupManager, mig)
    managed = http.post(
        f"{sandbox.url}{REGION}/instanceGroupManagers/nemo-backend-mig/listManagedInstances"
    ).json()
    strict(compute_v1.RegionInstanceGroupManagersListInstancesResponse, managed)


def test_cloud_build_build_and_operation(sandbox, http):
    body = {
        "steps": [
            {
                "name": "gcr.io/go-containerregistry/gcrane",
                "args": [
                    "cp",
                    "asia-northeast3-docker.pkg.dev/nemo-dev/registry/backend:dev-v1",
                    "asia-northeast3-docker.pkg.dev/nemo-prod/registry/backend:prod-v9",
                ],
            }
        ],
        "images": ["asia-northeast3-docker.pkg.dev/nemo-prod/registry/backend:prod-v9"],
    }
    created = http.post(f"{sandbox.url}/v1/projects/nemo-prod/builds", json=body).json()
    strict(operations_pb2.Operation, created)
    sandbox.advance(30)
    build_id = created["metadata"]["build"]["id"]
    build = http.get(f"{sandbox.url}/v1/projects/nemo-prod/builds/{build_id}").json()
    assert strict(cloudbuild_v1.Build, build).results.images[0].digest.startswith("sha256:")
    done = http.get(f"{sandbox.url}/v1/{created['name']}").json()
    assert strict(operations_pb2.Operation, done).done
    listed = http.get(f"{sandbox.url}/v1/projects/nemo-prod/builds").json()
    strict(cloudbuild_v1.ListBuildsResponse, listed)
