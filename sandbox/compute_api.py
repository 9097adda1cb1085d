"""Compute Engine v1 REST subset: same paths, verbs and JSON field names as the real API.

Changes go through operations, as on GCP: a request is validated at once (400/404/409/412 in
the API's error shape) and its effect lands when the operation is DONE. An operation that ends
in error changes nothing.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from . import links
from .compute import Instance, Mig, Operation, Project, merge_patch, metadata_items, verb
from .compute_render import (
    backend_health,
    listing,
    managed_instance,
    render_autoscaler,
    render_backend_service,
    render_instance,
    render_mig,
    render_operation,
    render_template,
)
from .compute_validation import (
    NAME,
    check_balancing,
    invalid,
    page,
    refuse_output_only,
    template_reference,
    unknown_fields,
    validate_backends,
    validate_mig_patch,
)
from .fields import BACKEND_SERVICE_FIELDS, BACKEND_SERVICE_OUTPUT, TEMPLATE_FIELDS
from .http import ApiError, Request, Response, Router, not_found

if TYPE_CHECKING:
    from .world import World

PREFIX = "/compute/v1/projects/{project}"
RIGM = "compute.regionInstanceGroupManagers"
# operationType as GCP reports it: older methods say the bare verb, newer ones the full method
# name (recorded responses: instanceTemplates.insert is "compute.instanceTemplates.insert" but
# its delete is "delete"; backendServices.patch is "patch" in either scope).
TEMPLATE_OPERATIONS = {
    "global": ("compute.instanceTemplates.insert", "delete"),
    "regional": (
        "compute.regionInstanceTemplates.insert",
        "compute.regionInstanceTemplates.delete",
    ),
}


def routes(router: Router, world: World) -> None:
    ComputeApi(world).register(router)


class ComputeApi:
    def __init__(self, world: World):
        self.world = world

    def register(self, router: Router) -> None:
        for scope in ("global", "regions/{region}"):
            base = f"{PREFIX}/{scope}/instanceTemplates"
            router.add("GET", base, self.list_templates)
            router.add("POST", base, self.insert_template)
            router.add("GET", f"{base}/{{name}}", self.get_template)
            router.add("DELETE", f"{base}/{{name}}", self.delete_template)

            base = f"{PREFIX}/{scope}/backendServices"
            router.add("GET", base, self.list_backend_services)
            router.add("GET", f"{base}/{{name}}", self.get_backend_service)
            router.add("PATCH", f"{base}/{{name}}", self.patch_backend_service)
            router.add("POST", f"{base}/{{name}}/getHealth", self.backend_service_health)

        migs = f"{PREFIX}/regions/{{region}}/instanceGroupManagers"
        router.add("GET", migs, self.list_migs)
        router.add("GET", f"{migs}/{{name}}", self.get_mig)
        router.add("PATCH", f"{migs}/{{name}}", self.patch_mig)
        router.add("POST", f"{migs}/{{name}}/setInstanceTemplate", self.set_instance_template)
        router.add("POST", f"{migs}/{{name}}/resize", self.resize_mig)
        router.add("POST", f"{migs}/{{name}}/listManagedInstances", self.list_managed_instances)

        autoscalers = f"{PREFIX}/regions/{{region}}/autoscalers"
        router.add("GET", autoscalers, self.list_autoscalers)
        router.add("GET", f"{autoscalers}/{{name}}", self.get_autoscaler)

        instances = f"{PREFIX}/zones/{{zone}}/instances"
        router.add("GET", instances, self.list_instances)
        router.add("GET", f"{instances}/{{name}}", self.get_instance)
        router.add("POST", f"{instances}/{{name}}/setMetadata", self.set_metadata)
        router.add("POST", f"{instances}/{{name}}/reset", self.reset_instance)

        for scope in ("global", "regions/{region}", "zones/{zone}"):
            base = f"{PREFIX}/{scope}/operations/{{operation}}"
            router.add("GET", base, self.get_operation)
            router.add("POST", f"{base}/wait", self.wait_operation, locked=False)

    # --- lookups ------------------------------------------------------------------------------

    @staticmethod
    def scope(request: Request) -> str:
        if "region" in request.params:
            return f"regions/{request.params['region']}"
        if "zone" in request.params:
            return f"zones/{request.params['zone']}"
        return "global"

    def project(self, request: Request) -> tuple[str, Project]:
        name = request.params["project"]
        if name not in self.world.projects:
            raise not_found(f"projects/{name}")
        return name, self.world.projects[name]

    def mig(self, request: Request) -> tuple[str, Mig]:
        project, state = self.project(request)
        path = f"regions/{request.params['region']}/instanceGroupManagers/{request.params['name']}"
        if path not in state.migs:
            raise not_found(f"projects/{project}/{path}")
        return project, state.migs[path]

    def instance(self, request: Request) -> tuple[str, Project, str, Instance]:
        project, state = self.project(request)
        path = f"zones/{request.params['zone']}/instances/{request.params['name']}"
        try:
            return project, state, path, find_instance(state, path)
        except KeyError:
            raise not_found(f"projects/{project}/{path}") from None

    def backend_service(self, request: Request) -> tuple[str, Project, str]:
        project, state = self.project(request)
        path = f"{self.scope(request)}/backendServices/{request.params['name']}"
        if path not in state.backend_services:
            raise not_found(f"projects/{project}/{path}")
        return project, state, path

    def operation(self, request: Request) -> tuple[str, Operation]:
        project, state = self.project(request)
        path = f"{self.scope(request)}/operations/{request.params['operation']}"
        if path not in state.operations:
            raise not_found(f"projects/{project}/{path}")
        return project, state.operations[path]

    # --- operations ---------------------------------------------------------------------------

    def operate(
        self, request: Request, project: str, scope: str, kind: str, target_id: str, effect: dict
    ) -> Response:
        """Start an operation of type `kind` whose `effect` lands when it is DONE.

        A `requestId` seen before returns the first operation again, as GCP does for retries.
        """
        world, state = self.world, self.world.projects[project]
        request_id = request.query.get("requestId", "")
        for op in state.operations.values():
            if request_id and op.request_id == request_id:
                return Response.json(render_operation(world, project, op))
        target, t = effect["path"], world.t
        op = Operation(
            name=f"operation-{int(time.time() * 1000)}-{world.suffix(13)}-{world.suffix(8)}",
            scope=scope,
            id=world.new_id(),
            operation_type=kind,
            target=target,
            target_id=target_id,
            insert_at=t,
            done_at=t + world.operation_time,
            effect=effect,
            request_id=request_id,
        )
        fault = world.faults.operation_fault(kind, f"projects/{project}/{target}")
        if fault and fault["kind"] == "operation_stuck":
            op.done_at = None
        elif fault:
            op.error = {
                "code": fault.get("code", "INTERNAL_ERROR"),
                "message": fault.get("message", "The operation failed (injected by the sandbox)."),
                "httpStatus": int(fault.get("httpStatus", 500)),
                "httpMessage": fault.get("httpMessage", "INTERNAL SERVER ERROR"),
            }
        state.operations[op.path] = op
        world.settle()
        return Response.json(render_operation(world, project, op))

    def get_operation(self, request: Request) -> Response:
        project, op = self.operation(request)
        return Response.json(render_operation(self.world, project, op))

    def wait_operation(self, request: Request) -> Response:
        """Blocks until DONE or `wait_timeout` real seconds (GCP's is 2 minutes); unlocked."""
        world = self.world
        deadline = time.monotonic() + world.wait_timeout
        while True:
            with world.lock:
                world.sync()
                project, op = self.operation(request)
                if op.status(world.t) == "DONE" or time.monotonic() >= deadline:
                    return Response.json(render_operation(world, project, op))
                left = (op.done_at - world.t) if op.done_at is not None else float("inf")
            pause = min(world.clock.real_seconds(left), deadline - time.monotonic(), 0.05)
            time.sleep(max(pause, 0.001))

    # --- instance templates -------------------------------------------------------------------

    @staticmethod
    def paged(request: Request, kind: str, project: str, path: str, items: list) -> Response:
        """One page of a list method's answer (maxResults, pageToken → nextPageToken)."""
        items, next_page = page(request.query, items, f"projects/{project}/{path}")
        return Response.json(listing(kind, project, path, items, next_page))

    def listed(self, request: Request, store: str, resource: str, kind: str, render=None):
        """List the resources of one collection in the request's scope, as the API does."""
        project, state = self.project(request)
        path = f"{self.scope(request)}/{resource}"
        items = [
            render(project, state, body) if render else body
            for p, body in getattr(state, store).items()
            if p.startswith(f"{path}/")
        ]
        return self.paged(request, kind, project, path, items)

    def list_templates(self, request: Request) -> Response:
        return self.listed(
            request,
            "templates",
            "instanceTemplates",
            "compute#instanceTemplateList",
            lambda project, state, body: render_template(body),
        )

    def get_template(self, request: Request) -> Response:
        project, state = self.project(request)
        path = f"{self.scope(request)}/instanceTemplates/{request.params['name']}"
        if path not in state.templates:
            raise not_found(f"projects/{project}/{path}")
        return Response.json(render_template(state.templates[path]))

    def insert_template(self, request: Request) -> Response:
        project, state = self.project(request)
        body = request.json()
        unknown_fields(body, TEMPLATE_FIELDS, "instance_template_resource")
        name = body.get("name") or ""
        if not NAME.match(name):
            why = "Must be a match of regex '[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?'"
            raise invalid("resource.name", name, why)
        if not isinstance(body.get("properties"), dict):
            raise invalid("resource.properties", body.get("properties"), "Required.")
        refuse_output_only(body["properties"])
        scope = self.scope(request)
        path = f"{scope}/instanceTemplates/{name}"
        inserting = any(
            op.target == path and not op.applied and verb(op.operation_type) == "insert"
            for op in state.operations.values()
        )
        if path in state.templates or inserting:
            raise ApiError(409, f"The resource 'projects/{project}/{path}' already exists")
        stored = {k: v for k, v in body.items() if k not in ("id", "selfLink", "kind")}
        stored |= {
            "kind": "compute#instanceTemplate",
            "id": self.world.new_id(),
            "selfLink": links.url(project, path),
        }
        if scope != "global":
            stored["region"] = links.url(project, scope)
        effect = {"kind": "insert_template", "path": path, "body": stored}
        kind = TEMPLATE_OPERATIONS["global" if scope == "global" else "regional"][0]
        return self.operate(request, project, scope, kind, stored["id"], effect)

    def delete_template(self, request: Request) -> Response:
        project, state = self.project(request)
        scope = self.scope(request)
        path = f"{scope}/instanceTemplates/{request.params['name']}"
        if path not in state.templates:
            raise not_found(f"projects/{project}/{path}")
        for mig in state.migs.values():
            in_use = path in self.world.version_templates(project, mig)
            if in_use or any(i.template == path for i in mig.instances):
                raise ApiError(
                    400,
                    f"The instance_template resource 'projects/{project}/{path}' is already "
                    f"being used by 'projects/{project}/{mig.path}'",
                    "resourceInUseByAnotherResource",
                )
        effect = {"kind": "delete_template", "path": path}
        kind = TEMPLATE_OPERATIONS["global" if scope == "global" else "regional"][1]
        return self.operate(request, project, scope, kind, state.templates[path]["id"], effect)

    # --- regional managed instance groups ------------------------------------------------------

    def list_migs(self, request: Request) -> Response:
        project, state = self.project(request)
        region = request.params["region"]
        items = [
            render_mig(self.world, project, m) for m in state.migs.values() if m.region == region
        ]
        path = f"regions/{region}/instanceGroupManagers"
        return self.paged(request, "compute#regionInstanceGroupManagerList", project, path, items)

    def get_mig(self, request: Request) -> Response:
        project, mig = self.mig(request)
        return Response.json(render_mig(self.world, project, mig))

    def patch_mig(self, request: Request) -> Response:
        project, mig = self.mig(request)
        patch = validate_mig_patch(self.world, project, mig, request.json())
        effect = {"kind": "patch_mig", "path": mig.path, "patch": patch}
        scope = f"regions/{mig.region}"
        return self.operate(request, project, scope, f"{RIGM}.patch", mig.id, effect)

    def set_instance_template(self, request: Request) -> Response:
        project, mig = self.mig(request)
        body = request.json()
        unknown_fields(body, {"instanceTemplate"}, "region_instance_group_managers_set_template")
        template = template_reference(
            self.world, project, body.get("instanceTemplate"), "resource.instanceTemplate"
        )
        patch = {"versions": [{"instanceTemplate": template}]}
        effect = {"kind": "patch_mig", "path": mig.path, "patch": patch}
        scope = f"regions/{mig.region}"
        return self.operate(request, project, scope, f"{RIGM}.setInstanceTemplate", mig.id, effect)

    def resize_mig(self, request: Request) -> Response:
        project, mig = self.mig(request)
        size = request.query.get("size", "")
        if not size.isdigit():
            raise invalid("size", size, "Must be a non-negative integer.")
        effect = {"kind": "resize_mig", "path": mig.path, "size": int(size)}
        scope = f"regions/{mig.region}"
        return self.operate(request, project, scope, f"{RIGM}.resize", mig.id, effect)

    def list_managed_instances(self, request: Request) -> Response:
        """Pages only for a PAGINATED group: a PAGELESS one (GCP's default) ignores maxResults
        and pageToken and answers every instance at once."""
        project, mig = self.mig(request)
        items = [managed_instance(self.world, project, mig, i) for i in mig.instances]
        body = {"managedInstances": items}
        if mig.config.get("listManagedInstancesResults") == "PAGINATED":
            where = f"projects/{project}/{mig.path}/listManagedInstances"
            body["managedInstances"], next_page = page(request.query, items, where)
            if next_page:
                body["nextPageToken"] = next_page
        return Response.json(body)

    # --- zonal instances: the dev VM, and MIG members to read or reset ------------------------

    def list_instances(self, request: Request) -> Response:
        project, state = self.project(request)
        zone = request.params["zone"]
        items = [
            render_instance(self.world, project, vm) for vm in state.vms.values() if vm.zone == zone
        ]
        for mig in state.migs.values():
            items += [
                render_instance(self.world, project, i, mig)
                for i in mig.instances
                if i.zone == zone and not i.deleting and not i.failed
            ]
        return self.paged(
            request, "compute#instanceList", project, f"zones/{zone}/instances", items
        )

    def get_instance(self, request: Request) -> Response:
        project, state, _, instance = self.instance(request)
        mig = find_mig_of(state, instance)
        return Response.json(render_instance(self.world, project, instance, mig))

    def set_metadata(self, request: Request) -> Response:
        project, state, path, instance = self.instance(request)
        if path not in state.vms:
            raise ApiError(
                400,
                "The sandbox sets metadata only on standalone instances; "
                "change a managed instance's template instead.",
            )
        body = request.json()
        unknown_fields(body, {"fingerprint", "items", "kind"}, "metadata_resource")
        current = render_instance(self.world, project, instance)["metadata"]["fingerprint"]
        if body.get("fingerprint") != current:
            raise ApiError(412, "Supplied fingerprint does not match current metadata fingerprint.")
        keys = set()
        for n, item in enumerate(body.get("items", [])):
            if not isinstance(item, dict) or not item.get("key"):
                raise invalid(f"metadata.items[{n}].key", item, "A key is required.")
            if item["key"] in keys:
                raise invalid(f"metadata.items[{n}].key", item["key"], "Duplicate key.")
            keys.add(item["key"])
        items = [{"key": i["key"], "value": i.get("value", "")} for i in body.get("items", [])]
        effect = {"kind": "set_metadata", "path": path, "items": items}
        scope = f"zones/{instance.zone}"
        return self.operate(request, project, scope, "setMetadata", instance.id, effect)

    def reset_instance(self, request: Request) -> Response:
        project, _, path, instance = self.instance(request)
        effect = {"kind": "reset", "path": path}
        return self.operate(
            request, project, f"zones/{instance.zone}", "reset", instance.id, effect
        )

    # --- regional autoscalers (read-only: seeded from the topology) ---------------------------

    def list_autoscalers(self, request: Request) -> Response:
        return self.listed(
            request,
            "autoscalers",
            "autoscalers",
            "compute#regionAutoscalerList",
            lambda project, state, body: render_autoscaler(self.world, project, state, body),
        )

    def get_autoscaler(self, request: Request) -> Response:
        project, state = self.project(request)
        path = f"regions/{request.params['region']}/autoscalers/{request.params['name']}"
        if path not in state.autoscalers:
            raise not_found(f"projects/{project}/{path}")
        return Response.json(render_autoscaler(self.world, project, state, state.autoscalers[path]))

    # --- backend services ---------------------------------------------------------------------

    def list_backend_services(self, request: Request) -> Response:
        return self.listed(
            request,
            "backend_services",
            "backendServices",
            "compute#backendServiceList",
            lambda project, state, body: render_backend_service(body),
        )

    def get_backend_service(self, request: Request) -> Response:
        _, state, path = self.backend_service(request)
        return Response.json(render_backend_service(state.backend_services[path]))

    def patch_backend_service(self, request: Request) -> Response:
        project, state, path = self.backend_service(request)
        current = render_backend_service(state.backend_services[path])
        body = request.json()
        unknown_fields(body, BACKEND_SERVICE_FIELDS, "backend_service_resource")
        if body.get("name") not in (None, current["name"]):
            raise invalid("resource.name", body["name"], "The name cannot be changed.")
        if body.get("fingerprint") not in (None, "", current["fingerprint"]):
            raise ApiError(412, "Supplied fingerprint does not match current fingerprint.")
        patch = {k: v for k, v in body.items() if k not in BACKEND_SERVICE_OUTPUT}
        if "backends" in patch:
            patch["backends"] = validate_backends(self.world, project, patch["backends"])
        merged = merge_patch(current, patch)
        check_balancing(merged.get("backends", []), merged.get("protocol", "HTTP"))
        effect = {"kind": "patch_backend_service", "path": path, "patch": patch}
        return self.operate(request, project, self.scope(request), "patch", current["id"], effect)

    def backend_service_health(self, request: Request) -> Response:
        """getHealth: the load balancer's view of one backend group of the service."""
        project, state, path = self.backend_service(request)
        body = request.json()
        unknown_fields(body, {"group"}, "resource_group_reference_resource")
        group = body.get("group") or ""
        service = state.backend_services[path]
        backends = {links.key(project, b["group"])[1] for b in service.get("backends", [])}
        owner, group_path = links.key(project, group)
        mig = next((m for m in state.migs.values() if m.group_path == group_path), None)
        if owner != project or group_path not in backends or mig is None:
            raise invalid(
                "resource.group",
                group,
                f"Instance group 'projects/{owner}/{group_path}' is not a backend of backend "
                f"service 'projects/{project}/{path}'.",
            )
        return Response.json(backend_health(self.world, project, mig, service))


def apply_effect(world: World, project: str, op: Operation, t: float) -> None:
    """An operation finished: make its change. A change that no longer applies fails the op."""
    state = world.projects[project]
    effect = op.effect
    kind, path = effect["kind"], effect["path"]
    try:
        if kind == "insert_template":
            state.templates[path] = effect["body"] | {"creationTimestamp": world.rfc3339(t)}
        elif kind == "delete_template":
            state.templates.pop(path, None)
        elif kind == "patch_mig":
            mig = state.migs[path]
            mig.config = merge_patch(mig.config, effect["patch"])
            mig.generation += 1
        elif kind == "resize_mig":
            mig = state.migs[path]
            mig.config["targetSize"] = effect["size"]
            mig.generation += 1
        elif kind == "patch_backend_service":
            state.backend_services[path] = merge_patch(
                state.backend_services[path], effect["patch"]
            )
        elif kind == "set_metadata":
            vm = state.vms[path]
            before = metadata_items(vm.body)
            vm.body["metadata"] = {"items": effect["items"]}
            after = metadata_items(vm.body)
            for key in set(before) | set(after):
                if key.endswith("-image") and before.get(key) != after.get(key):
                    vm.services[key.removesuffix("-image")] = t + world.boot_time / 2
        elif kind == "reset":
            instance = find_instance(state, path)
            if instance.template:
                healthy = world.template_healthy(project, instance.template)
                instance.boot(t, world.boot_time, healthy, "RESTARTING")
            else:
                instance.started_at, instance.ready_at = t, t + world.boot_time
    except KeyError:
        op.error = {
            "code": "RESOURCE_NOT_FOUND",
            "message": f"The resource '{links.url(project, path)}' was not found",
            "httpStatus": 404,
            "httpMessage": "NOT FOUND",
        }


def find_instance(state, path: str) -> Instance:
    if path in state.vms:
        return state.vms[path]
    zone, name = path.split("/")[1], path.rsplit("/", 1)[-1]
    for mig in state.migs.values():
        for i in mig.instances:
            if i.zone == zone and i.name == name and not i.deleting and not i.failed:
                return i
    raise KeyError(path)


def find_mig_of(state, instance: Instance) -> Mig | None:
    return next((m for m in state.migs.values() if instance in m.instances), None)
