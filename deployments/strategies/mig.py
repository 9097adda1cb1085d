"""Helpers for strategies that run on regional managed instance groups."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from django.conf import settings

from gcp.names import short
from gcp.types import BackendHealth, ManagedInstance, MigStatus

from ..steps import Outcome, Step, StepFailed, later
from .base import template_location, template_name

# While a group is not stable its instances are listed on every second poll (and whenever its
# status changed): enough to see creation errors within two polls, half the reads otherwise.
LIST_EVERY = 2
# A group whose status has not changed is polled less and less often, up to this (seconds).
QUIET_POLL_MAX = 15.0


def counts(instances: list[ManagedInstance]) -> dict:
    """Instances by zone and template: {'versions': [...], 'zones': {zone: [n per version]}}."""
    table: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    versions: list[str] = []
    for instance in instances:
        template = short(instance.template)
        if template not in versions:
            versions.append(template)
        table[instance.zone][template] += 1
    return {
        "versions": versions,
        "zones": {zone: [by[v] for v in versions] for zone, by in sorted(table.items())},
    }


def summary(instances: list[ManagedInstance], template: str) -> str:
    """'2/4 on t-v2, 1 healthy' for the timeline."""
    mine = [i for i in instances if i.runs(template)]
    healthy = sum(i.healthy for i in mine)
    return f"{len(mine)}/{len(instances)} on {short(template)}, {healthy} healthy"


class MigTarget:
    """One MIG of the deployment's component, with the calls the strategies make on it."""

    def __init__(self, step: Step, name: str):
        self.step, self.name, self.gcp = step, name, step.gcp

    def get(self) -> MigStatus:
        return self.gcp.get_mig(self.step.project, self.step.region, self.name)

    def instances(self) -> list[ManagedInstance]:
        return self.gcp.list_managed_instances(self.step.project, self.step.region, self.name)

    def patch(self, what: str, resource) -> None:
        ref = self.gcp.patch_mig(
            self.step.project,
            self.step.region,
            self.name,
            resource,
            request_id=self.step.request_id(what),
        )
        self.step.operation(ref, what)

    def resize(self, what: str, size: int) -> None:
        ref = self.gcp.resize_mig(
            self.step.project,
            self.step.region,
            self.name,
            size,
            request_id=self.step.request_id(what),
        )
        self.step.operation(ref, what)

    def poll(
        self, new_template: str | None = None
    ) -> tuple[MigStatus, list[ManagedInstance] | None]:
        """The group's status, and its instances when worth listing (its status changed, every
        LIST_EVERY-th poll, or it is stable); progress on the row follows both, with how far
        `new_template` has got ("seen") when the instances were listed."""
        mig = self.get()
        progress = self.step.deployment.progress
        status = [mig.stable, mig.reached, mig.target_size, [v.template for v in mig.versions]]
        polls = progress.get("polls", 0) + 1
        changed = progress.get("status") != status
        quiet = 0 if changed else progress.get("quiet", 0) + 1
        instances = None
        if changed or mig.stable or polls % LIST_EVERY == 0:
            instances = self.instances()
        update = {
            **progress,
            "mig": self.name,
            "target": mig.target_size,
            "stable": mig.stable,
            "reached": mig.reached,
            "status": status,
            "polls": polls,
            "quiet": quiet,
        }
        if instances is not None:
            update |= counts(instances)
            if new_template:
                update["seen"] = summary(instances, new_template)
        self.step.save(progress=update)
        return mig, instances

    def next_poll(self) -> Outcome:
        """Come back soon after a change, then less often while nothing moves."""
        quiet = self.step.deployment.progress.get("quiet", 0)
        base = settings.GANTRY_ENGINE_POLL_SECONDS
        return later(min(base * 2 ** min(quiet, 8), max(base, QUIET_POLL_MAX)))

    def settled_on(self, template_url: str | None, new_template: str | None = None) -> bool:
        """Stable, its version target reached, and (if given) every instance on that template.
        While it is not, instances of `new_template` that GCP cannot create, or that stay
        unhealthy, fail the step (see `check_new_instances`)."""
        mig, instances = self.poll(new_template)
        if instances is not None and new_template:
            check_new_instances(self.step, instances, new_template)
        if not (mig.stable and mig.reached) or instances is None:
            seen = self.step.deployment.progress.get("seen") if new_template else None
            self.step.waiting(f"{self.name} to settle" + (f" ({seen})" if seen else ""))
            return False
        if template_url is None:
            return True
        return all(i.runs(template_url) for i in instances) or mig.target_size == 0


def check_new_instances(
    step: Step,
    instances: list[ManagedInstance],
    template: str,
    lb: list[BackendHealth] | None = None,
) -> None:
    """Fail fast on what will not pass by waiting: an instance of the new template GCP could not
    create (its lastAttempt errors: a quota, a zone out of resources, a bad image), or one that
    stayed unhealthy (its autohealing check, or the load balancer's) for longer than the
    verify timeout since it was first seen unhealthy."""
    mine = [i for i in instances if i.runs(template)]
    for instance in mine:
        if instance.errors:
            errors = "; ".join(str(e) for e in instance.errors)
            raise StepFailed(
                f"GCP cannot create {instance.name} ({instance.zone}) from "
                f"{short(template)}: {errors}"
            )
    by_lb = {h.instance: h.state for h in lb or ()}
    unhealthy = {}
    for instance in mine:
        states = [*instance.health, *([by_lb[instance.url]] if instance.url in by_lb else [])]
        if "UNHEALTHY" in states or "TIMEOUT" in states:
            unhealthy[instance.name] = instance
    progress = step.deployment.progress
    seen = progress.get("unhealthy", {})
    now = step.now()
    still = {name: seen.get(name, now.isoformat()) for name in unhealthy}
    if still != seen:
        step.save(progress={**progress, "unhealthy": still})
    limit = step.option("verify_timeout", settings.GANTRY_VERIFY_TIMEOUT)
    for name, since in still.items():
        stayed = (now - datetime.fromisoformat(since)).total_seconds()
        if stayed > limit:
            instance = unhealthy[name]
            how = "load balancer" if instance.url in by_lb else "autohealing health check"
            raise StepFailed(
                f"{name} ({instance.zone}) on {short(template)} stayed UNHEALTHY by its {how} "
                f"for {stayed:.0f}s (limit {limit:g}s)"
            )


def ensure_template(step: Step, source_url: str) -> str | None:
    """Create the deployment's template from `source_url` with the new image in its metadata.
    Returns its URL once it exists (found once, then read from the row); None while the insert
    runs."""
    if url := step.deployment.progress.get("template_url"):
        return url
    name = template_name(step)
    region = template_location(source_url)
    if step.pending_operation("template") and not step.operation_done("template"):
        return None
    url = step.gcp.template_url(step.project, region, name)
    if url:
        step.save(template=name, progress={**step.deployment.progress, "template_url": url})
        return url
    if step.started("template"):
        raise StepFailed(f"template {name} was inserted but GCP does not show it")
    ref = step.gcp.create_template(
        step.project,
        region,
        source_url,
        name,
        {step.component.image_metadata_key: step.deployment.target_image},
        request_id=step.request_id("template"),
    )
    step.save(template=name)
    step.operation(ref, "template")
    return None
