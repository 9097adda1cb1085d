"""Gantry's only door to GCP: Compute Engine, Cloud Build and the image registry.

Clients come from settings. With GANTRY_COMPUTE_ENDPOINT / GANTRY_CLOUDBUILD_ENDPOINT /
GANTRY_REGISTRY_URL set (the sandbox, e.g. http://127.0.0.1:8900) they use that endpoint, the
REST transport and anonymous credentials; empty, they reach Google with Application Default
Credentials. Either way every call goes through google-cloud-compute / google-cloud-build.

Operations are polled with this adapter's own operations clients, never with
`ExtendedOperation.result()` or the LRO's default poller: those build a client of their own that
ignores the configured endpoint and would call Google's real host.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass
from functools import cached_property

import httpx
import requests
from django.conf import settings
from google.api_core import exceptions as api_exceptions
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import compute_v1
from google.cloud.devtools import cloudbuild_v1

from .resources import short

MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
)
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
GCRANE = "gcr.io/go-containerregistry/gcrane"
BUILD_DONE = {
    cloudbuild_v1.Build.Status.SUCCESS,
    cloudbuild_v1.Build.Status.FAILURE,
    cloudbuild_v1.Build.Status.INTERNAL_ERROR,
    cloudbuild_v1.Build.Status.TIMEOUT,
    cloudbuild_v1.Build.Status.CANCELLED,
    cloudbuild_v1.Build.Status.EXPIRED,
}
RETRYABLE_API_ERRORS = (
    api_exceptions.TooManyRequests,
    api_exceptions.ServiceUnavailable,
    api_exceptions.InternalServerError,
    api_exceptions.BadGateway,
    api_exceptions.GatewayTimeout,
    api_exceptions.DeadlineExceeded,
)


class GcpError(Exception):
    """Something GCP did (or did not do) that the caller should record and act on."""


class OperationFailed(GcpError):
    """A Compute operation finished with an error; `errors` holds its (code, message) pairs."""

    def __init__(self, operation: compute_v1.Operation):
        self.operation = operation
        self.errors = [(e.code, e.message) for e in operation.error.errors]
        self.http_status = operation.http_error_status_code or None
        detail = "; ".join(f"{code}: {message}" for code, message in self.errors) or "no detail"
        super().__init__(
            f"operation {operation.name} ({operation.operation_type}) failed: {detail}"
        )


class OperationTimeout(GcpError):
    pass


class BuildFailed(GcpError):
    def __init__(self, build: cloudbuild_v1.Build):
        self.build = build
        detail = build.failure_info.detail or build.status_detail or "no detail"
        super().__init__(f"build {build.id} ended {build.status.name}: {detail}")


class BuildTimeout(GcpError):
    pass


class RegistryError(GcpError):
    def __init__(self, message: str, status_code: int | None = None):
        super().__init__(message)
        self.status_code = status_code


class ImageNotFound(RegistryError):
    pass


# Compute and Cloud Build throttle with 403 and one of these reasons (Google: wait and retry);
# other 403s (quotaExceeded, a missing permission) will not pass by waiting.
THROTTLED_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})


def error_reasons(exc: BaseException) -> set[str]:
    """The `reason`s of a Google API error (`error.errors[].reason`, or its ErrorInfo)."""
    reasons = {getattr(exc, "reason", None)}
    for error in getattr(exc, "errors", None) or ():
        reasons.add(
            error.get("reason") if isinstance(error, dict) else getattr(error, "reason", None)
        )
    return {reason for reason in reasons if isinstance(reason, str) and reason}


def is_retryable(exc: BaseException) -> bool:
    """True for throttling and transient server or network errors worth another attempt."""
    if isinstance(exc, RETRYABLE_API_ERRORS):
        return True
    if isinstance(exc, api_exceptions.Forbidden):
        return bool(error_reasons(exc) & THROTTLED_REASONS)
    if isinstance(exc, ImageNotFound):
        return False
    if isinstance(exc, RegistryError):
        return exc.status_code is None or exc.status_code == 429 or exc.status_code >= 500
    return isinstance(exc, httpx.TransportError | requests.ConnectionError | requests.Timeout)


def refusal(exc: BaseException) -> str | None:
    """What a person should read of a Google API error that will not pass by retrying (a quota,
    a permission, a bad request), with its reason; None for anything else."""
    if not isinstance(exc, api_exceptions.GoogleAPICallError):
        return None
    reasons = ", ".join(sorted(error_reasons(exc))) or "no reason given"
    status = int(exc.code) if exc.code is not None else "error"
    return f"GCP refused ({status} {reasons}): {exc.message}"


@dataclass(frozen=True)
class OperationRef:
    """Where a Compute operation lives; `str()` is what a deployment records to poll it later."""

    project: str
    scope: str  # "global", "regions/<region>" or "zones/<zone>"
    name: str

    def __str__(self) -> str:
        return f"projects/{self.project}/{self.scope}/operations/{self.name}"

    @classmethod
    def parse(cls, text: str) -> OperationRef:
        """From `str(ref)` or an operation's selfLink."""
        path = text.split("/compute/v1/", 1)[-1]
        parts = path.split("/")
        try:
            project = parts[parts.index("projects") + 1]
            name = parts[parts.index("operations") + 1]
        except (ValueError, IndexError):
            raise ValueError(f"not an operation reference: {text!r}") from None
        scope = "global" if "global" in parts else "/".join(parts[2:4])
        return cls(project, scope, name)

    @classmethod
    def of(cls, operation: compute_v1.Operation) -> OperationRef:
        return cls.parse(operation.self_link)


@dataclass(frozen=True)
class ImageName:
    """host/repository[:tag][@digest]: the repository is the path the registry API serves."""

    host: str
    repository: str
    tag: str = ""
    digest: str = ""

    @classmethod
    def parse(cls, text: str) -> ImageName:
        rest, _, digest = text.partition("@")
        tag = ""
        if ":" in rest.rsplit("/", 1)[-1]:
            rest, tag = rest.rsplit(":", 1)
        host, _, repository = rest.partition("/")
        if not repository or ("." not in host and ":" not in host and host != "localhost"):
            raise ValueError(f"image {text!r} must start with a registry host")
        return cls(host, repository, tag, digest)

    @property
    def reference(self) -> str:
        return self.digest or self.tag or "latest"


def derive_template(
    source: compute_v1.InstanceTemplate, name: str, metadata: dict[str, str]
) -> compute_v1.InstanceTemplate:
    """A copy of `source` named `name`, with `metadata` keys set (others kept)."""
    template = compute_v1.InstanceTemplate(
        name=name, description=source.description, properties=source.properties
    )
    items = {item.key: item.value for item in template.properties.metadata.items}
    items.update(metadata)
    template.properties.metadata = compute_v1.Metadata(
        items=[compute_v1.Items(key=k, value=v) for k, v in items.items()]
    )
    return template


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
        self.registry_url = registry_url.rstrip("/")
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

    # --- instance templates (regional; region=None for global ones) ------------------------

    def get_template(self, project: str, region: str | None, name: str):
        if region is None:
            return self._call(self.global_templates.get, project=project, instance_template=name)
        return self._call(
            self.region_templates.get, project=project, region=region, instance_template=name
        )

    def insert_template(self, project: str, region: str | None, template) -> OperationRef:
        template = compute_v1.InstanceTemplate(template)
        if region is None:
            op = self._call(
                self.global_templates.insert_unary,
                project=project,
                instance_template_resource=template,
            )
        else:
            op = self._call(
                self.region_templates.insert_unary,
                project=project,
                region=region,
                instance_template_resource=template,
            )
        return OperationRef.of(op)

    def delete_template(self, project: str, region: str | None, name: str) -> OperationRef:
        if region is None:
            op = self._call(
                self.global_templates.delete_unary, project=project, instance_template=name
            )
        else:
            op = self._call(
                self.region_templates.delete_unary,
                project=project,
                region=region,
                instance_template=name,
            )
        return OperationRef.of(op)

    # --- regional managed instance groups ---------------------------------------------------

    def get_mig(self, project: str, region: str, name: str) -> compute_v1.InstanceGroupManager:
        return self._call(
            self.migs.get, project=project, region=region, instance_group_manager=name
        )

    def patch_mig(self, project: str, region: str, name: str, resource) -> OperationRef:
        """`resource`: an InstanceGroupManager (or its dict) with only the fields to change."""
        op = self._call(
            self.migs.patch_unary,
            project=project,
            region=region,
            instance_group_manager=name,
            instance_group_manager_resource=compute_v1.InstanceGroupManager(resource),
        )
        return OperationRef.of(op)

    def resize_mig(self, project: str, region: str, name: str, size: int) -> OperationRef:
        op = self._call(
            self.migs.resize_unary,
            project=project,
            region=region,
            instance_group_manager=name,
            size=size,
        )
        return OperationRef.of(op)

    def list_managed_instances(
        self, project: str, region: str, name: str
    ) -> list[compute_v1.ManagedInstance]:
        pages = self._call(
            self.migs.list_managed_instances,
            project=project,
            region=region,
            instance_group_manager=name,
        )
        return list(pages)

    def get_autoscaler(self, project: str, region: str, name: str) -> compute_v1.Autoscaler:
        return self._call(
            self.region_autoscalers.get, project=project, region=region, autoscaler=name
        )

    # --- backend services ---------------------------------------------------------------------

    def get_backend_service(self, project: str, name: str, region: str | None = None):
        if region is None:
            return self._call(self.backend_services.get, project=project, backend_service=name)
        return self._call(
            self.region_backend_services.get, project=project, region=region, backend_service=name
        )

    def serving_groups(self, project: str, name: str, region: str | None = None) -> set[str]:
        """Names of the instance groups the backend service sends traffic to."""
        service = self.get_backend_service(project, name, region)
        return {short(backend.group) for backend in service.backends}

    def patch_backend_service(
        self, project: str, name: str, resource, region: str | None = None
    ) -> OperationRef:
        resource = compute_v1.BackendService(resource)
        if region is None:
            op = self._call(
                self.backend_services.patch_unary,
                project=project,
                backend_service=name,
                backend_service_resource=resource,
            )
        else:
            op = self._call(
                self.region_backend_services.patch_unary,
                project=project,
                region=region,
                backend_service=name,
                backend_service_resource=resource,
            )
        return OperationRef.of(op)

    def set_backend_groups(
        self, project: str, name: str, groups: list[str], region: str | None = None
    ) -> OperationRef:
        """Point the service at exactly `groups` (instance group URLs), keeping each kept
        backend's settings; guarded by the service's fingerprint."""
        current = self.get_backend_service(project, name, region)
        by_group = {backend.group: backend for backend in current.backends}
        backends = [
            by_group.get(group) or compute_v1.Backend(group=group, balancing_mode="UTILIZATION")
            for group in groups
        ]
        resource = compute_v1.BackendService(fingerprint=current.fingerprint, backends=backends)
        return self.patch_backend_service(project, name, resource, region)

    # --- zonal instances (the dev VM) ---------------------------------------------------------

    def get_instance(self, project: str, zone: str, name: str) -> compute_v1.Instance:
        return self._call(self.instances.get, project=project, zone=zone, instance=name)

    def set_metadata(
        self, project: str, zone: str, name: str, items: dict[str, str]
    ) -> OperationRef:
        """Set these metadata keys, keeping the others, under the current fingerprint."""
        current = self.get_instance(project, zone, name).metadata
        merged = {item.key: item.value for item in current.items} | items
        metadata = compute_v1.Metadata(
            fingerprint=current.fingerprint,
            items=[compute_v1.Items(key=k, value=v) for k, v in merged.items()],
        )
        op = self._call(
            self.instances.set_metadata_unary,
            project=project,
            zone=zone,
            instance=name,
            metadata_resource=metadata,
        )
        return OperationRef.of(op)

    def reset_instance(self, project: str, zone: str, name: str) -> OperationRef:
        op = self._call(self.instances.reset_unary, project=project, zone=zone, instance=name)
        return OperationRef.of(op)

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

    def get_operation(self, ref: OperationRef | str) -> compute_v1.Operation:
        ref = OperationRef.parse(ref) if isinstance(ref, str) else ref
        return self._operation_call(ref, "get")

    def wait(self, ref: OperationRef | str, timeout: float | None = None) -> compute_v1.Operation:
        """Block until the operation is DONE; raise OperationFailed if it ended in error."""
        ref = OperationRef.parse(ref) if isinstance(ref, str) else ref
        timeout = timeout if timeout is not None else self.operation_timeout
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise OperationTimeout(f"operation {ref} not done after {timeout:g}s")
            try:
                # The server answers within ~2 minutes whether or not the operation is done.
                op = self._operation_call(ref, "wait", timeout=min(left, 150.0) + 1.0)
            except requests.Timeout:
                continue
            if op.status == compute_v1.Operation.Status.DONE:
                if op.error.errors:
                    raise OperationFailed(op)
                return op

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

    def get_build(self, project: str, build_id: str) -> cloudbuild_v1.Build:
        return self._call(self.builds.get_build, project_id=project, id=build_id)

    def wait_build(
        self, project: str, build_id: str, timeout: float | None = None
    ) -> cloudbuild_v1.Build:
        """Poll get_build until the build finishes; raise BuildFailed unless it succeeded."""
        timeout = timeout if timeout is not None else self.operation_timeout
        deadline = time.monotonic() + timeout
        while True:
            build = self.get_build(project, build_id)
            if build.status in BUILD_DONE:
                if build.status != cloudbuild_v1.Build.Status.SUCCESS:
                    raise BuildFailed(build)
                return build
            if time.monotonic() >= deadline:
                raise BuildTimeout(f"build {build_id} still {build.status.name} after {timeout:g}s")
            time.sleep(min(self.poll_interval, max(deadline - time.monotonic(), 0)))

    def copy_image(self, project: str, source: str, destination: str) -> str:
        """Start a build that copies `source` to `destination` (gcrane cp); returns its id."""
        return self.create_build(project, [{"name": GCRANE, "args": ["cp", source, destination]}])

    # --- registry (Docker Registry HTTP API v2) -----------------------------------------------

    @cached_property
    def http(self) -> httpx.Client:
        return httpx.Client(timeout=10.0)

    def _registry(self, image: ImageName) -> tuple[str, dict]:
        if self.registry_url:
            return self.registry_url, {}
        return f"https://{image.host}", {"Authorization": f"Bearer {self._access_token()}"}

    def _access_token(self) -> str:
        import google.auth
        import google.auth.transport.requests

        credentials = getattr(self, "_credentials", None)
        if credentials is None:
            credentials, _ = google.auth.default(scopes=[CLOUD_PLATFORM])
            self._credentials = credentials
        if not credentials.valid:
            credentials.refresh(google.auth.transport.requests.Request())
        return credentials.token

    def get_digest(self, image: str, tag: str | None = None) -> str:
        """The manifest digest of `image` (host/repo:tag or host/repo@digest, or host/repo and
        `tag`), as the registry's Docker-Content-Digest header gives it."""
        name = ImageName.parse(image)
        reference = tag or name.reference
        base, headers = self._registry(name)
        url = f"{base}/v2/{name.repository}/manifests/{reference}"
        headers = headers | {"Accept": ", ".join(MANIFEST_TYPES)}
        try:
            response = self.http.head(url, headers=headers)
            if response.status_code == 200 and "docker-content-digest" not in response.headers:
                response = self.http.get(url, headers=headers)
                if response.status_code == 200:
                    return "sha256:" + hashlib.sha256(response.content).hexdigest()
        except httpx.TransportError as exc:
            raise RegistryError(f"registry unreachable for {image}: {exc}") from exc
        if response.status_code == 404:
            raise ImageNotFound(f"{name.host}/{name.repository}:{reference} not found", 404)
        if response.status_code != 200:
            raise RegistryError(
                f"registry answered {response.status_code} for {name.repository}:{reference}",
                response.status_code,
            )
        return response.headers["docker-content-digest"]
