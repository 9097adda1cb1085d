"""The GCP adapter against the sandbox: real client libraries, settings-driven endpoints."""

import pytest
from google.api_core import exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import compute_v1

from gcp.adapter import GcpAdapter, derive_template
from gcp.errors import (
    BuildFailed,
    ImageNotFound,
    OperationFailed,
    OperationTimeout,
    RegistryError,
    is_retryable,
)
from gcp.types import ImageName, OperationRef

from .waiting import copy_image, wait, wait_build

PROJECT, REGION, MIG = "nemo-prod", "asia-northeast3", "nemo-backend-mig"
DEV_BACKEND = "asia-northeast3-docker.pkg.dev/nemo-dev/registry/backend"
PROD_BACKEND = "asia-northeast3-docker.pkg.dev/nemo-prod/registry/backend"


@pytest.fixture
def gcp(sandbox_settings):
    return GcpAdapter.from_settings(poll_interval=0.002, operation_timeout=5)


def until_stable(gcp, name=MIG):
    for _ in range(2000):
        mig = gcp.get_mig(PROJECT, REGION, name)
        if mig.stable:
            return mig
    raise AssertionError(f"{name} never became stable")


def test_clients_are_built_from_settings(gcp, sandbox_settings):
    for client in (gcp.migs, gcp.region_operations, gcp.builds):
        assert client._transport._host == sandbox_settings.url
        assert isinstance(client._transport._credentials, AnonymousCredentials)
    assert GcpAdapter._client_kwargs("") == {"transport": "rest"}


def test_the_library_default_poller_would_call_google(gcp):
    """Why the adapter polls with its own operations clients: ExtendedOperation.result()
    goes through a client the library builds itself, aimed at Google's host."""
    default_poller = gcp.migs._transport._region_operations_client
    assert default_poller._transport._host == "https://compute.googleapis.com"
    assert gcp.region_operations._transport._host != default_poller._transport._host


def source_template(gcp, name="nemo-backend-mig-tmpl-v1"):
    return gcp.region_templates.get(project=PROJECT, region=REGION, instance_template=name)


def test_a_derived_template_keeps_the_source_and_leaves_out_what_gcp_filled_in(gcp):
    source = source_template(gcp)
    source.properties.disks[0].index = 0
    source.properties.disks[0].licenses = ["projects/debian-cloud/global/licenses/debian-12"]
    source.properties.network_interfaces[0].name = "nic0"
    image = f"{PROD_BACKEND}@sha256:{'5' * 64}"
    template = derive_template(source, "nemo-backend-mig-tmpl-v2", {"backend-image": image})
    assert template.properties.machine_type == source.properties.machine_type
    assert source.properties.metadata.items[0].value != image  # the source is left as it was
    assert {i.key: i.value for i in template.properties.metadata.items}["backend-image"] == image
    disk, nic = template.properties.disks[0], template.properties.network_interfaces[0]
    assert "index" not in disk and "licenses" not in disk and "name" not in nic
    assert disk.boot == source.properties.disks[0].boot
    assert source.properties.disks[0].licenses  # the source still has them


def test_rolling_update(gcp, sandbox):
    image = f"{PROD_BACKEND}@sha256:{'5' * 64}"
    assert gcp.template_url(PROJECT, REGION, "nemo-backend-mig-tmpl-v2") is None
    ref = gcp.create_template(
        PROJECT,
        REGION,
        "nemo-backend-mig-tmpl-v1",
        "nemo-backend-mig-tmpl-v2",
        {"backend-image": image},
    )
    assert wait(gcp, ref).done
    url = gcp.template_url(PROJECT, REGION, "nemo-backend-mig-tmpl-v2")
    assert url.endswith("/regions/asia-northeast3/instanceTemplates/nemo-backend-mig-tmpl-v2")
    assert url in gcp.list_templates(PROJECT, REGION, prefix="nemo-backend-mig-tmpl-")

    ref = gcp.patch_mig(
        PROJECT,
        REGION,
        MIG,
        {
            "versions": [{"instance_template": url, "name": "v2"}],
            "update_policy": {
                "type_": "PROACTIVE",
                "minimal_action": "REPLACE",
                "max_surge": {"fixed": 2},
                "max_unavailable": {"fixed": 0},
            },
        },
    )
    assert str(ref).startswith(f"projects/{PROJECT}/regions/{REGION}/operations/operation-")
    wait(gcp, str(ref))
    mig = until_stable(gcp)
    assert mig.reached and mig.stable_template == url
    instances = gcp.list_managed_instances(PROJECT, REGION, MIG)
    assert {i.template for i in instances} == {url}
    assert all(i.healthy and i.status == "RUNNING" and not i.errors for i in instances)
    history = sandbox.history(PROJECT, MIG)
    assert (
        min(sum(n["available"] for z in row.values() for n in z.values()) for _, row in history)
        == 4
    )


def test_resize(gcp):
    wait(gcp, gcp.resize_mig(PROJECT, REGION, MIG, 6))
    assert len(gcp.list_managed_instances(PROJECT, REGION, MIG)) == 6


def test_a_failed_operation_raises_with_its_error(gcp, sandbox):
    sandbox.inject_fault(
        "operation_error",
        target=f"*/{MIG}",
        code="QUOTA_EXCEEDED",
        message="Quota 'CPUS' exceeded.",
        httpStatus=403,
        httpMessage="FORBIDDEN",
    )
    ref = gcp.resize_mig(PROJECT, REGION, MIG, 8)
    with pytest.raises(OperationFailed, match=r"QUOTA_EXCEEDED: Quota 'CPUS' exceeded\.") as failed:
        wait(gcp, ref)
    assert failed.value.errors == [("QUOTA_EXCEEDED", "Quota 'CPUS' exceeded.")]
    assert failed.value.http_status == 403
    assert gcp.get_mig(PROJECT, REGION, MIG).target_size == 4


def test_an_operation_that_never_ends_times_out(gcp, sandbox):
    sandbox.inject_fault("operation_stuck", target="*/backendServices/*")
    blue = gcp.get_mig(PROJECT, REGION, "nemo-ai-blue-mig").group
    ref = gcp.serve_only(PROJECT, "nemo-ai-bes", blue, like=blue)
    with pytest.raises(OperationTimeout):
        wait(gcp, ref, timeout=0.1)
    assert not gcp.get_operation(ref).done


def test_a_request_id_makes_a_retried_mutation_one_operation(gcp):
    first = gcp.resize_mig(
        PROJECT, REGION, MIG, 5, request_id="9b0c2c36-4f5e-4d1e-9b1a-2f7d1c0e8a11"
    )
    again = gcp.resize_mig(
        PROJECT, REGION, MIG, 5, request_id="9b0c2c36-4f5e-4d1e-9b1a-2f7d1c0e8a11"
    )
    other = gcp.resize_mig(
        PROJECT, REGION, MIG, 5, request_id="0e7a8d52-0b39-4c3c-8f7e-8b6d3c2a1f00"
    )
    assert first == again and other != first


@pytest.mark.parametrize(
    ("status", "error"), [(429, exceptions.TooManyRequests), (503, exceptions.ServiceUnavailable)]
)
def test_throttling_and_outages_surface_as_retryable_library_errors(gcp, sandbox, status, error):
    sandbox.inject_fault(
        "http_error", path=f"*/instanceGroupManagers/{MIG}", method="PATCH", status=status
    )
    with pytest.raises(error) as raised:
        gcp.patch_mig(PROJECT, REGION, MIG, {"target_size": 5})
    assert is_retryable(raised.value)
    wait(gcp, gcp.patch_mig(PROJECT, REGION, MIG, {"target_size": 5}))  # the retry works


def test_client_errors_are_not_retryable(gcp):
    with pytest.raises(exceptions.NotFound) as missing:
        gcp.get_mig(PROJECT, REGION, "nope")
    with pytest.raises(exceptions.BadRequest) as bad:
        gcp.patch_mig(PROJECT, REGION, MIG, {"update_policy": {"type_": "SOMETIMES"}})
    assert not is_retryable(missing.value) and not is_retryable(bad.value)


def backends(gcp):
    service = gcp.backend_services.get(project=PROJECT, backend_service="nemo-ai-bes")
    return [
        (b.group, b.balancing_mode, round(b.capacity_scaler, 3), round(b.max_utilization, 3))
        for b in service.backends
    ]


def test_blue_green_swap_keeps_the_backend_settings(gcp):
    blue, green = "nemo-ai-blue-mig", "nemo-ai-green-mig"
    blue_group = gcp.get_mig(PROJECT, REGION, blue).group
    service = gcp.backend_services.get(project=PROJECT, backend_service="nemo-ai-bes")
    tuned = compute_v1.Backend(service.backends[0])
    tuned.capacity_scaler, tuned.max_utilization = 0.8, 0.7
    op = gcp.backend_services.patch_unary(
        project=PROJECT,
        backend_service="nemo-ai-bes",
        backend_service_resource=compute_v1.BackendService(
            fingerprint=service.fingerprint, backends=[tuned]
        ),
    )
    wait(gcp, op.self_link)
    wait(gcp, gcp.resize_mig(PROJECT, REGION, green, 2))
    until_stable(gcp, green)
    green_group = gcp.get_mig(PROJECT, REGION, green).group

    wait(gcp, gcp.attach_backend(PROJECT, "nemo-ai-bes", green_group, like=blue_group))
    assert backends(gcp) == [
        (blue_group, "UTILIZATION", 0.8, 0.7),
        (green_group, "UTILIZATION", 0.0, 0.7),
    ]
    health = gcp.backend_health(PROJECT, "nemo-ai-bes", groups=[green_group])
    assert len(health) == 2 and {h.state for h in health} == {"HEALTHY"}
    assert {h.group for h in health} == {green_group}

    wait(gcp, gcp.serve_only(PROJECT, "nemo-ai-bes", green_group, like=blue_group))
    assert backends(gcp) == [(green_group, "UTILIZATION", 0.8, 0.7)]
    assert gcp.serving_groups(PROJECT, "nemo-ai-bes") == {green}
    wait(gcp, gcp.resize_mig(PROJECT, REGION, blue, 0))
    until_stable(gcp, blue)
    assert gcp.list_managed_instances(PROJECT, REGION, blue) == []


def test_dev_vm_metadata_keeps_other_keys(gcp):
    zone, vm = "asia-northeast3-a", "nemo-dev-vm"
    before = gcp.get_instance("nemo-dev", zone, vm).metadata
    image = f"{DEV_BACKEND}@sha256:{'7' * 64}"
    done = wait(gcp, gcp.set_metadata("nemo-dev", zone, vm, {"backend-image": image}))
    assert gcp.get_instance("nemo-dev", zone, vm).metadata == before | {"backend-image": image}
    assert done.ref.scope == f"zones/{zone}"


def test_copy_image_and_read_digests(gcp, sandbox):
    source = gcp.get_digest(f"{DEV_BACKEND}:dev-latest")
    build_id = copy_image(gcp, "nemo-prod", f"{DEV_BACKEND}@{source}", f"{PROD_BACKEND}:prod-v2")
    build = wait_build(gcp, "nemo-prod", build_id, timeout=5)
    assert build.id == build_id
    assert gcp.get_digest(f"{PROD_BACKEND}:prod-v2") == source
    assert gcp.get_digest(PROD_BACKEND, "prod-v2") == source
    assert gcp.get_digest(f"{PROD_BACKEND}@{source}") == source


def test_a_failed_build_raises_with_its_detail(gcp):
    build_id = gcp.create_build(
        "nemo-dev", [{"name": "gcr.io/cloud-builders/mvn", "args": ["test"]}]
    )
    with pytest.raises(BuildFailed, match="does not understand this step") as failed:
        wait_build(gcp, "nemo-dev", build_id, timeout=5)
    assert failed.value.status == "FAILURE"


def test_registry_errors(gcp, sandbox):
    with pytest.raises(ImageNotFound) as missing:
        gcp.get_digest(f"{PROD_BACKEND}:never-pushed")
    assert not is_retryable(missing.value)
    sandbox.inject_fault("http_error", path="/v2/*", status=503)
    with pytest.raises(RegistryError) as unavailable:
        gcp.get_digest(f"{PROD_BACKEND}:prod-v1")
    assert unavailable.value.status_code == 503 and is_retryable(unavailable.value)


def test_references_parse():
    ref = OperationRef.parse(
        "https://www.googleapis.com/compute/v1/projects/p/zones/z-1/operations/op-1"
    )
    assert ref == OperationRef("p", "zones/z-1", "op-1")
    assert OperationRef.parse(str(ref)) == ref
    assert OperationRef.parse("projects/p/global/operations/op-2").scope == "global"
    image = ImageName.parse(f"{PROD_BACKEND}:prod-v1")
    assert (image.host, image.repository, image.reference) == (
        "asia-northeast3-docker.pkg.dev",
        "nemo-prod/registry/backend",
        "prod-v1",
    )
    with pytest.raises(ValueError):
        ImageName.parse("backend:latest")


@pytest.mark.parametrize(
    "status, error", [(503, exceptions.ServiceUnavailable), (429, exceptions.TooManyRequests)]
)
def test_a_transient_error_surfaces_at_once_for_the_engine_to_count(gcp, sandbox, status, error):
    """The client libraries would retry a 503 for up to 600 s on their own; the adapter makes
    one attempt so the engine's own, visible retries take over."""
    sandbox.inject_fault(
        "http_error", path=f"*/instanceGroupManagers/{MIG}", status=status, count=1
    )
    with pytest.raises(error) as raised:
        gcp.get_mig(PROJECT, REGION, MIG)
    assert is_retryable(raised.value)
    assert gcp.get_mig(PROJECT, REGION, MIG).name == MIG  # the one faulty answer was used once


def test_adapters_are_kept_per_thread_and_endpoints(sandbox_settings, sandbox_factory, settings):
    import threading

    first = GcpAdapter.from_settings()
    assert GcpAdapter.from_settings() is first
    elsewhere = []
    thread = threading.Thread(target=lambda: elsewhere.append(GcpAdapter.from_settings()))
    thread.start()
    thread.join()
    assert elsewhere[0] is not first
    for name, value in sandbox_factory().urls().items():
        setattr(settings, name, value)
    assert GcpAdapter.from_settings() is not first
