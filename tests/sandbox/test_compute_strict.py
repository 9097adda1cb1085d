"""What real Compute Engine refuses, the sandbox refuses too: each a 400 in the API's error shape.

A refusal names the field, in the API's own words ('resource.updatePolicy.…') or, where the
discovery-document check in front of the handlers answers first, in proto field names
('instance_group_manager_resource.update_policy.…'); either is what Google's parsers say.
"""

import re

import pytest
from google.api_core import exceptions
from google.cloud import compute_v1

from .clients import BACKEND_MIG, PROD, REGION, insertable

BASE = f"/compute/v1/projects/{PROD}"
MIG = f"{BASE}/regions/{REGION}/instanceGroupManagers/{BACKEND_MIG}"
TEMPLATES = f"{BASE}/regions/{REGION}/instanceTemplates"
BACKEND_SERVICE = f"{BASE}/global/backendServices/nemo-backend-bes"
V1 = "nemo-backend-mig-tmpl-v1"


def snake(field: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", field).lower()


def assert_refused(response, field: str, why: str = "") -> str:
    """A 400 in Google's error shape that names `field` (and says `why`, when given)."""
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == 400 and error["status"] == "INVALID_ARGUMENT"
    assert error["errors"][0]["reason"] in ("invalid", "badRequest")
    message = error["message"]
    assert field in message or snake(field) in message, message
    assert why in message, message
    return message


def test_most_disruptive_action_below_minimal_action_is_refused(sandbox, http):
    policy = {"minimalAction": "REPLACE", "mostDisruptiveAllowedAction": "RESTART"}
    response = http.patch(f"{sandbox.url}{MIG}", json={"updatePolicy": policy})
    assert_refused(response, "updatePolicy.mostDisruptiveAllowedAction", "minimalAction")
    # The seeded minimalAction is REPLACE: lowering only the ceiling is refused as well.
    only_most = {"updatePolicy": {"mostDisruptiveAllowedAction": "REFRESH"}}
    assert_refused(http.patch(f"{sandbox.url}{MIG}", json=only_most), "mostDisruptiveAllowedAction")
    both = {"minimalAction": "RESTART", "mostDisruptiveAllowedAction": "RESTART"}
    assert http.patch(f"{sandbox.url}{MIG}", json={"updatePolicy": both}).status_code == 200


def test_most_disruptive_action_below_what_the_update_needs_is_refused(sandbox, gcp, http):
    """A new boot image needs REPLACE; a metadata-only change is done with REFRESH."""
    source = gcp.templates.get(project=PROD, region=REGION, instance_template=V1)
    properties = insertable(source.properties)
    properties.disks[0].initialize_params.source_image = "projects/cos-cloud/global/images/cos-117"
    op = gcp.templates.insert_unary(
        project=PROD,
        region=REGION,
        instance_template_resource=compute_v1.InstanceTemplate(
            name="nemo-backend-mig-tmpl-newdisk", properties=properties
        ),
    )
    gcp.wait(op)
    restart = {
        "type": "PROACTIVE",
        "minimalAction": "RESTART",
        "mostDisruptiveAllowedAction": "RESTART",
    }
    body = {
        "versions": [{"instanceTemplate": gcp.template_url("nemo-backend-mig-tmpl-newdisk")}],
        "updatePolicy": restart,
    }
    message = assert_refused(
        http.patch(f"{sandbox.url}{MIG}", json=body), "mostDisruptiveAllowedAction", "REPLACE"
    )
    assert "nemo-backend-mig-tmpl-newdisk" in message
    assert gcp.mig().versions[0].instance_template.endswith(V1)

    metadata_only = gcp.new_template("nemo-backend-mig-tmpl-v2")
    refresh = restart | {"minimalAction": "REFRESH", "mostDisruptiveAllowedAction": "REFRESH"}
    body = {"versions": [{"instanceTemplate": metadata_only}], "updatePolicy": refresh}
    assert http.patch(f"{sandbox.url}{MIG}", json=body).status_code == 200


@pytest.mark.parametrize("shape", ["SIDEWAYS", "even", ""])
def test_an_unknown_distribution_target_shape_is_refused(sandbox, http, shape):
    body = {"distributionPolicy": {"targetShape": shape}}
    assert_refused(http.patch(f"{sandbox.url}{MIG}", json=body), "distributionPolicy.targetShape")


def test_the_four_distribution_target_shapes_are_accepted(gcp):
    for shape in ("BALANCED", "ANY", "ANY_SINGLE_ZONE", "EVEN"):
        gcp.patch(
            BACKEND_MIG, distribution_policy=compute_v1.DistributionPolicy(target_shape=shape)
        )
        assert gcp.mig().distribution_policy.target_shape == shape


def test_a_single_version_with_a_target_size_is_refused(sandbox, gcp, http):
    version = {"instanceTemplate": gcp.template_url(V1), "targetSize": {"fixed": 2}}
    response = http.patch(f"{sandbox.url}{MIG}", json={"versions": [version]})
    assert_refused(response, "versions[0].targetSize")
    with pytest.raises(exceptions.BadRequest, match="targetSize"):
        gcp.patch(
            BACKEND_MIG,
            versions=[
                compute_v1.InstanceGroupManagerVersion(
                    instance_template=gcp.template_url(V1),
                    target_size=compute_v1.FixedOrPercent(percent=50),
                )
            ],
        )


@pytest.mark.parametrize("delay", [-1, 3601, 1.5, "soon", True])
def test_an_autohealing_initial_delay_outside_0_to_3600_seconds_is_refused(sandbox, http, delay):
    check = "https://www.googleapis.com/compute/v1/projects/nemo-prod/global/healthChecks/hc"
    body = {"autoHealingPolicies": [{"healthCheck": check, "initialDelaySec": delay}]}
    response = http.patch(f"{sandbox.url}{MIG}", json=body)
    assert_refused(response, "autoHealingPolicies[0].initialDelaySec")


def test_an_autohealing_initial_delay_in_range_is_accepted(gcp):
    check = "https://www.googleapis.com/compute/v1/projects/nemo-prod/global/healthChecks/hc"
    for delay in (0, 3600):
        policy = compute_v1.InstanceGroupManagerAutoHealingPolicy(
            health_check=check, initial_delay_sec=delay
        )
        gcp.patch(BACKEND_MIG, auto_healing_policies=[policy])
        assert gcp.mig().auto_healing_policies[0].initial_delay_sec == delay


@pytest.mark.parametrize("protocol", ["HTTP", "HTTPS", "HTTP2"])
def test_connection_balancing_on_an_http_backend_service_is_refused(sandbox, http, protocol):
    service = http.get(f"{sandbox.url}{BACKEND_SERVICE}").json()
    backends = [b | {"balancingMode": "CONNECTION"} for b in service["backends"]]
    body = {"fingerprint": service["fingerprint"], "protocol": protocol, "backends": backends}
    response = http.patch(f"{sandbox.url}{BACKEND_SERVICE}", json=body)
    assert_refused(response, "backends[0].balancingMode", "CONNECTION")
    assert http.get(f"{sandbox.url}{BACKEND_SERVICE}").json() == service


def test_connection_balancing_is_for_tcp_backend_services(sandbox, http):
    service = http.get(f"{sandbox.url}{BACKEND_SERVICE}").json()
    backends = [b | {"balancingMode": "CONNECTION"} for b in service["backends"]]
    body = {"fingerprint": service["fingerprint"], "protocol": "TCP", "backends": backends}
    assert http.patch(f"{sandbox.url}{BACKEND_SERVICE}", json=body).status_code == 200
    # ... and a later switch back to HTTP with those backends is refused.
    sandbox.advance(2)
    service = http.get(f"{sandbox.url}{BACKEND_SERVICE}").json()
    assert service["backends"][0]["balancingMode"] == "CONNECTION"
    body = {"fingerprint": service["fingerprint"], "protocol": "HTTP"}
    response = http.patch(f"{sandbox.url}{BACKEND_SERVICE}", json=body)
    assert_refused(response, "backends[0].balancingMode")


def test_a_seeded_template_reads_back_with_the_fields_gcp_fills_in(sandbox, http):
    template = http.get(f"{sandbox.url}{TEMPLATES}/{V1}").json()
    properties = template["properties"]
    disk = properties["disks"][0]
    assert (disk["index"], disk["kind"]) == (0, "compute#attachedDisk")
    assert disk["deviceName"] == "persistent-disk-0"
    interface = properties["networkInterfaces"][0]
    assert (interface["name"], interface["kind"]) == ("nic0", "compute#networkInterface")
    assert properties["metadata"]["kind"] == "compute#metadata"
    assert properties["metadata"]["fingerprint"]


def test_a_template_copied_without_stripping_output_only_fields_is_refused(sandbox, gcp, http):
    source = gcp.templates.get(project=PROD, region=REGION, instance_template=V1)
    copy = compute_v1.InstanceTemplate(
        name="nemo-backend-mig-tmpl-copy", properties=source.properties
    )
    with pytest.raises(exceptions.BadRequest, match="output only"):
        gcp.templates.insert_unary(project=PROD, region=REGION, instance_template_resource=copy)
    with pytest.raises(exceptions.NotFound):
        gcp.templates.get(project=PROD, region=REGION, instance_template=copy.name)
    copy.properties = insertable(source.properties)
    gcp.wait(
        gcp.templates.insert_unary(project=PROD, region=REGION, instance_template_resource=copy)
    )
    assert gcp.templates.get(project=PROD, region=REGION, instance_template=copy.name).name


@pytest.mark.parametrize(
    ("part", "field", "value"),
    [
        ("disks", "architecture", "X86_64"),
        ("disks", "index", 0),
        ("disks", "kind", "compute#attachedDisk"),
        ("disks", "licenses", ["projects/cos-cloud/global/licenses/cos"]),
        ("disks", "savedState", "PRESERVED"),
        ("disks", "shieldedInstanceInitialState", {"pk": {"content": "AA=="}}),
        ("networkInterfaces", "ipv6AccessType", "EXTERNAL"),
        ("networkInterfaces", "kind", "compute#networkInterface"),
        ("networkInterfaces", "name", "nic0"),
        ("metadata", "kind", "compute#metadata"),
    ],
)
def test_each_output_only_template_field_is_refused(sandbox, http, part, field, value):
    properties = {
        "machineType": "e2-medium",
        "disks": [
            {"boot": True, "initializeParams": {"sourceImage": "projects/x/global/images/y"}}
        ],
        "networkInterfaces": [{"network": "global/networks/default"}],
        "metadata": {"items": []},
    }
    target = properties["metadata"] if part == "metadata" else properties[part][0]
    target[field] = value
    where = f"properties.{part}" + ("" if part == "metadata" else "[0]") + f".{field}"
    body = {"name": "nemo-backend-mig-tmpl-bad", "properties": properties}
    assert_refused(http.post(f"{sandbox.url}{TEMPLATES}", json=body), where, "output only")
    del target[field]
    assert http.post(f"{sandbox.url}{TEMPLATES}", json=body).status_code == 200
