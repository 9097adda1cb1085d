"""Creating releases: one per build and component, with the deployment that follows from it."""

from django.db import transaction
from django.utils import timezone

from audit.models import AuditEvent

from .models import Deployment, Release
from .tasks import enqueue_advance


def create_release(component, *, actor=None, request=None, **fields) -> tuple[Release, bool]:
    """Create a release and its deployment; idempotent by (repository, sha, component).

    Prod-like environments get a deployment waiting for approval; the others get one queued at
    once. Either way, older deployments of the component still waiting are superseded.
    """
    with transaction.atomic():
        release, created = Release.objects.get_or_create(
            repository=fields.pop("repository"),
            sha=fields.pop("sha"),
            component=component,
            defaults=fields,
        )
        if not created:
            return release, False
        actor = actor or (f"github:{release.author}" if release.author else None)
        AuditEvent.record(
            "release.create",
            actor=actor,
            obj=release,
            message=f"{release.repository}@{release.short_sha} on {release.branch}",
            data={"digest": release.digest, "image": release.image, "source": release.source},
            request=request,
        )
        new_deployment(release, actor=actor, request=request)
    return release, True


def new_deployment(release, *, actor=None, request=None, approved=False) -> Deployment:
    """A new deployment of `release`: waiting for approval where the environment wants it."""
    environment = release.component.environment
    waits = environment.requires_approval and not approved
    deployment = Deployment.objects.create(
        release=release,
        component=release.component,
        state=Deployment.S.PENDING_APPROVAL if waits else Deployment.S.QUEUED,
        strategy=release.component.strategy,
        approvals_required=environment.approvals_required if waits else 0,
        requested_by=getattr(actor, "username", actor) or "system",
        queued_at=None if waits else timezone.now(),
    )
    if waits:
        count = environment.approvals_required
        deployment.log("state", f"waiting for {count} approval{'s' if count != 1 else ''}")
    else:
        deployment.log("state", "queued")
    supersede_older(deployment, actor=actor)
    if not waits:
        enqueue_advance(deployment.pk)
    return deployment


def supersede_older(deployment, *, actor=None):
    """Older deployments of the same component that have not started will never be wanted."""
    older = Deployment.objects.filter(
        component_id=deployment.component_id,
        state__in=Deployment.WAITING,
        created_at__lte=deployment.created_at,
    ).exclude(pk=deployment.pk)
    for stale in older.select_for_update():
        stale.transition(
            Deployment.S.SUPERSEDED,
            actor=actor,
            reason=f"superseded by {deployment.release}",
        )
