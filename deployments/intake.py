"""From a GitHub build to releases: which components a run builds, and their image digests."""

import time
import uuid
from collections import defaultdict
from dataclasses import dataclass

from django.core.cache import cache
from django.db import connection, transaction
from django.db.models.signals import post_delete, post_save

from environments.models import Component, Environment, Repository

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


@dataclass(frozen=True)
class Routes:
    """What triage reads of the topology: repositories by full name; per branch, the first
    environment (in page order) it deploys to; per environment, its deployable components.
    Names match exactly, as PostgreSQL and SQLite compare them (MySQL's collations used to let
    `nemo-team/NEMO-API` match too)."""

    repositories: dict[str, Repository]
    environments: dict[str, Environment]
    components: dict[int, list[Component]]

    @classmethod
    def read(cls) -> "Routes":
        environments = {}
        for environment in Environment.objects.all():
            environments.setdefault(environment.branch, environment)
        components = defaultdict(list)
        for component in Component.objects.select_related("environment").exclude(
            deploy_kind="none"
        ):
            components[component.environment_id].append(component)
        return cls(
            {repository.full_name: repository for repository in Repository.objects.all()},
            environments,
            dict(components),
        )


# The webhook triages every delivery; the topology behind it changes a few times a day. So each
# process keeps one Routes, read again when the stamp in the shared cache is renewed (after any
# save or delete of a repository, environment or component commits, in any process), or after
# ROUTES_MAX_AGE seconds for writes that send no signal (queryset.update(), SQL) or a renewal
# lost (a process killed right after its commit, the cache unreachable then).
ROUTES_STAMP = "deployments:topology-stamp"
ROUTES_MAX_AGE = 60.0
_held: tuple[str, float, Routes] | None = None


def current_routes() -> Routes:
    """The process's shared Routes (read-only), or a fresh one inside a transaction, whose reads
    may include its own uncommitted writes."""
    global _held
    if connection.in_atomic_block:
        return Routes.read()
    stamp = cache.get(ROUTES_STAMP)
    if stamp is None:
        cache.add(ROUTES_STAMP, uuid.uuid4().hex, timeout=None)
        stamp = cache.get(ROUTES_STAMP)
        if stamp is None:  # a cache that keeps nothing (DummyCache): no stamp to trust
            return Routes.read()
    held, now = _held, time.monotonic()
    if held is None or held[0] != stamp or now - held[1] > ROUTES_MAX_AGE:
        held = _held = (stamp, now, Routes.read())
    return held[2]


def _renew_stamp():
    cache.set(ROUTES_STAMP, uuid.uuid4().hex, timeout=None)


def _topology_changed(sender, **kwargs):
    transaction.on_commit(_renew_stamp, robust=True)


def watch_topology():
    """Renew the stamp whenever a repository, environment or component changes (AppConfig.ready
    connects this in every process: web, workers, management commands)."""
    for model in (Repository, Environment, Component):
        for name, signal in (("save", post_save), ("delete", post_delete)):
            signal.connect(
                _topology_changed, sender=model, dispatch_uid=f"routes-{name}-{model.__name__}"
            )


def triage(run: WorkflowRun, routes: Routes) -> Triage:
    """Where `run` goes by `routes`: the webhook's shared current_routes(), or in the worker a
    fresh Routes.read(), so a release is only ever made from what the database says then."""
    if run.action != "completed":
        return Triage(ignored=f"action {run.action!r}: only completed runs become releases")
    if run.conclusion != "success":
        return Triage(ignored=f"conclusion {run.conclusion!r}: only successful runs are released")
    repository = routes.repositories.get(run.repository)
    if repository is None:
        return Triage(ignored=f"repository {run.repository} is not in the topology")
    if not repository.accepts_workflow(run.workflow):
        return Triage(
            ignored=f"workflow {run.workflow!r} is not one of {', '.join(repository.workflows)}"
        )
    environment = routes.environments.get(run.branch)
    if environment is None:
        return Triage(ignored=f"branch {run.branch!r} deploys to no environment")
    components = [
        c for c in routes.components.get(environment.pk, []) if c.name in repository.components
    ]
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
    decision = triage(run, Routes.read())  # what the database says now, not a shared copy
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
