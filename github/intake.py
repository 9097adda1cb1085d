"""From a GitHub delivery to releases: what a delivery is (`decide`), writing it once (`store`),
which components a run builds (`triage`), and resolving their image digests (`resolve_delivery`).

The rules:
- only completed, successful runs of a routed workflow become releases, and only runs of an
  event the repository allows (`push` unless the topology says more) on the repository itself:
  a pull request from a fork never deploys, whatever its branch is called;
- a delivery is written once; the same delivery id again is a no-op, unless it ended failed,
  invalid or ignored: then it is decided again (GitHub's Redeliver keeps the id);
- resolving retries what may pass: registry errors that are transient (5xx, 429, network) with
  backoff, and an image not in the registry yet for GANTRY_IMAGE_WAIT_SECONDS (CI may still be
  pushing); then the delivery fails with the reason, and can be retried.
"""

import logging
import random
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models.signals import post_delete, post_save
from django.utils import timezone

from audit.models import AuditEvent
from deployments.releases import ReleaseRefused, check_image, create_release
from environments.models import Component, Environment, Repository

from .models import WebhookDelivery
from .payloads import PayloadError, ProtectionRuleRequest, WorkflowRun, installation_id

log = logging.getLogger(__name__)
Outcome = WebhookDelivery.Outcome
TRANSIENT_TRIES = 8  # registry errors worth another look: at most about 15 minutes of backoff


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
    Repository names match whatever their case, as GitHub treats them (keys are lower case)."""

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
            {repository.full_name.lower(): repository for repository in Repository.objects.all()},
            environments,
            dict(components),
        )


# The webhook triages every delivery; the topology behind it changes a few times a day. So each
# process keeps one Routes, read again when the stamp in the shared cache is renewed (after any
# save or delete of a repository, environment or component commits, in any process), or after
# ROUTES_MAX_AGE seconds for writes that send no signal (queryset.update(), SQL) or a renewal
# lost (a process killed right after its commit, the cache unreachable then).
ROUTES_STAMP = "github:topology-stamp"
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
    repository = routes.repositories.get(run.repository.lower())
    if repository is None:
        return Triage(ignored=f"repository {run.repository} is not in the topology")
    if not run.workflow:
        return Triage(ignored="the run has no workflow name (workflow_run.name is null)")
    if not repository.accepts_workflow(run.workflow):
        return Triage(
            ignored=f"workflow {run.workflow!r} is not one of {', '.join(repository.workflows)}"
        )
    if not repository.accepts_event(run.event):
        allowed = ", ".join(repository.events)
        return Triage(ignored=f"event {run.event or 'unknown'!r}: only {allowed} runs deploy")
    if run.head_repository.lower() != repository.full_name.lower():
        return Triage(
            ignored=f"the run's code comes from {run.head_repository or 'an unknown repository'}"
            f", not {repository.full_name}: runs from forks never deploy"
        )
    if not run.branch:
        return Triage(ignored="the run has no branch (workflow_run.head_branch is null)")
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


@dataclass
class Decision:
    """What a delivery is, decided before anything is written: the answer's status, the
    outcome and what to keep. A protection rule's outcome is settled when it is recorded."""

    status: int
    outcome: str
    detail: str
    action: str = ""
    repository: str = ""
    payload: dict | None = None
    run_id: int | None = None
    installation_id: int | None = None
    rule: ProtectionRuleRequest | None = field(default=None, repr=False)

    def fields(self) -> dict:
        return {
            "outcome": self.outcome,
            "detail": self.detail,
            "action": self.action,
            "repository": self.repository,
            "payload": self.payload,
            "run_id": self.run_id,
            "installation_id": self.installation_id,
        }


def decide(event: str, payload, routes: Routes) -> Decision:
    """What a signed delivery of `event` with this payload is, by `routes`."""
    if event == "ping":
        return Decision(200, Outcome.PONG, "pong", installation_id=installation_id(payload))
    if event == "deployment_protection_rule":
        try:
            ask = ProtectionRuleRequest.from_payload(payload)
        except PayloadError as exc:
            return Decision(400, Outcome.INVALID, str(exc))
        return Decision(
            202,
            Outcome.INVALID,  # until protection.record decides
            "",
            payload=payload,
            action=ask.action,
            repository=ask.repository,
            installation_id=installation_id(payload),
            rule=ask,
        )
    if event != "workflow_run":
        return Decision(200, Outcome.IGNORED, f"event {event!r} is not handled")
    try:
        run = WorkflowRun.from_payload(payload)
    except PayloadError as exc:
        return Decision(400, Outcome.INVALID, str(exc))
    decision = triage(run, routes)
    common = {
        "action": run.action,
        "repository": run.repository,
        "run_id": run.run_id,
        "installation_id": installation_id(payload),
    }
    if decision.ignored:
        # A completed run is kept, so that a person may retry it once the topology routes it.
        kept = payload if run.action == "completed" else None
        return Decision(200, Outcome.IGNORED, decision.ignored, payload=kept, **common)
    names = ", ".join(str(c) for c in decision.components)
    return Decision(
        202, Outcome.ACCEPTED, f"resolving images for {names}", payload=payload, **common
    )


def store(guid: str, event: str, decision: Decision, *, remote_addr=None, source=None):
    """Write a decided delivery: one INSERT, whose unique `guid` catches the same delivery again
    (even two at once). Again after it ended failed, invalid or ignored, it is decided anew on
    its row (an UPDATE). Returns the delivery, or None for a repeat that changes nothing. An
    accepted delivery is enqueued after commit; a protection rule is recorded with it."""
    now = timezone.now()
    with transaction.atomic():
        delivery = WebhookDelivery(
            guid=guid,
            event=event,
            remote_addr=remote_addr,
            source=source or WebhookDelivery.Source.WEBHOOK,
            received_at=now,
            next_resolve_at=now if decision.outcome == Outcome.ACCEPTED else None,
            **decision.fields(),
        )
        try:
            with transaction.atomic():
                delivery.save(force_insert=True)
        except IntegrityError:
            delivery = WebhookDelivery.objects.select_for_update().filter(guid=guid).first()
            if delivery is None or delivery.outcome not in WebhookDelivery.RETRYABLE:
                return None
            delivery.decided_again(decision.fields(), remote_addr=remote_addr)
        _follow_up(delivery, decision)
    return delivery


def _follow_up(delivery: WebhookDelivery, decision: Decision) -> None:
    if decision.rule is not None:
        from . import protection

        protection.record(delivery, decision.rule, delivery.payload)
    if delivery.outcome == Outcome.ACCEPTED:
        from .tasks import enqueue_delivery

        enqueue_delivery(delivery.pk)


class RetryRefused(Exception):
    """This delivery cannot be retried; the message says why and what to do instead."""


def retry(delivery_id: int, user, *, request=None) -> WebhookDelivery:
    """A person's Retry: decide a failed, invalid or ignored delivery again from the payload
    Gantry kept, as if GitHub had redelivered it now. Audited."""
    with transaction.atomic():
        delivery = WebhookDelivery.objects.select_for_update().get(pk=delivery_id)
        if delivery.outcome not in WebhookDelivery.RETRYABLE:
            raise RetryRefused(
                f"{delivery.get_outcome_display().lower()} deliveries are not retried: "
                "only failed, invalid or ignored ones"
            )
        if delivery.payload is None:
            raise RetryRefused(
                "Gantry kept no payload of this delivery; use Redeliver on GitHub's "
                "Recent deliveries page (it keeps the delivery id)"
            )
        before = delivery.outcome
        decision = decide(delivery.event, delivery.payload, Routes.read())
        decision.payload = delivery.payload
        delivery.decided_again(decision.fields())
        _follow_up(delivery, decision)
        AuditEvent.record(
            "github.delivery.retry",
            actor=user,
            obj=delivery,
            message=f"{before} → {delivery.outcome}: {delivery.detail}"[:500],
            data={"guid": delivery.guid, "from": before, "to": delivery.outcome},
            request=request,
        )
    return delivery


def _backoff(tries: int, base: float, cap: float) -> float:
    """Exponential backoff with full jitter, at least a second."""
    return max(1.0, random.uniform(0, min(cap, base * 2**tries)))


def resolve_delivery(delivery_id: int, registry=None, now=None) -> WebhookDelivery:
    """Resolve every image of an accepted delivery, then create all its releases or none.
    While an image is not pushed yet or the registry fails for now, the delivery stays accepted
    with `next_resolve_at` saying when to look again."""
    from gcp.adapter import GcpAdapter
    from gcp.errors import ImageNotFound, RegistryError, is_retryable

    now = now or timezone.now()
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
        try:  # before the registry is asked, with the worker's credentials
            check_image(component, decision.repository, image)
        except ReleaseRefused as exc:
            delivery.finish(Outcome.FAILED, f"{exc}"[:2000])
            return delivery
        try:
            resolved.append((component, image, registry.get_digest(image)))
        except ImageNotFound as exc:
            waited = (now - delivery.accepted_at).total_seconds()
            window = settings.GANTRY_IMAGE_WAIT_SECONDS
            if waited >= window:
                delivery.finish(
                    Outcome.FAILED,
                    f"{image}: not in the registry after {window / 60:g} min ({exc})",
                )
                return delivery
            delay = min(_backoff(delivery.resolve_tries, 5, 60), window - waited + 1)
            delivery.look_again(f"{image}: not in the registry yet; looking again", delay)
            return delivery
        except DatabaseError:
            raise  # the task retries; the row is as it was
        except Exception as exc:  # the registry's errors, and any other: never accepted forever
            if isinstance(exc, RegistryError):
                why, transient = f"registry error ({exc})", is_retryable(exc)
            else:  # e.g. the registry's credentials could not be had
                log.exception("delivery %s: resolving %s failed", delivery.pk, image)
                why, transient = f"{type(exc).__name__}: {exc}", True
            if not transient or delivery.resolve_tries >= TRANSIENT_TRIES:
                tries = delivery.resolve_tries + 1
                delivery.finish(Outcome.FAILED, f"{image}: {why} after {tries} tries"[:2000])
            else:
                delay = _backoff(delivery.resolve_tries, 5, 300)
                delivery.look_again(f"{image}: {why}; trying again"[:2000], delay)
            return delivery
    with transaction.atomic():
        for component, image, digest in resolved:
            release, _ = create_release(
                component,
                repository=decision.repository.full_name,
                sha=run.sha,
                branch=run.branch,
                version=run.version,
                title=run.title,
                author=run.actor,
                triggering_actor=run.triggering_actor,
                committed_at=run.committed_at,
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


def overdue(now=None) -> list[int]:
    """Accepted deliveries whose next look is overdue by the grace period: their message was
    lost, or their worker died. The beat's reconciler enqueues them again."""
    now = now or timezone.now()
    late = now - timedelta(seconds=settings.GANTRY_RECONCILE_GRACE_SECONDS)
    return list(
        WebhookDelivery.objects.filter(
            outcome=Outcome.ACCEPTED, next_resolve_at__lt=late
        ).values_list("pk", flat=True)[:500]
    )
