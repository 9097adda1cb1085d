"""Instance templates Gantry made, kept in check: every deployment of a MIG component makes one
(`gantry-<component>-<digest>-d<id>`), so after each deployment ends the component's oldest are
deleted, keeping the newest `GANTRY_TEMPLATES_KEPT` for rollback and any template a group still
runs or names, or an unfinished deployment uses."""

from __future__ import annotations

import uuid

from django.conf import settings

from audit.models import AuditEvent
from environments.models import Component
from gcp.names import short

from .models import Deployment
from .steps import REQUEST_IDS


def group_names(component: Component) -> list[str]:
    return [name for name in (component.mig, component.blue_mig, component.green_mig) if name]


def prune_templates(component: Component, gcp, keep: int | None = None) -> list[str]:
    """Delete the component's Gantry-made templates beyond the newest `keep` that nothing uses.
    Returns the names deleted. Safe to run twice: a second run finds nothing more to delete."""
    keep = settings.GANTRY_TEMPLATES_KEPT if keep is None else keep
    env = component.environment
    project, region = env.gcp_project, env.region
    in_use = set(
        Deployment.objects.filter(component=component, state__in=Deployment.ACTIVE)
        .exclude(template="")
        .values_list("template", flat=True)
    )
    for name in group_names(component):
        mig = gcp.get_mig(project, region, name)
        in_use |= {short(v.template) for v in mig.versions}
        in_use |= {short(i.template) for i in gcp.list_managed_instances(project, region, name)}
    deleted = []
    for where in (region, None):
        made = gcp.list_templates(project, where, prefix=f"gantry-{component.name}-")
        for url in made[: max(len(made) - keep, 0)]:
            name = short(url)
            if name in in_use:
                continue
            request_id = str(uuid.uuid5(REQUEST_IDS, f"prune/{url}"))
            gcp.delete_template(project, where, name, request_id=request_id)
            deleted.append(name)
    if deleted:
        AuditEvent.record(
            "component.templates_pruned",
            obj=component,
            message=f"deleted {len(deleted)} unused instance templates, kept the newest {keep}",
            data={"deleted": deleted},
        )
    return deleted
