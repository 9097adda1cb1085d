"""Compute API details: errors in the API's shape, templates, the dev VM, operations."""

import pytest
from google.api_core import exceptions
from google.cloud import compute_v1

from .clients import BACKEND_MIG, DEV, DEV_ZONE, PROD, REGION

BASE = "/compute/v1/projects"


def test_unknown_paths_answer_404_in_the_api_error_shape(sandbox, gcp, http):
    response = http.get(f"{sandbox.url}{BASE}/{PROD}/regions/{REGION}/forwardingRules/x")
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == 404 and error["errors"][0]["reason"] == "notFound"
    with pytest.raises(exceptions.NotFound, match="nope"):
        gcp.migs.get(project=PROD, region=REGION, instance_group_manager="nope")
    with pytest.raises(exceptions.NotFound):
        gcp.migs.get(project="someone-elses", region=REGION, instance_group_manager=BACKEND_MIG)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"versionz": []}, 'Unknown name "versionz"'),
        ({"updatePolicy": {"type": "SOMETIMES"}}, "resource.updatePolicy.type"),
        ({"updatePolicy": {"maxSurge": {"fixed": 1}}}, "number of zones"),
        ({"updatePolicy": {"maxSurge": {"fixed": 0}, "maxUnavailable": {"fixed": 0}}}, "both be 0"),
        ({"updatePolicy": {"replacementMethod": "RECREATE"}}, "RECREATE"),
        (
            {"versions": [{"instanceTemplate": "global/instanceTemplates/missing"}]},
            "does not exist",
        ),
        ({"versions": []}, "At least one version"),
        ({"targetSize": -1}, "resource.targetSize"),
    ],
)
def test_a_patch_with_bad_fields_gets_400(sandbox, body, message, http):
    url = f"{sandbox.url}{BASE}/{PROD}/regions/{REGION}/instanceGroupManagers/{BACKEND_MIG}"
    response = http.patch(url, json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == 400 and message in error["message"]
    assert error["errors"][0]["message"] == error["message"]


def test_two_versions_need_exactly_one_without_target_size(gcp):
    v1 = gcp.template_url("nemo-backend-mig-tmpl-v1")
    v2 = gcp.new_template("nemo-backend-mig-tmpl-v2")
    with pytest.raises(exceptions.BadRequest, match="Exactly one version"):
        gcp.patch(
            BACKEND_MIG,
            versions=[
                compute_v1.InstanceGroupManagerVersion(instance_template=v1),
                compute_v1.InstanceGroupManagerVersion(instance_template=v2),
            ],
        )


def test_patch_honours_the_fingerprint(gcp):
    mig = gcp.mig()
    with pytest.raises(exceptions.PreconditionFailed):
        gcp.patch(BACKEND_MIG, fingerprint="c3RhbGU=", target_size=3)
    gcp.patch(BACKEND_MIG, fingerprint=mig.fingerprint, target_size=3)
    assert gcp.mig().fingerprint != mig.fingerprint


def test_a_whole_resource_read_back_can_be_patched(gcp):
    """Output-only fields sent back (status, currentActions, ids, links) are ignored."""
    mig = gcp.mig()
    mig.target_size = 2
    gcp.wait(
        gcp.migs.patch_unary(
            project=PROD,
            region=REGION,
            instance_group_manager=BACKEND_MIG,
            instance_group_manager_resource=mig,
        )
    )
    assert gcp.until_stable().target_size == 2
    assert len(gcp.managed()) == 2


def test_instance_templates_insert_get_list_delete_and_conflicts(gcp):
    url = gcp.new_template("nemo-backend-mig-tmpl-v2")
    template = gcp.templates.get(
        project=PROD, region=REGION, instance_template="nemo-backend-mig-tmpl-v2"
    )
    assert template.self_link == url and template.region.endswith(f"/regions/{REGION}")
    assert template.properties.machine_type == "e2-standard-2"
    names = {t.name for t in gcp.templates.list(project=PROD, region=REGION)}
    assert {"nemo-backend-mig-tmpl-v1", "nemo-backend-mig-tmpl-v2"} <= names
    with pytest.raises(exceptions.Conflict):
        gcp.templates.insert_unary(project=PROD, region=REGION, instance_template_resource=template)
    with pytest.raises(exceptions.BadRequest, match="already being used"):
        gcp.templates.delete_unary(
            project=PROD, region=REGION, instance_template="nemo-backend-mig-tmpl-v1"
        )
    gcp.wait(
        gcp.templates.delete_unary(
            project=PROD, region=REGION, instance_template="nemo-backend-mig-tmpl-v2"
        )
    )
    with pytest.raises(exceptions.NotFound):
        gcp.templates.get(project=PROD, region=REGION, instance_template="nemo-backend-mig-tmpl-v2")


def test_global_instance_templates(gcp):
    source = gcp.templates.get(
        project=PROD, region=REGION, instance_template="nemo-frontend-mig-tmpl-v1"
    )
    template = compute_v1.InstanceTemplate(
        name="nemo-frontend-global", properties=source.properties
    )
    op = gcp.global_templates.insert_unary(project=PROD, instance_template_resource=template)
    assert not op.region and not op.zone
    gcp.wait(op)
    found = gcp.global_templates.get(project=PROD, instance_template="nemo-frontend-global")
    assert found.self_link.endswith("/global/instanceTemplates/nemo-frontend-global")
    gcp.patch("nemo-frontend-mig", instance_template=found.self_link)
    assert gcp.until_stable("nemo-frontend-mig").instance_template == found.self_link


def test_request_id_makes_a_retried_mutation_idempotent(gcp):
    request = compute_v1.ResizeRegionInstanceGroupManagerRequest(
        project=PROD,
        region=REGION,
        instance_group_manager=BACKEND_MIG,
        size=5,
        request_id="4f0c6bd9-7b9e-4c0b-9d35-1f4a3d1b2c3d",
    )
    first = gcp.migs.resize_unary(request=request)
    again = gcp.migs.resize_unary(request=request)
    assert again.name == first.name


def test_dev_vm_metadata_and_reset(sandbox_factory, http):
    sandbox = sandbox_factory(speed=0)  # a frozen clock: time moves only with advance()
    from .clients import Clients

    gcp = Clients(sandbox.url)
    health = f"{sandbox.url}/stack/dev/backend/actuator/health"
    vm = gcp.instances.get(project=DEV, zone=DEV_ZONE, instance="nemo-dev-vm")
    assert vm.status == "RUNNING"
    items = {i.key: i.value for i in vm.metadata.items}
    assert set(items) == {"frontend-image", "backend-image", "ai-server-image"}

    stale = compute_v1.Metadata(fingerprint="c3RhbGU=", items=vm.metadata.items)
    with pytest.raises(exceptions.PreconditionFailed):
        gcp.instances.set_metadata_unary(
            project=DEV, zone=DEV_ZONE, instance="nemo-dev-vm", metadata_resource=stale
        )
    image = items["backend-image"].split("@")[0] + "@sha256:" + "9" * 64
    metadata = compute_v1.Metadata(
        fingerprint=vm.metadata.fingerprint,
        items=[
            compute_v1.Items(key=k, value=image if k == "backend-image" else v)
            for k, v in items.items()
        ],
    )
    op = gcp.instances.set_metadata_unary(
        project=DEV, zone=DEV_ZONE, instance="nemo-dev-vm", metadata_resource=metadata
    )
    assert op.zone.endswith(DEV_ZONE) and op.status != compute_v1.Operation.Status.DONE
    sandbox.advance(1)
    assert (
        gcp.zone_operations.get(project=DEV, zone=DEV_ZONE, operation=op.name).status
        == compute_v1.Operation.Status.DONE
    )
    after = gcp.instances.get(project=DEV, zone=DEV_ZONE, instance="nemo-dev-vm")
    assert {i.key: i.value for i in after.metadata.items}["backend-image"] == image
    assert after.metadata.fingerprint != vm.metadata.fingerprint
    assert http.get(health).status_code == 503  # the backend container restarts
    assert http.get(f"{sandbox.url}/stack/dev/frontend/").status_code == 200
    sandbox.advance(10)
    assert http.get(health).json()["status"] == "UP"

    op = gcp.instances.reset_unary(project=DEV, zone=DEV_ZONE, instance="nemo-dev-vm")
    sandbox.advance(1)
    assert gcp.instances.get(project=DEV, zone=DEV_ZONE, instance="nemo-dev-vm").status == "RUNNING"
    assert http.get(health).status_code == 503  # rebooting
    sandbox.advance(20)
    assert http.get(health).status_code == 200


def test_mig_members_are_zonal_instances_too(gcp):
    member = gcp.managed()[0]
    zone, name = member.instance.split("/zones/")[1].split("/instances/")
    instance = gcp.instances.get(project=PROD, zone=zone, instance=name)
    assert instance.id == member.id and instance.status == "RUNNING"
    items = {i.key: i.value for i in instance.metadata.items}
    assert items["instance-template"] == member.version.instance_template
    assert items["backend-image"].startswith("asia-northeast3-docker.pkg.dev/nemo-prod/registry/")
    listed = {i.name for i in gcp.instances.list(project=PROD, zone=zone)}
    assert name in listed


def test_autoscalers_from_the_topology_are_readable_and_linked_from_their_mig(gcp):
    autoscalers = gcp.autoscalers
    mig = gcp.migs.get(project=PROD, region=REGION, instance_group_manager="nemo-frontend-mig")
    assert mig.status.autoscaler.endswith(
        f"/regions/{REGION}/autoscalers/nemo-frontend-mig-autoscaler"
    )
    scaler = autoscalers.get(project=PROD, region=REGION, autoscaler="nemo-frontend-mig-autoscaler")
    policy = scaler.autoscaling_policy
    assert (policy.min_num_replicas, policy.max_num_replicas) == (4, 8)
    assert policy.cpu_utilization.utilization_target == 0.6
    assert (scaler.recommended_size, scaler.status) == (4, "ACTIVE")
    assert scaler.target == mig.self_link
    assert [a.name for a in autoscalers.list(project=PROD, region=REGION)] == [scaler.name]
    backend = gcp.migs.get(project=PROD, region=REGION, instance_group_manager=BACKEND_MIG)
    assert backend.status.autoscaler == ""  # none in the topology, none here
    with pytest.raises(exceptions.NotFound):
        autoscalers.get(project=PROD, region=REGION, autoscaler="nope")
