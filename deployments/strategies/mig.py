"""Helpers for strategies that run on regional managed instance groups."""

from __future__ import annotations

from collections import defaultdict

from google.api_core.exceptions import NotFound

from ..engine import Step
from ..resources import short, zone_of
from .base import template_location, template_name


def counts(instances) -> dict:
    """Instances by zone and template: {'versions': [...], 'zones': {zone: [n per version]}}."""
    table: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    versions: list[str] = []
    for instance in instances:
        zone = zone_of(instance.instance)
        template = short(instance.version.instance_template)
        if template not in versions:
            versions.append(template)
        table[zone][template] += 1
    return {
        "versions": versions,
        "zones": {zone: [by[v] for v in versions] for zone, by in sorted(table.items())},
    }


def healthy(instance) -> bool:
    if instance.instance_status != "RUNNING" or instance.current_action != "NONE":
        return False
    states = [h.detailed_health_state for h in instance.instance_health]
    return all(state == "HEALTHY" for state in states)


class MigTarget:
    """One MIG of the deployment's component, with the calls the strategies make on it."""

    def __init__(self, step: Step, name: str):
        self.step, self.name, self.gcp = step, name, step.gcp

    def get(self):
        return self.gcp.get_mig(self.step.project, self.step.region, self.name)

    def instances(self):
        return self.gcp.list_managed_instances(self.step.project, self.step.region, self.name)

    def patch(self, what: str, resource):
        ref = self.gcp.patch_mig(self.step.project, self.step.region, self.name, resource)
        self.step.operation(ref, what)

    def resize(self, what: str, size: int):
        ref = self.gcp.resize_mig(self.step.project, self.step.region, self.name, size)
        self.step.operation(ref, what)

    def record_progress(self, mig=None, **extra) -> dict:
        mig = mig or self.get()
        progress = {
            **self.step.deployment.progress,
            **counts(self.instances()),
            "mig": self.name,
            "target": mig.target_size,
            "stable": mig.status.is_stable,
            "reached": mig.status.version_target.is_reached,
            **extra,
        }
        self.step.save(progress=progress)
        return progress

    def settled_on(self, template_url: str | None = None) -> bool:
        """Stable, its version target reached, and (if given) every instance on that template."""
        mig = self.get()
        progress = self.record_progress(mig)
        if not (mig.status.is_stable and mig.status.version_target.is_reached):
            return False
        if template_url is None:
            return True
        return progress["versions"] == [short(template_url)] or mig.target_size == 0


def ensure_template(step: Step, source_url: str) -> str | None:
    """Create the deployment's template from `source_url` with the new image in its metadata.
    Returns its URL once it exists; None while the insert runs."""
    name = template_name(step)
    region = template_location(source_url)
    if step.pending_operation("template") and not step.operation_done("template"):
        return None
    try:
        return step.gcp.get_template(step.project, region, name).self_link
    except NotFound:
        pass
    from ..gcp import derive_template

    source = step.gcp.get_template(step.project, region, short(source_url))
    key = step.component.image_metadata_key
    template = derive_template(source, name, {key: step.deployment.target_image})
    ref = step.gcp.insert_template(step.project, region, template)
    step.save(template=name)
    step.operation(ref, "template")
    return None
