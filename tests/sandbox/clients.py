"""The official GCP client libraries pointed at a sandbox, as Gantry's adapter builds them."""

from __future__ import annotations

import time

from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import compute_v1
from google.cloud.devtools import cloudbuild_v1

PROD, REGION = "nemo-prod", "asia-northeast3"
ZONES = ["asia-northeast3-a", "asia-northeast3-c"]
DEV, DEV_ZONE = "nemo-dev", "asia-northeast3-a"
BACKEND_MIG = "nemo-backend-mig"
# What GCP fills in on a template's properties and refuses on an insert (as gcp/adapter.py strips).
OUTPUT_ONLY = {
    "disks": ("architecture", "index", "kind", "licenses", "saved_state"),
    "network_interfaces": ("ipv6_access_type", "kind", "name"),
}


def insertable(properties: compute_v1.InstanceProperties) -> compute_v1.InstanceProperties:
    """A copy of a template's properties read back from GCP, without its output-only fields."""
    properties = compute_v1.InstanceProperties(properties)
    for part, fields in OUTPUT_ONLY.items():
        for item in getattr(properties, part):
            for name in fields:
                if name in item:
                    delattr(item, name)
    if "kind" in properties.metadata:
        del properties.metadata.kind
    return properties


class Clients:
    def __init__(self, url: str):
        options = {
            "transport": "rest",
            "client_options": ClientOptions(api_endpoint=url),
            "credentials": AnonymousCredentials(),
        }
        self.url = url
        self.templates = compute_v1.RegionInstanceTemplatesClient(**options)
        self.global_templates = compute_v1.InstanceTemplatesClient(**options)
        self.migs = compute_v1.RegionInstanceGroupManagersClient(**options)
        self.autoscalers = compute_v1.RegionAutoscalersClient(**options)
        self.backend_services = compute_v1.BackendServicesClient(**options)
        self.region_backend_services = compute_v1.RegionBackendServicesClient(**options)
        self.instances = compute_v1.InstancesClient(**options)
        self.region_operations = compute_v1.RegionOperationsClient(**options)
        self.zone_operations = compute_v1.ZoneOperationsClient(**options)
        self.global_operations = compute_v1.GlobalOperationsClient(**options)
        self.builds = cloudbuild_v1.CloudBuildClient(**options)

    def wait(self, op: compute_v1.Operation, timeout: float = 5.0) -> compute_v1.Operation:
        """Poll with our configured operations clients (ExtendedOperation.result() would not)."""
        deadline = time.monotonic() + timeout
        project = op.self_link.split("/projects/")[1].split("/")[0]
        while op.status != compute_v1.Operation.Status.DONE:
            assert time.monotonic() < deadline, f"operation {op.name} not done"
            if op.zone:
                zone = op.zone.rsplit("/", 1)[-1]
                op = self.zone_operations.wait(project=project, zone=zone, operation=op.name)
            elif op.region:
                region = op.region.rsplit("/", 1)[-1]
                op = self.region_operations.wait(project=project, region=region, operation=op.name)
            else:
                op = self.global_operations.wait(project=project, operation=op.name)
        return op

    def template_url(self, name: str, project: str = PROD) -> str:
        return f"https://www.googleapis.com/compute/v1/projects/{project}/regions/{REGION}/instanceTemplates/{name}"

    def new_template(self, name: str, source: str = "nemo-backend-mig-tmpl-v1", image: str = ""):
        """Insert a copy of `source` named `name` running `image`, and wait for it."""
        template = self.templates.get(project=PROD, region=REGION, instance_template=source)
        template = compute_v1.InstanceTemplate(
            name=name, properties=insertable(template.properties), description=f"{name} for a test"
        )
        component = source.removeprefix("nemo-").split("-mig")[0].split("-blue")[0]
        key = {"ai": "ai-server"}.get(component.split("-")[0], component) + "-image"
        template.properties.metadata = compute_v1.Metadata(
            items=[compute_v1.Items(key=key, value=image or f"registry/{name}@sha256:{'0' * 64}")]
        )
        op = self.templates.insert_unary(
            project=PROD, region=REGION, instance_template_resource=template
        )
        self.wait(op)
        return self.template_url(name)

    def patch(self, mig: str, **fields) -> compute_v1.Operation:
        op = self.migs.patch_unary(
            project=PROD,
            region=REGION,
            instance_group_manager=mig,
            instance_group_manager_resource=compute_v1.InstanceGroupManager(**fields),
        )
        return self.wait(op)

    def mig(self, name: str = BACKEND_MIG) -> compute_v1.InstanceGroupManager:
        return self.migs.get(project=PROD, region=REGION, instance_group_manager=name)

    def managed(self, name: str = BACKEND_MIG) -> list[compute_v1.ManagedInstance]:
        return list(
            self.migs.list_managed_instances(
                project=PROD, region=REGION, instance_group_manager=name
            )
        )

    def until_stable(self, name: str = BACKEND_MIG, timeout: float = 5.0, each=None):
        """Poll the MIG until status.isStable; `each(managed_instances)` sees every poll."""
        deadline = time.monotonic() + timeout
        while True:
            if each is not None:
                each(self.managed(name))
            mig = self.mig(name)
            if mig.status.is_stable:
                return mig
            assert time.monotonic() < deadline, f"{name} not stable: {mig.current_actions}"
            time.sleep(0.002)


def serving(managed: list[compute_v1.ManagedInstance]) -> list[compute_v1.ManagedInstance]:
    """RUNNING, and HEALTHY by every health check."""
    return [
        m
        for m in managed
        if m.instance_status == "RUNNING"
        and m.current_action == "NONE"
        and all(h.detailed_health_state == "HEALTHY" for h in m.instance_health)
    ]


def template_name(m: compute_v1.ManagedInstance) -> str:
    return m.version.instance_template.rsplit("/", 1)[-1]


def zone_name(m: compute_v1.ManagedInstance) -> str:
    return m.instance.split("/zones/")[1].split("/")[0]
