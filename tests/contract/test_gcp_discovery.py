"""The sandbox holds Compute and Cloud Build calls to Google's discovery documents (bundled in
google-api-python-client): request bodies and query parameters as strictly as Google's JSON
parser, answers to the method's response schema."""

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from sandbox import discovery
from tests.sandbox.clients import BACKEND_MIG, PROD, REGION

pytest.importorskip("googleapiclient", reason="google-api-python-client (requirements-dev.txt)")

COMPUTE = f"/compute/v1/projects/{PROD}"
MIG = f"{COMPUTE}/regions/{REGION}/instanceGroupManagers/{BACKEND_MIG}"
TEMPLATES = f"{COMPUTE}/regions/{REGION}/instanceTemplates"
BUILDS = f"/v1/projects/{PROD}/builds"
DEV_IMAGE = "asia-northeast3-docker.pkg.dev/nemo-dev/registry/backend"
PROD_IMAGE = "asia-northeast3-docker.pkg.dev/nemo-prod/registry/backend"


@pytest.fixture
def http(sandbox):
    with httpx.Client(base_url=sandbox.url, timeout=5) as client:
        yield client


def refused(response: httpx.Response, *fragments: str) -> str:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == 400 and error["status"] == "INVALID_ARGUMENT"
    assert error["errors"][0]["reason"] == "invalid"
    for fragment in fragments:
        assert fragment in error["message"]
    return error["message"]


def done(http, operation: dict) -> dict:
    deadline = time.monotonic() + 5
    while operation["status"] != "DONE":
        assert time.monotonic() < deadline, operation
        operation = http.get(
            "/compute/v1" + operation["selfLink"].split("/compute/v1", 1)[1]
        ).json()
    return operation


def template_body(name: str) -> dict:
    """A new template's body, as a client writes it (no field GCP fills in)."""
    network = f"https://www.googleapis.com/compute/v1/projects/{PROD}/global/networks/default"
    disk = {
        "boot": True,
        "autoDelete": True,
        "initializeParams": {"sourceImage": "projects/cos-cloud/global/images/family/cos-stable"},
    }
    return {
        "name": name,
        "properties": {
            "machineType": "e2-small",
            "disks": [disk],
            "networkInterfaces": [{"network": network}],
            "metadata": {"items": [{"key": "backend-image", "value": f"{PROD_IMAGE}:x"}]},
        },
    }


# --- requests ------------------------------------------------------------------------------------


def test_an_unknown_field_in_a_mig_patch(http):
    message = refused(http.patch(MIG, json={"targetSize": 4, "bogusField": 1}))
    assert message == (
        'Invalid JSON payload received. Unknown name "bogusField" at '
        "'instance_group_manager_resource': Cannot find field."
    )
    refused(
        http.patch(MIG, json={"updatePolicy": {"maxSurge": {"fixed": 2, "fixd": 1}}}),
        "Unknown name \"fixd\" at 'instance_group_manager_resource.update_policy.max_surge'",
    )


def test_wrong_json_types_in_a_mig_patch(http):
    refused(
        http.patch(MIG, json={"description": {"text": "an object"}}),
        "Invalid value at 'instance_group_manager_resource' (description), "
        "Starting an object on a scalar field",
    )
    refused(
        http.patch(MIG, json={"targetSize": "four"}),
        "Invalid value at 'instance_group_manager_resource.target_size' (TYPE_INT32), \"four\"",
    )
    refused(
        http.patch(MIG, json={"description": ["a", "list"]}),
        "Unknown name \"description\" at 'instance_group_manager_resource': "
        "Proto field is not repeating, cannot start list.",
    )
    refused(
        http.patch(MIG, json={"updatePolicy": {"maxSurge": 3}}),
        "(type.googleapis.com/google.cloud.compute.v1.FixedOrPercent), 3",
    )


def test_a_bad_enum_in_a_mig_patch(http):
    refused(
        http.patch(MIG, json={"updatePolicy": {"type": "SOMETIMES"}}),
        "Invalid value for field 'resource.updatePolicy.type': 'SOMETIMES'.",
        "OPPORTUNISTIC",
    )
    # Compute's protos declare enums as strings: a number is a type error, not an enum number
    refused(http.patch(MIG, json={"updatePolicy": {"type": 1}}), "(TYPE_STRING), 1")


def test_the_same_mig_patch_with_a_valid_body_succeeds(http):
    body = {
        "updatePolicy": {"type": "OPPORTUNISTIC", "minimalAction": "REPLACE"},
        "description": "valid",
    }
    response = http.patch(MIG, json=body)
    assert response.status_code == 200, response.text
    done(http, response.json())
    mig = http.get(MIG).json()
    assert mig["updatePolicy"]["type"] == "OPPORTUNISTIC" and mig["description"] == "valid"


def test_query_parameters_a_bad_type_is_400_an_unknown_one_is_ignored(http):
    refused(http.post(f"{MIG}/resize", params={"size": "many"}), "at 'size' (TYPE_INT32)")
    migs = f"{COMPUTE}/regions/{REGION}/instanceGroupManagers"
    refused(http.get(migs, params={"maxResults": "-1"}), "at 'max_results' (TYPE_UINT32)")
    refused(http.get(migs, params={"prettyPrint": "maybe"}), "at 'pretty_print' (TYPE_BOOL)")
    refused(http.get(migs, params={"alt": "xml"}), "Invalid value for field 'alt': 'xml'.")
    assert http.get(migs, params={"notAParameter": "x", "prettyPrint": "true"}).is_success


def test_output_only_fields_are_ignored_as_google_does(http):
    """google/api/field_behavior.proto: the server must ignore an OUTPUT_ONLY field in a request
    and must not fail because of it."""
    body = template_body("nemo-backend-mig-tmpl-oo") | {
        "creationTimestamp": "2001-01-01T00:00:00.000Z"
    }
    response = http.post(TEMPLATES, json=body)
    assert response.status_code == 200, response.text
    done(http, response.json())
    stored = http.get(f"{TEMPLATES}/nemo-backend-mig-tmpl-oo").json()
    assert stored["creationTimestamp"] != "2001-01-01T00:00:00.000Z"


def test_a_strict_sandbox_refuses_output_only_fields(sandbox_factory):
    box = sandbox_factory(strict_output_only=True)
    with httpx.Client(base_url=box.url, timeout=5) as http:
        body = template_body("nemo-backend-mig-tmpl-oo")
        refused(
            http.post(TEMPLATES, json=body | {"creationTimestamp": "2001-01-01T00:00:00Z"}),
            "Invalid value for field 'resource.creationTimestamp': the field is output only.",
        )
        disks = [body["properties"]["disks"][0] | {"licenses": ["projects/x/global/licenses/y"]}]
        with_licenses = body | {"properties": body["properties"] | {"disks": disks}}
        refused(
            http.post(TEMPLATES, json=with_licenses),
            "'resource.properties.disks[0].licenses': the field is output only.",
        )
        assert http.post(TEMPLATES, json=body).status_code == 200


def build_body(http) -> dict:
    source = http.head("/v2/nemo-dev/registry/backend/manifests/dev-latest")
    step = {
        "name": "gcr.io/go-containerregistry/gcrane",
        "args": ["cp", f"{DEV_IMAGE}@{source.headers['Docker-Content-Digest']}", f"{PROD_IMAGE}:x"],
    }
    return {"steps": [step], "timeout": "600s"}


def test_a_cloud_build_build_with_an_unknown_field(http):
    body = build_body(http)
    message = refused(http.post(BUILDS, json=body | {"frobnicate": True}))
    assert message == (
        "Invalid JSON payload received. Unknown name \"frobnicate\" at 'build': Cannot find field."
    )
    body["steps"][0]["bogus"] = 1
    refused(http.post(BUILDS, json=body), "Unknown name \"bogus\" at 'build.steps[0]'")


def test_cloud_build_types_enums_and_a_valid_build(http):
    body = build_body(http)
    refused(
        http.post(BUILDS, json=body | {"timeout": "ten minutes"}),
        '(type.googleapis.com/google.protobuf.Duration), "ten minutes"',
    )
    refused(
        http.post(BUILDS, json=body | {"options": {"logging": "SOMETIMES"}}),
        "Invalid value at 'build.options.logging' (TYPE_ENUM), \"SOMETIMES\"",
    )
    response = http.post(BUILDS, json=body)
    assert response.status_code == 200, response.text
    assert response.json()["metadata"]["build"]["status"] == "QUEUED"


def test_what_googles_parser_accepts_is_accepted():
    """int32 as a string, int64 as a number, proto field names, "true", lone values for
    repeated fields, null, Cloud Build's enum numbers."""
    patch = discovery.find("PATCH", MIG)
    assert patch is not None and patch.id == "compute.regionInstanceGroupManagers.patch"
    body = {
        "targetSize": "3",
        "target_pools": "one-pool",
        "description": None,
        "status": {"isStable": "true"},
        "autoHealingPolicies": [{"initialDelaySec": 300.0}],
    }
    assert discovery.request_problems(patch, {}, body) == []
    insert = discovery.find("POST", TEMPLATES)
    disk = {"initializeParams": {"diskSizeGb": 20}, "boot": "yes"}
    assert discovery.request_problems(insert, {}, {"properties": {"disks": [disk]}}) == []
    create = discovery.find("POST", BUILDS)
    assert discovery.request_problems(create, {}, {"options": {"logging": 1}}) == []
    assert discovery.request_problems(patch, {}, {"targetSize": 2**31}) == [
        "Invalid value at 'instance_group_manager_resource.target_size' (TYPE_INT32), 2147483648"
    ]


def test_only_paths_the_documents_know_are_checked():
    assert discovery.find("GET", "/v1/operations/build/p/YWJj").id == "cloudbuild.operations.get"
    assert discovery.find("POST", f"{BUILDS}/abc:cancel").id == "cloudbuild.projects.builds.cancel"
    assert discovery.find("POST", f"{MIG}/listManagedInstances").id.endswith(
        "regionInstanceGroupManagers.listManagedInstances"
    )
    for path in ("/v2/nemo-prod/registry/backend/tags/list", "/_sandbox/faults", "/github/app"):
        assert discovery.find("POST", path) is None and discovery.find("GET", path) is None


# --- responses ----------------------------------------------------------------------------------


def test_a_sample_of_real_answers_matches_the_response_schemas(sandbox, http):
    checked = {}

    def check(method: str, path: str, response: httpx.Response) -> dict:
        assert response.is_success, response.text
        discovery.validate_response(method, path, response.json())
        checked[discovery.find(method, path).id] = True
        return response.json()

    check("GET", MIG, http.get(MIG))
    check("POST", f"{MIG}/listManagedInstances", http.post(f"{MIG}/listManagedInstances"))
    template = f"{TEMPLATES}/nemo-backend-mig-tmpl-v1"
    check("GET", template, http.get(template))
    operation = check("POST", f"{MIG}/resize", http.post(f"{MIG}/resize", params={"size": 3}))
    path = f"{COMPUTE}/regions/{REGION}/operations/{operation['name']}"
    check("GET", path, http.get(path))
    sandbox.advance(60)
    check("POST", f"{path}/wait", http.post(f"{path}/wait"))

    lro = check("POST", BUILDS, http.post(BUILDS, json=build_body(http)))
    build = f"{BUILDS}/{lro['metadata']['build']['id']}"
    check("GET", build, http.get(build))
    sandbox.advance(60)
    finished = check("GET", build, http.get(build))
    assert finished["status"] == "SUCCESS"
    check("GET", f"/v1/{lro['name']}", http.get(f"/v1/{lro['name']}"))
    assert len(checked) == 9


def test_response_problems_name_the_field():
    mig = {"kind": "compute#instanceGroupManager", "name": "m", "targetSize": 3}
    discovery.validate_response("GET", MIG, mig)
    problems = discovery.response_problems(
        "GET",
        MIG,
        mig
        | {
            "targetSize": "3",  # Google writes an int32 as a number…
            "id": 5,  # …and a uint64 as a string
            "updatePolicy": {"type": "SOMETIMES"},
            "status": {"isStable": True, "bogus": 1},
            "description": None,
        },
    )
    assert problems == [
        'compute.regionInstanceGroupManagers.get: $.targetSize: "3" is not TYPE_INT32 as Google '
        "writes it",
        "compute.regionInstanceGroupManagers.get: $.id: 5 is not TYPE_UINT64 as Google writes it",
        'compute.regionInstanceGroupManagers.get: $.updatePolicy.type: "SOMETIMES" is not one of '
        "['OPPORTUNISTIC', 'PROACTIVE']",
        "compute.regionInstanceGroupManagers.get: $.status.bogus: unknown field",
        "compute.regionInstanceGroupManagers.get: $.description: null (Google leaves unset "
        "fields out)",
    ]
    # an Any is checked as the message its @type names
    operation = {
        "name": "operations/build/p/YWJj",
        "metadata": {
            "@type": "type.googleapis.com/google.devtools.cloudbuild.v1.BuildOperationMetadata",
            "build": {"id": "abc", "status": "DONE-ISH"},
        },
    }
    with pytest.raises(AssertionError, match=r"\$\.metadata\.build\.status"):
        discovery.validate_response("GET", "/v1/operations/build/p/YWJj", operation)


def test_recorded_answers_are_checked_once_each_and_only_when_2xx(sandbox, http):
    http.get(MIG)
    http.patch(MIG, json={"bogus": 1})
    calls = list(sandbox.gcp_calls)
    assert [(c["method"], c["status"]) for c in calls] == [("GET", 200), ("PATCH", 400)]
    assert json.loads(calls[1]["body"]) == {"bogus": 1}
    assert discovery.recorded_problems(calls) == []
    bad = dict(calls[0], response=json.dumps({"targetSize": "4"}).encode())
    refused_call = dict(calls[1], response=b'{"error": {"code": "x"}}')
    assert discovery.recorded_problems([bad, bad, refused_call]) == [
        'compute.regionInstanceGroupManagers.get: $.targetSize: "4" is not TYPE_INT32 as Google '
        f"writes it (in 1 answer(s), first GET {MIG})"
    ]


def test_without_google_api_python_client_the_sandbox_runs_unchecked(tmp_path: Path):
    script = f"""
import sys, httpx
sys.modules["googleapiclient"] = None  # as in the plain demo install
from sandbox.server import Sandbox
box = Sandbox(host="127.0.0.1", port=0).start()
migs = box.url + "{COMPUTE}/regions/{REGION}/instanceGroupManagers"
print(httpx.get(migs, params={{"prettyPrint": "maybe"}}).status_code)
print(httpx.patch(box.url + "{MIG}", json={{"bogusField": 1}}).status_code)
box.stop()
"""
    root = Path(__file__).resolve().parents[2]
    run = subprocess.run(
        [sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    # a bad query value passes unchecked; the handler still refuses the unknown field itself
    assert run.stdout.split() == ["200", "400"]
    assert run.stderr.count("google-api-python-client is not installed") == 1
