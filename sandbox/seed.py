"""Seeding from Gantry's topology YAML, read as plain data.

Each environment becomes a project (its `gcp_project`) holding, for each deployable component:
an instance template `<mig>-tmpl-v1`, its regional MIG (or blue and green MIGs) with instances
spread over the environment's zones, its backend service, and registry images tagged
`<env>-v1` and `<env>-latest`. `single_vm` components share one VM whose metadata key
`<component>-image` names the image each runs.
"""

from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path

import yaml

from . import links
from .compute import Instance, Mig, Project
from .registry import DOCKER_MANIFEST, ImageRef, fake_manifest
from .rollout import split

SEEDED_AGE = 86_400.0  # seeded instances booted a day before the sandbox started


def load_topology(path: str | Path) -> dict:
    path = Path(path)
    return copy.deepcopy(_parse(str(path), path.stat().st_mtime))


@lru_cache(maxsize=8)
def _parse(path: str, mtime: float) -> dict:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(Path(path).read_text(), Loader=loader) or {}


def seed(world, topology: dict) -> None:
    for env_name, env in (topology.get("environments") or {}).items():
        seed_environment(world, env_name, env)


def seed_environment(world, env_name: str, env: dict) -> None:
    project = env["gcp_project"]
    state = world.projects.setdefault(project, Project())
    zones = list(env.get("zones") or [])
    region = env.get("region") or zones[0].rsplit("-", 1)[0]
    registry = env.get("registry", f"{region}-docker.pkg.dev/{project}/registry")
    components = {}
    for name, component in (env.get("components") or {}).items():
        deploy = dict(component.get("deploy") or {"kind": "none"})
        components[name] = deploy | {"port": component.get("port")}
        if deploy.get("kind", "none") == "none":
            continue
        image = f"{registry}/{deploy.get('image', name)}"
        digest = push_seed_images(world, image, env_name)
        running = f"{image}@{digest}"
        network = (env.get("networks") or {}).get(component.get("network"), {}).get("vpc")
        if deploy["kind"] == "single_vm":
            seed_vm(world, state, project, deploy, name, running)
            continue
        groups = {
            "rolling_mig": [(deploy.get("mig"), deploy.get("size", 1))],
            "blue_green": [
                (deploy.get("blue_mig"), deploy.get("size", 1)),
                (deploy.get("green_mig"), 0),
            ],
        }.get(deploy["kind"], [])
        health_check = links.url(project, f"global/healthChecks/{deploy['backend_service']}-hc")
        for mig_name, size in groups:
            template = seed_template(
                world,
                state,
                project,
                region,
                f"{mig_name}-tmpl-v1",
                name,
                env_name,
                running,
                deploy.get("machine_type", "e2-medium"),
                network,
            )
            seed_mig(
                world,
                state,
                project,
                region,
                zones,
                mig_name,
                template,
                size,
                health_check,
                component.get("port"),
            )
        seed_backend_service(
            world, state, project, deploy["backend_service"], groups[0][0], region, health_check
        )
        scaling = (component.get("options") or {}).get("autoscaler")
        if scaling and deploy["kind"] == "rolling_mig":
            seed_autoscaler(world, state, project, region, groups[0][0], scaling)
    world.environments[env_name] = {
        "project": project,
        "region": region,
        "zones": zones,
        "registry": registry,
        "components": components,
    }


def push_seed_images(world, image: str, env_name: str) -> str:
    ref = ImageRef(image)
    body = fake_manifest(f"{image}:{env_name}-v1")
    digest = ""
    for tag in (f"{env_name}-v1", f"{env_name}-latest"):
        digest = world.registry.put(ref.repository, tag, body, DOCKER_MANIFEST)
    return digest


def seed_template(
    world, state, project, region, name, component, env_name, image, machine, network
) -> str:
    path = f"regions/{region}/instanceTemplates/{name}"
    interface = {"network": links.url(project, f"global/networks/{network or 'default'}")}
    state.templates[path] = {
        "kind": "compute#instanceTemplate",
        "id": world.new_id(),
        "name": name,
        "description": f"{component} for {env_name}, seeded by the sandbox",
        "creationTimestamp": world.rfc3339(world.t - SEEDED_AGE),
        "selfLink": links.url(project, path),
        "region": links.url(project, f"regions/{region}"),
        "properties": {
            "machineType": machine,
            "labels": {"component": component, "environment": env_name},
            "metadata": {"items": [{"key": f"{component}-image", "value": image}]},
            "tags": {"items": [component]},
            "disks": [
                {
                    "type": "PERSISTENT",
                    "boot": True,
                    "mode": "READ_WRITE",
                    "autoDelete": True,
                    "initializeParams": {
                        "sourceImage": "projects/cos-cloud/global/images/family/cos-stable",
                        "diskSizeGb": "20",
                    },
                }
            ],
            "networkInterfaces": [interface],
        },
    }
    return path


def seed_autoscaler(world, state, project, region, mig_name, scaling: dict):
    """The component's `options.autoscaler` ({min, max, cpu_target}) as a regional autoscaler."""
    name = f"{mig_name}-autoscaler"
    state.autoscalers[f"regions/{region}/autoscalers/{name}"] = {
        "id": world.new_id(),
        "name": name,
        "region": region,
        "target": links.url(project, f"regions/{region}/instanceGroupManagers/{mig_name}"),
        "autoscalingPolicy": {
            "minNumReplicas": int(scaling.get("min", 1)),
            "maxNumReplicas": int(scaling.get("max", 1)),
            "cpuUtilization": {"utilizationTarget": float(scaling.get("cpu_target", 0.6))},
            "coolDownPeriodSec": 60,
            "mode": "ON",
        },
    }


def seed_mig(world, state, project, region, zones, name, template, size, health_check, port):
    t = world.t - SEEDED_AGE
    mig = Mig(
        name=name,
        project=project,
        region=region,
        id=world.new_id(),
        created_at=t,
        zones=zones,
        config={
            "baseInstanceName": name.removesuffix("-mig"),
            "targetSize": size,
            "versions": [{"name": "v1", "instanceTemplate": links.url(project, template)}],
            "updatePolicy": {
                "type": "PROACTIVE",
                "minimalAction": "REPLACE",
                "instanceRedistributionType": "PROACTIVE",
                "replacementMethod": "SUBSTITUTE",
                "maxSurge": {"fixed": len(zones)},
                "maxUnavailable": {"fixed": len(zones)},
            },
            "autoHealingPolicies": [{"healthCheck": health_check, "initialDelaySec": 300}],
            "namedPorts": [{"name": "http", "port": port or 80}],
            # PAGINATED, so listManagedInstances honours maxResults and pageToken (a PAGELESS
            # group, GCP's default, answers everything at once).
            "listManagedInstancesResults": "PAGINATED",
        },
    )
    for zone, count in zip(zones, split(size, len(zones)), strict=True):
        for _ in range(count):
            instance = Instance(
                f"{mig.config['baseInstanceName']}-{world.suffix()}",
                zone,
                world.new_id(),
                t,
                t,
                t,
                t,
                template=template,
                action="CREATING",
            )
            mig.instances.append(instance)
    state.migs[mig.path] = mig


def seed_backend_service(world, state, project, name, group_mig, region, health_check):
    path = f"global/backendServices/{name}"
    state.backend_services[path] = {
        "kind": "compute#backendService",
        "id": world.new_id(),
        "name": name,
        "creationTimestamp": world.rfc3339(world.t - SEEDED_AGE),
        "selfLink": links.url(project, path),
        "protocol": "HTTP",
        "portName": "http",
        "port": 80,
        "timeoutSec": 30,
        "loadBalancingScheme": "EXTERNAL_MANAGED",
        "sessionAffinity": "NONE",
        "healthChecks": [health_check],
        "connectionDraining": {"drainingTimeoutSec": 300},
        "backends": [
            {
                "group": links.url(project, f"regions/{region}/instanceGroups/{group_mig}"),
                "balancingMode": "UTILIZATION",
                "capacityScaler": 1.0,
            }
        ],
    }


def seed_vm(world, state, project, deploy, component, image) -> None:
    zone, name = deploy["zone"], deploy["instance"]
    path = f"zones/{zone}/instances/{name}"
    if path not in state.vms:
        t = world.t - SEEDED_AGE
        state.vms[path] = Instance(
            name,
            zone,
            world.new_id(),
            t,
            t,
            t,
            t,
            action="CREATING",
            body={
                "machineType": deploy.get("machine_type", "e2-standard-8"),
                "labels": {"role": "dev-host"},
                "metadata": {"items": []},
            },
        )
    state.vms[path].body["metadata"]["items"].append({"key": f"{component}-image", "value": image})
