"""Compute API details: errors in the API's shape, templates, the dev VM, operations."""

import pytest
from google.api_core import exceptions
from google.cloud import compute_v1

from .clients import BACKEND_MIG, DEV, DEV_ZONE, PROD, REGION, insertable

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
    again = compute_v1.InstanceTemplate(
        name=template.name, properties=insertable(template.properties)
    )
    with pytest.raises(exceptions.Conflict):
        gcp.templates.insert_unary(project=PROD, region=REGION, instance_template_resource=again)
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
        name="nemo-frontend-global", properties=insertable(source.properties)
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


# --- backendServices.getHealth --------------------------------------------------------------


def group_health(gcp, group: str, service: str = "nemo-backend-bes") -> dict[str, str]:
    """instance name → the load balancer's healthState."""
    answer = gcp.backend_services.get_health(
        project=PROD,
        backend_service=service,
        resource_group_reference_resource=compute_v1.ResourceGroupReference(group=group),
    )
    return {s.instance.rsplit("/", 1)[-1]: s.health_state for s in answer.health_status}


def test_get_health_lists_every_instance_of_a_backend_group(gcp, http, sandbox):
    group = gcp.mig().instance_group
    url = f"{sandbox.url}{BASE}/{PROD}/global/backendServices/nemo-backend-bes/getHealth"
    answer = http.post(url, json={"group": group}).json()
    assert answer["kind"] == "compute#backendServiceGroupHealth"
    managed = {m.instance: m for m in gcp.managed()}
    assert {s["instance"] for s in answer["healthStatus"]} == set(managed)
    for status in answer["healthStatus"]:
        assert status["healthState"] == "HEALTHY"
        assert status["port"] == 8080  # the group's named port "http", the service's portName
        assert status["ipAddress"].startswith("10.")
    assert len({s["ipAddress"] for s in answer["healthStatus"]}) == 4


def test_get_health_follows_boot_health_check_and_deletion(sandbox_factory):
    sandbox = sandbox_factory(speed=0)
    from .clients import Clients

    gcp = Clients(sandbox.url)
    group = gcp.mig().instance_group
    before = group_health(gcp, group)
    gcp.migs.resize_unary(project=PROD, region=REGION, instance_group_manager=BACKEND_MIG, size=5)
    sandbox.advance(1)  # the resize is done; the fifth VM is provisioning
    (new,) = set(group_health(gcp, group)) - set(before)
    assert group_health(gcp, group)[new] == "UNHEALTHY"
    sandbox.advance(10)  # RUNNING, not yet passed its health check
    assert gcp.instances.get(project=PROD, zone=new_zone(gcp, new), instance=new).status == (
        "RUNNING"
    )
    assert group_health(gcp, group)[new] == "UNHEALTHY"
    sandbox.advance(10)
    assert set(group_health(gcp, group).values()) == {"HEALTHY"}

    gcp.migs.resize_unary(project=PROD, region=REGION, instance_group_manager=BACKEND_MIG, size=4)
    sandbox.advance(1)
    health = group_health(gcp, group)
    (going,) = [name for name, state in health.items() if state == "UNHEALTHY"]
    assert [m.current_action for m in gcp.managed() if m.name == going] == ["DELETING"]
    sandbox.advance(5)
    assert going not in group_health(gcp, group) and len(group_health(gcp, group)) == 4


def new_zone(gcp, name: str) -> str:
    return next(
        m.instance.split("/zones/")[1].split("/")[0] for m in gcp.managed() if m.name == name
    )


def test_get_health_needs_no_autohealing_policy(gcp, sandbox, http):
    """The load balancer's check is the backend service's, whatever the MIG autoheals with."""
    mig = gcp.mig()
    url = f"{sandbox.url}{BASE}/{PROD}/regions/{REGION}/instanceGroupManagers/{BACKEND_MIG}"
    assert http.patch(url, json={"autoHealingPolicies": []}).status_code == 200  # the library
    sandbox.advance(1)  # leaves an empty list out
    assert not gcp.mig().auto_healing_policies
    assert all(not m.instance_health for m in gcp.managed())
    assert set(group_health(gcp, mig.instance_group).values()) == {"HEALTHY"}
    sandbox.inject_fault("unhealthy", template="nemo-backend-mig-tmpl-bad")
    bad = gcp.new_template("nemo-backend-mig-tmpl-bad")
    gcp.patch(BACKEND_MIG, versions=[compute_v1.InstanceGroupManagerVersion(instance_template=bad)])
    sandbox.advance(120)
    health = group_health(gcp, mig.instance_group)
    on_bad = {m.name for m in gcp.managed() if m.version.instance_template == bad}
    assert on_bad and {health[name] for name in on_bad} == {"UNHEALTHY"}


def test_get_health_refuses_a_group_that_is_not_a_backend(gcp, http, sandbox):
    frontend = gcp.mig("nemo-frontend-mig").instance_group
    url = f"{sandbox.url}{BASE}/{PROD}/global/backendServices/nemo-backend-bes/getHealth"
    response = http.post(url, json={"group": frontend})
    assert response.status_code == 400
    error = response.json()["error"]
    assert "is not a backend of" in error["message"] and "nemo-frontend-mig" in error["message"]
    assert error["errors"][0]["reason"] == "invalid"
    with pytest.raises(exceptions.BadRequest, match="is not a backend of"):
        group_health(gcp, frontend)
    with pytest.raises(exceptions.NotFound):
        group_health(gcp, gcp.mig().instance_group, service="nope")


def test_regional_backend_service_get_health(gcp, sandbox):
    group = gcp.mig().instance_group
    path = f"regions/{REGION}/backendServices/nemo-backend-internal"
    with sandbox.world.lock:
        state = sandbox.world.projects[PROD]
        state.backend_services[path] = state.backend_services[
            "global/backendServices/nemo-backend-bes"
        ] | {
            "name": "nemo-backend-internal",
            "selfLink": f"https://www.googleapis.com/compute/v1/projects/{PROD}/{path}",
            "region": f"https://www.googleapis.com/compute/v1/projects/{PROD}/regions/{REGION}",
            "loadBalancingScheme": "INTERNAL_MANAGED",
        }
    answer = gcp.region_backend_services.get_health(
        project=PROD,
        region=REGION,
        backend_service="nemo-backend-internal",
        resource_group_reference_resource=compute_v1.ResourceGroupReference(group=group),
    )
    assert [s.health_state for s in answer.health_status] == ["HEALTHY"] * 4
    with pytest.raises(exceptions.NotFound):
        gcp.region_backend_services.get_health(
            project=PROD,
            region=REGION,
            backend_service="nemo-backend-bes",  # global, not regional
            resource_group_reference_resource=compute_v1.ResourceGroupReference(group=group),
        )


# --- paging ---------------------------------------------------------------------------------

MIGS = f"{BASE}/{PROD}/regions/{REGION}/instanceGroupManagers"


def test_list_managed_instances_pages_with_max_results(gcp, http, sandbox):
    gcp.wait(
        gcp.migs.resize_unary(
            project=PROD, region=REGION, instance_group_manager=BACKEND_MIG, size=7
        )
    )
    assert gcp.mig().list_managed_instances_results == "PAGINATED"
    request = {
        "project": PROD,
        "region": REGION,
        "instance_group_manager": BACKEND_MIG,
        "max_results": 3,
    }
    pages = list(gcp.migs.list_managed_instances(request=request).pages)
    assert [len(p.managed_instances) for p in pages] == [3, 3, 1]
    assert [bool(p.next_page_token) for p in pages] == [True, True, False]
    names = [m.name for p in pages for m in p.managed_instances]
    assert sorted(names) == sorted(m.name for m in gcp.managed()) and len(set(names)) == 7

    url = f"{sandbox.url}{MIGS}/{BACKEND_MIG}/listManagedInstances"
    first = http.post(url, params={"maxResults": 3}).json()
    other = http.get(f"{sandbox.url}{MIGS}", params={"maxResults": 1}).json()["nextPageToken"]
    for token in ("garbage", other):  # never issued, or issued for another listing
        response = http.post(url, params={"pageToken": token})
        assert response.status_code == 400 and "pageToken" in response.json()["error"]["message"]
    assert http.post(url, params={"maxResults": 501}).status_code == 400
    second = http.post(url, params={"maxResults": 3, "pageToken": first["nextPageToken"]}).json()
    assert {m["name"] for m in second["managedInstances"]}.isdisjoint(
        m["name"] for m in first["managedInstances"]
    )


def test_a_pageless_group_answers_every_instance_at_once(gcp, http, sandbox):
    """GCP's default PAGELESS ignores maxResults and pageToken (the discovery document)."""
    gcp.patch(BACKEND_MIG, list_managed_instances_results="PAGELESS")
    assert gcp.mig().list_managed_instances_results == "PAGELESS"
    url = f"{sandbox.url}{MIGS}/{BACKEND_MIG}/listManagedInstances"
    answer = http.post(url, params={"maxResults": 1, "pageToken": "ignored"}).json()
    assert len(answer["managedInstances"]) == 4 and "nextPageToken" not in answer
    bad = http.patch(
        f"{sandbox.url}{MIGS}/{BACKEND_MIG}", json={"listManagedInstancesResults": "X"}
    )
    assert bad.status_code == 400


@pytest.mark.parametrize(
    "path",
    [
        f"{BASE}/{PROD}/regions/{REGION}/instanceTemplates",
        f"{BASE}/{PROD}/global/backendServices",
        f"{BASE}/{PROD}/regions/{REGION}/instanceGroupManagers",
        f"{BASE}/{PROD}/zones/asia-northeast3-a/instances",
        f"{BASE}/{PROD}/regions/{REGION}/autoscalers",
    ],
)
def test_list_methods_page_with_max_results_and_page_token(sandbox, http, path):
    everything = http.get(f"{sandbox.url}{path}").json()
    assert "nextPageToken" not in everything  # fewer than 500
    names, params, pages = [], {"maxResults": 1}, 0
    while True:
        answer = http.get(f"{sandbox.url}{path}", params=params).json()
        pages += 1
        assert len(answer["items"]) == 1
        names += [item["name"] for item in answer["items"]]
        if "nextPageToken" not in answer:
            break
        params = {"maxResults": 1, "pageToken": answer["nextPageToken"]}
    assert names == [item["name"] for item in everything["items"]] and pages == len(names)
    for params in ({"pageToken": "bm9wZQ"}, {"maxResults": 501}, {"maxResults": "-1"}):
        response = http.get(f"{sandbox.url}{path}", params=params)
        assert response.status_code == 400, params
        assert response.json()["error"]["errors"][0]["reason"] == "invalid"


def test_the_client_library_follows_next_page_tokens(gcp):
    listed = gcp.templates.list(request={"project": PROD, "region": REGION, "max_results": 2})
    pages = list(listed.pages)
    assert len(pages) > 1 and all(len(p.items) <= 2 for p in pages)
    names = [t.name for p in pages for t in p.items]
    assert names == [t.name for t in gcp.templates.list(project=PROD, region=REGION)]


# --- operation types ------------------------------------------------------------------------


def test_operations_are_typed_as_gcp_types_them(gcp):
    """Older methods report their verb, newer ones the full method name (recorded answers)."""
    rigm = "compute.regionInstanceGroupManagers"
    source = gcp.templates.get(
        project=PROD, region=REGION, instance_template="nemo-backend-mig-tmpl-v1"
    )
    template = compute_v1.InstanceTemplate(name="t-ops", properties=insertable(source.properties))
    types = {}
    op = gcp.templates.insert_unary(
        project=PROD, region=REGION, instance_template_resource=template
    )
    types["regionInstanceTemplates.insert"] = gcp.wait(op).operation_type
    op = gcp.templates.delete_unary(project=PROD, region=REGION, instance_template="t-ops")
    types["regionInstanceTemplates.delete"] = gcp.wait(op).operation_type
    op = gcp.global_templates.insert_unary(project=PROD, instance_template_resource=template)
    types["instanceTemplates.insert"] = gcp.wait(op).operation_type
    op = gcp.global_templates.delete_unary(project=PROD, instance_template="t-ops")
    types["instanceTemplates.delete"] = gcp.wait(op).operation_type
    types["patch"] = gcp.patch(BACKEND_MIG, target_size=4).operation_type
    where = {"project": PROD, "region": REGION, "instance_group_manager": BACKEND_MIG}
    op = gcp.migs.resize_unary(**where, size=4)
    types["resize"] = gcp.wait(op).operation_type
    op = gcp.migs.set_instance_template_unary(
        **where,
        region_instance_group_managers_set_template_request_resource=(
            compute_v1.RegionInstanceGroupManagersSetTemplateRequest(
                instance_template=source.self_link
            )
        ),
    )
    types["setInstanceTemplate"] = gcp.wait(op).operation_type
    service = gcp.backend_services.get(project=PROD, backend_service="nemo-backend-bes")
    op = gcp.backend_services.patch_unary(
        project=PROD,
        backend_service="nemo-backend-bes",
        backend_service_resource=compute_v1.BackendService(
            fingerprint=service.fingerprint, timeout_sec=31
        ),
    )
    types["backendServices.patch"] = gcp.wait(op).operation_type
    vm = gcp.instances.get(project=DEV, zone=DEV_ZONE, instance="nemo-dev-vm")
    op = gcp.instances.set_metadata_unary(
        project=DEV, zone=DEV_ZONE, instance="nemo-dev-vm", metadata_resource=vm.metadata
    )
    types["setMetadata"] = gcp.wait(op).operation_type
    op = gcp.instances.reset_unary(project=DEV, zone=DEV_ZONE, instance="nemo-dev-vm")
    types["reset"] = gcp.wait(op).operation_type
    assert types == {
        "regionInstanceTemplates.insert": "compute.regionInstanceTemplates.insert",
        "regionInstanceTemplates.delete": "compute.regionInstanceTemplates.delete",
        "instanceTemplates.insert": "compute.instanceTemplates.insert",
        "instanceTemplates.delete": "delete",
        "patch": f"{rigm}.patch",
        "resize": f"{rigm}.resize",
        "setInstanceTemplate": f"{rigm}.setInstanceTemplate",
        "backendServices.patch": "patch",
        "setMetadata": "setMetadata",
        "reset": "reset",
    }
