"""Instance-group status for the dashboards, read through the GCP adapter on beat.

Each deployable component gets one StatSample of kind `mig` per read: its groups (one for a
rolling MIG, both colours for blue-green, the VM for dev), their instances by zone with status,
template and health, target size, `isStable`, and the autoscaler's policy when one is attached.
Pages show the latest sample and never call GCP themselves.
"""

from __future__ import annotations

from collections import Counter

from django.utils import timezone

from gcp.names import short

from .models import Component, Environment, StatSample

DEPLOYABLE = (
    Component.DeployKind.ROLLING_MIG,
    Component.DeployKind.BLUE_GREEN,
    Component.DeployKind.SINGLE_VM,
)


def describe_group(gcp, project: str, region: str, name: str) -> dict:
    """One regional MIG as the panel shows it."""
    mig = gcp.get_mig(project, region, name)
    zones: dict[str, list[dict]] = {}
    for managed in gcp.list_managed_instances(project, region, name):
        zones.setdefault(managed.zone, []).append(
            {
                "name": managed.name,
                "status": managed.status or "PROVISIONING",
                "action": managed.action,
                "template": short(managed.template),
                "health": managed.health[0] if managed.health else "",
            }
        )
    versions = [{"template": short(v.template), "target": v.target} for v in mig.versions]
    group = {
        "name": name,
        "group": short(mig.group),
        "target": mig.target_size,
        "stable": mig.stable,
        "reached": mig.reached,
        "versions": versions,
        "zones": dict(sorted(zones.items())),
        "templates": dict(
            Counter(i["template"] for instances in zones.values() for i in instances)
        ),
        "autoscaler": None,
    }
    if mig.autoscaler:
        scaler = gcp.get_autoscaler(project, region, short(mig.autoscaler))
        group["autoscaler"] = {
            "name": scaler.name,
            "min": scaler.min,
            "max": scaler.max,
            "current": scaler.recommended,
            "status": scaler.status,
            "cpu_target": scaler.cpu_target,
        }
    return group


def describe(component: Component, gcp) -> dict:
    """What runs for the component, by its deploy kind."""
    env = component.environment
    project, region = env.gcp_project, env.region
    if component.deploy_kind == Component.DeployKind.SINGLE_VM:
        vm = gcp.get_instance(project, component.instance_zone, component.instance)
        return {
            "vm": {
                "name": vm.name,
                "zone": component.instance_zone,
                "status": vm.status,
                "image": vm.metadata.get(component.image_metadata_key, ""),
            }
        }
    names = (
        [component.mig]
        if component.deploy_kind == Component.DeployKind.ROLLING_MIG
        else [component.blue_mig, component.green_mig]
    )
    groups = [describe_group(gcp, project, region, name) for name in names]
    data = {"groups": groups}
    if component.deploy_kind == Component.DeployKind.BLUE_GREEN:
        serving = gcp.serving_groups(project, component.backend_service)
        data["live"] = next((g["name"] for g in groups if g["group"] in serving), None)
    return data


def read(component: Component, gcp) -> StatSample:
    """One sample for the component; a failed read is stored too, with the reason."""
    try:
        data, problems = describe(component, gcp), []
    except Exception as exc:  # GCP unreachable, throttled, a group missing: say so on the panel
        message = getattr(exc, "message", None) or str(exc)
        data, problems = {}, [f"instance groups unreadable: {type(exc).__name__}: {message}"[:300]]
    return StatSample(
        component=component,
        kind=StatSample.Kind.MIG,
        at=timezone.now(),
        ok=not problems,
        data=data,
        problems=problems,
    )


def collect(environment_id: int, gcp=None) -> list[StatSample]:
    """Read every deployable component of an environment and store a sample each."""
    from gcp.adapter import GcpAdapter

    components = Component.objects.filter(
        environment_id=environment_id, deploy_kind__in=DEPLOYABLE
    ).select_related("environment")
    if not components:
        return []
    gcp = gcp or GcpAdapter.from_settings()
    stored = StatSample.objects.bulk_create([read(c, gcp) for c in components])
    Environment.readings_stored(environment_id)
    return stored
