"""How Compute Engine shows its resources: the JSON bodies, in the API's field names."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

from . import links
from .compute import Instance, Mig, Operation, fingerprint
from .fields import ACTIONS
from .rollout import surge_and_unavailable, version_counts, zone_plan

if TYPE_CHECKING:
    from .world import World


def render_operation(world: World, project: str, op: Operation) -> dict:
    t = world.t
    status = op.status(t)
    body = {
        "kind": "compute#operation",
        "id": op.id,
        "name": op.name,
        "operationType": op.operation_type,
        "targetLink": links.url(project, op.target),
        "targetId": op.target_id,
        "status": status,
        "user": "gantry@sandbox.iam.gserviceaccount.com",
        "progress": 100 if status == "DONE" else 0,
        "insertTime": world.rfc3339(op.insert_at),
        "selfLink": links.url(project, op.path),
    }
    if op.scope.startswith(("regions/", "zones/")):
        body[op.scope.split("/")[0][:-1]] = links.url(project, op.scope)
    if status != "PENDING":
        body["startTime"] = world.rfc3339(op.insert_at + 0.1)
    if status == "DONE":
        body["endTime"] = world.rfc3339(op.done_at)
        if op.error:
            body["error"] = {"errors": [{"code": op.error["code"], "message": op.error["message"]}]}
            body["httpErrorStatusCode"] = op.error["httpStatus"]
            body["httpErrorMessage"] = op.error["httpMessage"]
    return body


def managed_instance(world: World, project: str, mig: Mig, i: Instance) -> dict:
    t = world.t
    versions = {
        links.key(project, v["instanceTemplate"])[1]: v.get("name", "")
        for v in mig.config["versions"]
    }
    body = {
        "instance": links.url(project, f"zones/{i.zone}/instances/{i.name}"),
        "id": i.id,
        "name": i.name,
        "instanceStatus": i.status(t),
        "currentAction": i.current_action(t),
        "version": {"instanceTemplate": links.url(project, i.template)},
    }
    if versions.get(i.template):
        body["version"]["name"] = versions[i.template]
    if i.failed:  # no VM exists: no id, no status, no health; the reason is the last attempt's
        del body["id"], body["instanceStatus"]
        body["lastAttempt"] = {"errors": {"errors": [i.error]}}
        return body
    for policy in mig.config.get("autoHealingPolicies", []):
        body.setdefault("instanceHealth", []).append(
            {"healthCheck": policy["healthCheck"], "detailedHealthState": i.health(t)}
        )
    return body


def backend_health(world: World, project: str, mig: Mig, service: dict) -> dict:
    """`backendServices.getHealth` for the group of `mig`: every VM of the group, as the load
    balancer's own health check sees it. A VM still booting is a member that fails its probes,
    and one being deleted takes no new traffic: both UNHEALTHY (HealthStatus.healthState has
    only HEALTHY and UNHEALTHY; DRAINING is a network endpoint's state). A VM whose creation
    failed does not exist, so it is not listed."""
    t = world.t
    ports = {p["name"]: p["port"] for p in mig.config.get("namedPorts", [])}
    port = ports.get(service.get("portName", ""), service.get("port", 80))
    statuses = []
    for i in mig.instances:
        if i.failed:
            continue
        n = int(i.id)
        statuses.append(
            {
                "instance": links.url(project, f"zones/{i.zone}/instances/{i.name}"),
                "ipAddress": f"10.{128 + mig.zones.index(i.zone)}.{n // 256 % 256}.{n % 256}",
                "port": port,
                "healthState": "HEALTHY" if world.lb_healthy(mig, i, t) else "UNHEALTHY",
            }
        )
    body = {"kind": "compute#backendServiceGroupHealth"}
    if statuses:
        body["healthStatus"] = statuses
    return body


def render_template(body: dict) -> dict:
    """A stored template as GCP shows it: with the output-only fields it fills in (disk index
    and kind, interface name nicN and kind, metadata kind and fingerprint)."""
    shown = copy.deepcopy(body)
    properties = shown.get("properties", {})
    for n, disk in enumerate(properties.get("disks", [])):
        disk.setdefault("deviceName", f"persistent-disk-{n}")
        disk |= {"index": n, "kind": "compute#attachedDisk"}
    for n, interface in enumerate(properties.get("networkInterfaces", [])):
        interface |= {"name": f"nic{n}", "kind": "compute#networkInterface"}
        for access in interface.get("accessConfigs", []):
            access["kind"] = "compute#accessConfig"
    metadata = properties.setdefault("metadata", {})
    metadata["fingerprint"] = fingerprint(metadata.get("items", []))
    metadata["kind"] = "compute#metadata"
    return shown


def render_mig(world: World, project: str, mig: Mig) -> dict:
    t = world.t
    config = mig.config
    size = config.get("targetSize", 0)
    templates = world.version_templates(project, mig)
    plan = zone_plan(mig, templates)
    actions = dict.fromkeys(ACTIONS, 0)
    for i in mig.instances:
        actions[i.current_action(t).lower()] += 1
    live = mig.live()
    reached = (
        all(
            sum(1 for i in live if i.zone == zone and i.template == tmpl) == n
            for zone, wanted in plan.items()
            for tmpl, n in wanted.items()
        )
        and len(live) == size
    )
    stable = actions["none"] == len(mig.instances) and len(live) == size
    surge, unavailable = surge_and_unavailable(mig)
    policy = dict(config.get("updatePolicy", {}))
    policy["maxSurge"] = dict(policy.get("maxSurge") or {"fixed": surge}) | {"calculated": surge}
    policy["maxUnavailable"] = dict(policy.get("maxUnavailable") or {"fixed": unavailable}) | {
        "calculated": unavailable
    }
    versions = []
    for version, count in zip(config["versions"], version_counts(mig), strict=True):
        shown = dict(version)
        if "targetSize" in shown:
            shown["targetSize"] = dict(shown["targetSize"]) | {"calculated": count}
        versions.append(shown)
    body = {
        "kind": "compute#instanceGroupManager",
        "id": mig.id,
        "creationTimestamp": world.rfc3339(mig.created_at),
        "name": mig.name,
        "region": links.url(project, f"regions/{mig.region}"),
        "selfLink": links.url(project, mig.path),
        "instanceGroup": links.url(project, mig.group_path),
        "baseInstanceName": config.get("baseInstanceName", mig.name),
        "fingerprint": mig.fingerprint(),
        "targetSize": size,
        "versions": versions,
        "updatePolicy": policy,
        "distributionPolicy": {
            "zones": [{"zone": links.url(project, f"zones/{z}")} for z in mig.zones],
            "targetShape": config.get("distributionPolicy", {}).get("targetShape", "EVEN"),
        },
        "currentActions": actions,
        "status": {
            "isStable": stable,
            "versionTarget": {"isReached": reached},
            "stateful": {"hasStatefulConfig": False, "perInstanceConfigs": {"allEffective": True}},
            "allInstancesConfig": {"effective": True},
        },
        "listManagedInstancesResults": config.get("listManagedInstancesResults", "PAGELESS"),
    }
    for path, autoscaler in world.projects[project].autoscalers.items():
        if links.name(autoscaler["target"]) == mig.name:
            body["status"]["autoscaler"] = links.url(project, path)
    if len(config["versions"]) == 1:
        body["instanceTemplate"] = config["versions"][0]["instanceTemplate"]
    for key in ("autoHealingPolicies", "namedPorts", "description"):
        if config.get(key):
            body[key] = config[key]
    return body


def render_instance(world: World, project: str, i: Instance, mig: Mig | None = None) -> dict:
    t = world.t
    if mig is not None:
        template = world.projects[project].templates.get(i.template, {})
        properties = template.get("properties", {})
        items = [
            *properties.get("metadata", {}).get("items", []),
            {"key": "instance-template", "value": links.url(project, i.template)},
            {"key": "created-by", "value": links.url(project, mig.group_path)},
        ]
        base = {
            "machineType": properties.get("machineType", "e2-medium"),
            "labels": properties.get("labels", {}),
            "metadata": {"items": items},
        }
    else:
        base = i.body
    metadata = base.get("metadata", {})
    machine = base.get("machineType", "e2-medium")
    if "/" not in machine:
        machine = links.url(project, f"zones/{i.zone}/machineTypes/{machine}")
    body = {
        "kind": "compute#instance",
        "id": i.id,
        "name": i.name,
        "creationTimestamp": world.rfc3339(i.created_at),
        "zone": links.url(project, f"zones/{i.zone}"),
        "machineType": machine,
        "status": i.status(t),
        "selfLink": links.url(project, f"zones/{i.zone}/instances/{i.name}"),
        "metadata": {
            "kind": "compute#metadata",
            "fingerprint": fingerprint(metadata.get("items", [])),
            "items": metadata.get("items", []),
        },
        "lastStartTimestamp": world.rfc3339(i.started_at),
        "cpuPlatform": "Intel Broadwell",
        "fingerprint": fingerprint([i.name, i.template, metadata.get("items", [])]),
    }
    for key in ("labels", "networkInterfaces", "disks", "description", "tags"):
        if base.get(key):
            body[key] = base[key]
    return body


def render_autoscaler(world: World, project: str, state, body: dict) -> dict:
    """An autoscaler recommends what its MIG already runs: the sandbox has no load to react to."""
    mig = next((m for m in state.migs.values() if m.name == links.name(body["target"])), None)
    path = f"regions/{body['region']}/autoscalers/{body['name']}"
    return {
        "kind": "compute#autoscaler",
        "id": body["id"],
        "name": body["name"],
        "region": links.url(project, f"regions/{body['region']}"),
        "selfLink": links.url(project, path),
        "target": body["target"],
        "autoscalingPolicy": body["autoscalingPolicy"],
        "recommendedSize": mig.config.get("targetSize", 0) if mig else 0,
        "status": "ACTIVE" if mig else "ERROR",
    }


def render_backend_service(body: dict) -> dict:
    shown = dict(body)
    shown["fingerprint"] = fingerprint({k: v for k, v in body.items() if k != "fingerprint"})
    return shown


def listing(kind: str, project: str, path: str, items: list[dict], next_page: str = "") -> dict:
    body = {
        "kind": kind,
        "id": f"projects/{project}/{path}",
        "items": items,
        "selfLink": links.url(project, path),
    }
    if next_page:
        body["nextPageToken"] = next_page
    return body
