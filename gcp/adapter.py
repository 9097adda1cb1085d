"""Gantry's only door to GCP: Compute Engine, Cloud Build and the image registry.

Clients come from settings. With GANTRY_COMPUTE_ENDPOINT / GANTRY_CLOUDBUILD_ENDPOINT /
GANTRY_REGISTRY_URL set (the sandbox, e.g. http://127.0.0.1:8900) they use that endpoint, the
REST transport and anonymous credentials; empty, they reach Google with Application Default
Credentials. Either way every call goes through google-cloud-compute / google-cloud-build, and
what comes back is a Gantry value from `gcp.types`, never a protobuf message.

Every mutating Compute call takes a `request_id`: GCP answers a retried request carrying the
same id with the first request's operation instead of doing it twice (or refusing with 409).

Operations are polled with this adapter's own operations clients, never with
`ExtendedOperation.result()` or the LRO's default poller: those build a client of their own that
ignores the configured endpoint and would call Google's real host.
"""

from __future__ import annotations

import threading
from functools import cached_property

from django.conf import settings
from google.api_core.client_options import ClientOptions
from google.api_core.exceptions import NotFound
from google.auth.credentials import AnonymousCredentials
from google.cloud import compute_v1
from google.cloud.devtools import cloudbuild_v1

from .names import short
from .registry import Registry
from .types import (
    Autoscaler,
    BackendHealth,
    BuildState,
    InstanceError,
    ManagedInstance,
    MigStatus,
    MigVersion,
    OperationRef,
    OperationState,
    Vm,
)

# Read-only fields GCP fills in on an instance template's properties; a copy sent back to
# `insert` with them set is refused.
# (compute.v1 discovery document: the "[Output Only]" fields of InstanceProperties' parts.)
OUTPUT_ONLY = {
    "disks": (
        "architecture",
        "index",
        "kind",
        "licenses",
        "saved_state",
        "shielded_instance_initial_state",
    ),
    "network_interfaces": ("ipv6_access_type", "kind", "name"),
}


def operation_state(op: compute_v1.Operation) -> OperationState:
    return OperationState(
        ref=OperationRef.parse(op.self_link),
        operation_type=op.operation_type,
        done=op.status == compute_v1.Operation.Status.DONE,
        errors=tuple((e.code, e.message) for e in op.error.errors),
        http_status=op.http_error_status_code or None,
    )


def mig_status(mig: compute_v1.InstanceGroupManager) -> MigStatus:
    return MigStatus(
        name=mig.name,
        group=mig.instance_group,
        target_size=mig.target_size,
        stable=mig.status.is_stable,
        reached=mig.status.version_target.is_reached,
        versions=tuple(
            MigVersion(
                name=v.name,
                template=v.instance_template,
                target=(
                    v.target_size.calculated
                    if (v.target_size.fixed or v.target_size.percent)
                    else None
                ),
            )
            for v in mig.versions
        ),
        autoscaler=mig.status.autoscaler,
    )


def managed_instance(managed: compute_v1.ManagedInstance) -> ManagedInstance:
    return ManagedInstance(
        url=managed.instance,
        status=managed.instance_status,
        action=managed.current_action,
        template=managed.version.instance_template,
        version=managed.version.name,
        health=tuple(h.detailed_health_state for h in managed.instance_health),
        errors=tuple(InstanceError(e.code, e.message) for e in managed.last_attempt.errors.errors),
    )


def derive_template(
    source: compute_v1.InstanceTemplate, name: str, metadata: dict[str, str]
) -> compute_v1.InstanceTemplate:
    """A copy of `source` named `name`, with `metadata` keys set (others kept) and the
    read-only fields GCP filled in on the source left out."""
    properties = compute_v1.InstanceProperties(source.properties)
    for part, fields in OUTPUT_ONLY.items():
        for item in getattr(properties, part):
            for field in fields:
                if field in item:
                    delattr(item, field)
    items = {item.key: item.value for item in properties.metadata.items}
    items.update(metadata)
    properties.metadata = compute_v1.Metadata(
        items=[compute_v1.Items(key=k, value=v) for k, v in items.items()]
    )
    return compute_v1.InstanceTemplate(
        name=name, description=source.description, properties=properties
    )


_per_thread = threading.local()


class GcpAdapter:
    def __init__(
        self,
        compute_endpoint: str = "",
        cloudbuild_endpoint: str = "",
        registry_url: str = "",
        poll_interval: float = 2.0,
        operation_timeout: float = 900.0,
        call_timeout: float = 30.0,
    ):
        self.compute_endpoint = compute_endpoint.rstrip("/")
        self.cloudbuild_endpoint = cloudbuild_endpoint.rstrip("/")
        self.registry = Registry(registry_url)
        self.poll_interval = poll_interval
        self.operation_timeout = operation_timeout
        self.call_timeout = call_timeout
        self._compute_clients: dict[type, object] = {}

    @classmethod
    def from_settings(cls, **overrides) -> GcpAdapter:
        """The adapter for the configured endpoints, one per thread and kept for reuse: clients
        and their connection pools (and the TLS context each one builds) outlive a step."""
        options = {
            "compute_endpoint": settings.GANTRY_COMPUTE_ENDPOINT,
            "cloudbuild_endpoint": settings.GANTRY_CLOUDBUILD_ENDPOINT,
            "registry_url": settings.GANTRY_REGISTRY_URL,
        } | overrides
        key = (cls, tuple(sorted(options.items())))
        adapters = _per_thread.__dict__.setdefault("adapters", {})
        if key not in adapters:
            if len(adapters) >= 4:  # endpoints changed (tests, a new sandbox): drop the old ones
                adapters.clear()
            adapters[key] = cls(**options)
        return adapters[key]

    # --- clients ----------------------------------------------------------------------------

    @staticmethod
    def _client_kwargs(endpoint: str) -> dict:
        if not endpoint:
            return {"transport": "rest"}
        # The REST transports keep an explicit http:// scheme (they add https:// only when none).
        return {
            "transport": "rest",
            "client_options": ClientOptions(api_endpoint=endpoint),
            "credentials": AnonymousCredentials(),
        }

    def _compute(self, client_class):
        if client_class not in self._compute_clients:
            self._compute_clients[client_class] = client_class(
                **self._client_kwargs(self.compute_endpoint)
            )
        return self._compute_clients[client_class]

    @property
    def region_templates(self) -> compute_v1.RegionInstanceTemplatesClient:
        return self._compute(compute_v1.RegionInstanceTemplatesClient)

    @property
    def global_templates(self) -> compute_v1.InstanceTemplatesClient:
        return self._compute(compute_v1.InstanceTemplatesClient)

    @property
    def migs(self) -> compute_v1.RegionInstanceGroupManagersClient:
        return self._compute(compute_v1.RegionInstanceGroupManagersClient)

    @property
    def backend_services(self) -> compute_v1.BackendServicesClient:
        return self._compute(compute_v1.BackendServicesClient)

    @property
    def region_backend_services(self) -> compute_v1.RegionBackendServicesClient:
        return self._compute(compute_v1.RegionBackendServicesClient)

    @property
    def region_autoscalers(self) -> compute_v1.RegionAutoscalersClient:
        return self._compute(compute_v1.RegionAutoscalersClient)

    @property
    def instances(self) -> compute_v1.InstancesClient:
        return self._compute(compute_v1.InstancesClient)

    @property
    def region_operations(self) -> compute_v1.RegionOperationsClient:
        return self._compute(compute_v1.RegionOperationsClient)

    @property
    def zone_operations(self) -> compute_v1.ZoneOperationsClient:
        return self._compute(compute_v1.ZoneOperationsClient)

    @property
    def global_operations(self) -> compute_v1.GlobalOperationsClient:
        return self._compute(compute_v1.GlobalOperationsClient)

    @cached_property
    def builds(self) -> cloudbuild_v1.CloudBuildClient:
        return cloudbuild_v1.CloudBuildClient(**self._client_kwargs(self.cloudbuild_endpoint))

    def _call(self, method, **kwargs):
        """Every API call goes out once, with a deadline. The client libraries would retry a 503
        silently for up to 600 s; the engine retries transient errors itself instead, counted on
        the deployment and visible on its timeline, and the MIG panel reads again on next beat."""
        kwargs.setdefault("timeout", self.call_timeout)
        return method(retry=None, **kwargs)

    def _mutate(self, method, request) -> OperationRef:
        """Send a mutating request (its `request_id` set by the caller); the operation's ref."""
        return OperationRef.parse(self._call(method, request=request).self_link)

    # --- instance templates (regional; region=None for global ones) ------------------------

    def _templates(self, region: str | None):
        return self.global_templates if region is None else self.region_templates

    def _where(self, project: str, region: str | None) -> dict:
        return {"project": project} | ({"region": region} if region else {})

    def template_url(self, project: str, region: str | None, name: str) -> str | None:
        """The template's URL, or None when there is no such template."""
        try:
            template = self._call(
                self._templates(region).get,
                instance_template=name,
                **self._where(project, region),
            )
        except NotFound:
            return None
        return template.self_link

    def create_template(
        self,
        project: str,
        region: str | None,
        source: str,
        name: str,
        metadata: dict[str, str],
        request_id: str = "",
    ) -> OperationRef:
        """Insert `name`, a copy of template `source` (a name or URL) with `metadata` set."""
        where = self._where(project, region)
        original = self._call(self._templates(region).get, instance_template=short(source), **where)
        template = derive_template(original, name, metadata)
        if region is None:
            request = compute_v1.InsertInstanceTemplateRequest(
                instance_template_resource=template, request_id=request_id, **where
            )
        else:
            request = compute_v1.InsertRegionInstanceTemplateRequest(
                instance_template_resource=template, request_id=request_id, **where
            )
        return self._mutate(self._templates(region).insert_unary, request)

    def list_templates(self, project: str, region: str | None, prefix: str = "") -> list[str]:
        """URLs of the templates whose names start with `prefix`, oldest first."""
        pages = self._call(self._templates(region).list, **self._where(project, region))
        found = sorted(pages, key=lambda t: (t.creation_timestamp, t.name))
        return [t.self_link for t in found if t.name.startswith(prefix)]

    def delete_template(
        self, project: str, region: str | None, name: str, request_id: str = ""
    ) -> OperationRef:
        where = self._where(project, region) | {"instance_template": name, "request_id": request_id}
        request = (
            compute_v1.DeleteInstanceTemplateRequest(**where)
            if region is None
            else compute_v1.DeleteRegionInstanceTemplateRequest(**where)
        )
        return self._mutate(self._templates(region).delete_unary, request)

    # --- regional managed instance groups ---------------------------------------------------

    def get_mig(self, project: str, region: str, name: str) -> MigStatus:
        mig = self._call(self.migs.get, project=project, region=region, instance_group_manager=name)
        return mig_status(mig)

    def patch_mig(
        self, project: str, region: str, name: str, resource, request_id: str = ""
    ) -> OperationRef:
        """`resource`: an InstanceGroupManager's fields (snake_case dict) to change."""
        request = compute_v1.PatchRegionInstanceGroupManagerRequest(
            project=project,
            region=region,
            instance_group_manager=name,
            instance_group_manager_resource=compute_v1.InstanceGroupManager(resource),
            request_id=request_id,
        )
        return self._mutate(self.migs.patch_unary, request)

    def resize_mig(
        self, project: str, region: str, name: str, size: int, request_id: str = ""
    ) -> OperationRef:
        request = compute_v1.ResizeRegionInstanceGroupManagerRequest(
            project=project,
            region=region,
            instance_group_manager=name,
            size=size,
            request_id=request_id,
        )
        return self._mutate(self.migs.resize_unary, request)

    def list_managed_instances(self, project: str, region: str, name: str) -> list[ManagedInstance]:
        """Every instance of the group (all pages)."""
        pages = self._call(
            self.migs.list_managed_instances,
            project=project,
            region=region,
            instance_group_manager=name,
        )
        return [managed_instance(m) for m in pages]

    def get_autoscaler(self, project: str, region: str, name: str) -> Autoscaler:
        scaler = self._call(
            self.region_autoscalers.get, project=project, region=region, autoscaler=name
        )
        policy = scaler.autoscaling_policy
        return Autoscaler(
            name=scaler.name,
            min=policy.min_num_replicas,
            max=policy.max_num_replicas,
            recommended=scaler.recommended_size,
            status=scaler.status,
            cpu_target=policy.cpu_utilization.utilization_target
            if "cpu_utilization" in policy
            else None,
        )

    # --- backend services ---------------------------------------------------------------------

    def _services(self, region: str | None):
        return self.backend_services if region is None else self.region_backend_services

    def _backend_service(self, project: str, name: str, region: str | None):
        where = self._where(project, region)
        return self._call(self._services(region).get, backend_service=name, **where)

    def serving_groups(self, project: str, name: str, region: str | None = None) -> set[str]:
        """Names of the instance groups the backend service sends traffic to."""
        service = self._backend_service(project, name, region)
        return {short(backend.group) for backend in service.backends}

    def backend_health(
        self, project: str, name: str, groups: list[str] | None = None, region: str | None = None
    ) -> list[BackendHealth]:
        """The load balancer's view of every instance in `groups` (instance group URLs; default:
        the groups the service serves now), one `getHealth` call per group."""
        if groups is None:
            groups = [b.group for b in self._backend_service(project, name, region).backends]
        found = []
        for group in groups:
            answer = self._call(
                self._services(region).get_health,
                backend_service=name,
                resource_group_reference_resource=compute_v1.ResourceGroupReference(group=group),
                **self._where(project, region),
            )
            found += [
                BackendHealth(group=group, instance=status.instance, state=status.health_state)
                for status in answer.health_status
            ]
        return found

    def attach_backend(
        self,
        project: str,
        name: str,
        group: str,
        like: str,
        region: str | None = None,
        request_id: str = "",
    ) -> OperationRef:
        """Add `group` (an instance group URL) as a standby backend: the settings of backend
        `like`, capacity 0, so the load balancer health-checks it and sends it no traffic."""

        def change(backends: list, by_group: dict) -> list:
            if group in by_group:
                return backends
            standby = compute_v1.Backend(by_group.get(like) or backends[0])
            standby.group, standby.capacity_scaler = group, 0.0
            return [*backends, standby]

        return self._change_backends(project, name, change, region, request_id)

    def serve_only(
        self,
        project: str,
        name: str,
        group: str,
        like: str,
        region: str | None = None,
        request_id: str = "",
    ) -> OperationRef:
        """Make `group` the service's only backend, with the settings of backend `like` (the
        one it replaces: balancing mode, capacity scaler, rate and utilisation limits), or its
        own when `like` is gone."""

        def change(backends: list, by_group: dict) -> list:
            model = by_group.get(like) or by_group.get(group) or backends[0]
            backend = compute_v1.Backend(model)
            backend.group = group
            return [backend]

        return self._change_backends(project, name, change, region, request_id)

    def _change_backends(self, project, name, change, region, request_id) -> OperationRef:
        """One read-modify-write of the service's backends, guarded by its fingerprint."""
        current = self._backend_service(project, name, region)
        backends = list(current.backends) or [compute_v1.Backend(balancing_mode="UTILIZATION")]
        by_group = {backend.group: backend for backend in current.backends}
        resource = compute_v1.BackendService(
            fingerprint=current.fingerprint, backends=change(backends, by_group)
        )
        patch = (
            compute_v1.PatchBackendServiceRequest
            if region is None
            else compute_v1.PatchRegionBackendServiceRequest
        )
        request = patch(
            backend_service=name,
            backend_service_resource=resource,
            request_id=request_id,
            **self._where(project, region),
        )
        return self._mutate(self._services(region).patch_unary, request)

    # --- zonal instances (the dev VM) ---------------------------------------------------------

    def get_instance(self, project: str, zone: str, name: str) -> Vm:
        vm = self._call(self.instances.get, project=project, zone=zone, instance=name)
        return Vm(
            name=vm.name,
            zone=zone,
            status=vm.status,
            metadata={item.key: item.value for item in vm.metadata.items},
        )

    def set_metadata(
        self, project: str, zone: str, name: str, items: dict[str, str], request_id: str = ""
    ) -> OperationRef:
        """Set these metadata keys, keeping the others, under the current fingerprint."""
        current = self._call(self.instances.get, project=project, zone=zone, instance=name).metadata
        merged = {item.key: item.value for item in current.items} | items
        request = compute_v1.SetMetadataInstanceRequest(
            project=project,
            zone=zone,
            instance=name,
            metadata_resource=compute_v1.Metadata(
                fingerprint=current.fingerprint,
                items=[compute_v1.Items(key=k, value=v) for k, v in merged.items()],
            ),
            request_id=request_id,
        )
        return self._mutate(self.instances.set_metadata_unary, request)

    # --- operations ---------------------------------------------------------------------------

    def _operation_call(self, ref: OperationRef, verb: str, **kwargs):
        kind, _, where = ref.scope.partition("/")
        if kind == "regions":
            client, kwargs["region"] = self.region_operations, where
        elif kind == "zones":
            client, kwargs["zone"] = self.zone_operations, where
        else:
            client = self.global_operations
        return self._call(getattr(client, verb), project=ref.project, operation=ref.name, **kwargs)

    def get_operation(self, ref: OperationRef | str) -> OperationState:
        ref = OperationRef.parse(ref) if isinstance(ref, str) else ref
        return operation_state(self._operation_call(ref, "get"))

    # --- Cloud Build --------------------------------------------------------------------------

    def create_build(
        self,
        project: str,
        steps: list[dict],
        images: list[str] | None = None,
        substitutions: dict[str, str] | None = None,
        tags: list[str] | None = None,
        timeout_seconds: int | None = None,
    ) -> str:
        """Start a build; returns its id (read from the LRO's metadata, no polling)."""
        build = cloudbuild_v1.Build(
            steps=[cloudbuild_v1.BuildStep(step) for step in steps],
            images=images or [],
            substitutions=substitutions or {},
            tags=tags or [],
        )
        if timeout_seconds:
            build.timeout = {"seconds": timeout_seconds}
        lro = self._call(self.builds.create_build, project_id=project, build=build)
        return lro.metadata.build.id

    def get_build(self, project: str, build_id: str) -> BuildState:
        build = self._call(self.builds.get_build, project_id=project, id=build_id)
        return BuildState(
            id=build.id,
            status=build.status.name,
            detail=build.failure_info.detail or build.status_detail,
            log_url=build.log_url,
        )

    def cancel_build(self, project: str, build_id: str) -> BuildState:
        build = self._call(self.builds.cancel_build, project_id=project, id=build_id)
        return BuildState(id=build.id, status=build.status.name, log_url=build.log_url)

    # --- registry -------------------------------------------------------------------------------

    def get_digest(self, image: str, tag: str | None = None) -> str:
        return self.registry.get_digest(image, tag)
