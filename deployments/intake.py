"""From a GitHub build to releases: which components a run builds, and their image digests."""

from dataclasses import dataclass

from django.db import transaction

from environments.models import Environment, Repository

from .github import WorkflowRun
from .models import WebhookDelivery
from .releases import create_release

Outcome = WebhookDelivery.Outcome


@dataclass
class Triage:
    """Where a workflow run goes: its repository and target components, or why nowhere."""

    repository: Repository | None = None
    components: list | None = None
    ignored: str = ""


def triage(run: WorkflowRun) -> Triage:
    if run.action != "completed":
        return Triage(ignored=f"action {run.action!r}: only completed runs become releases")
    if run.conclusion != "success":
        return Triage(ignored=f"conclusion {run.conclusion!r}: only successful runs are released")
    repository = Repository.objects.filter(full_name=run.repository).first()
    if repository is None:
        return Triage(ignored=f"repository {run.repository} is not in the topology")
    if not repository.accepts_workflow(run.workflow):
        return Triage(
            ignored=f"workflow {run.workflow!r} is not one of {', '.join(repository.workflows)}"
        )
    environment = Environment.objects.filter(branch=run.branch).first()
    if environment is None:
        return Triage(ignored=f"branch {run.branch!r} deploys to no environment")
    components = list(
        environment.components.select_related("environment")
        .filter(name__in=repository.components)
        .exclude(deploy_kind="none")
    )
    if not components:
        return Triage(ignored=f"{environment} has none of {', '.join(repository.components)}")
    return Triage(repository, components)


def image_for(repository: Repository, component, run: WorkflowRun) -> str:
    """The image CI pushed for this component, by the component's tag template."""
    tag = component.tag_template.format(
        sha=run.sha,
        short_sha=run.sha[:7],
        branch=run.branch.replace("/", "-"),
        run_number=run.run_number,
        version=run.version,
    )
    return f"{repository.registry}/{component.image}:{tag}"


def resolve_delivery(delivery_id: int, registry=None):
    """Resolve every image of an accepted delivery, then create all its releases or none."""
    from .gcp import GcpAdapter, ImageNotFound

    delivery = WebhookDelivery.objects.get(pk=delivery_id)
    if delivery.outcome != Outcome.ACCEPTED:
        return delivery
    run = WorkflowRun.from_payload(delivery.payload)
    decision = triage(run)
    if decision.ignored:
        delivery.finish(Outcome.IGNORED, decision.ignored)
        return delivery
    registry = registry or GcpAdapter.from_settings()
    resolved = []
    for component in decision.components:
        image = image_for(decision.repository, component, run)
        try:
            resolved.append((component, image, registry.get_digest(image)))
        except ImageNotFound as exc:
            delivery.finish(Outcome.FAILED, f"{image}: not in the registry ({exc})")
            return delivery
    with transaction.atomic():
        for component, image, digest in resolved:
            release, _ = create_release(
                component,
                repository=run.repository,
                sha=run.sha,
                branch=run.branch,
                version=run.version,
                title=run.title,
                author=run.actor,
                run_url=run.run_url,
                image=image,
                digest=digest,
                source="webhook",
            )
            delivery.releases.add(release)
        delivery.finish(
            Outcome.RELEASED,
            "; ".join(f"{c}: {digest[:19]}…" for c, _, digest in resolved),
        )
    return delivery
