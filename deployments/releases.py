"""Creating releases: one per build and component, with the deployment that follows from it."""

import re

from django.db import transaction
from django.utils import timezone

from audit.models import AuditEvent
from environments.models import Repository
from portal.models import clean_login, github_login, login_problem, normalize_login

from .models import Deployment, Release
from .tasks import enqueue_advance

# The role whose tokens are CI jobs (portal/roles.py): they name the GitHub actor of the run.
CI_ROLE = "ci"
# What follows the registry in an image reference, as the distribution spec has it: path
# components of lower-case letters and digits joined by ., _, __ or dashes; a tag; a digest.
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
IMAGE_PATH = re.compile(
    rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*(?::\w[\w.-]{{0,127}})?(?:@sha256:[0-9a-f]{{64}})?",
    re.ASCII,
)


class ReleaseRefused(ValueError):
    """A release the rules refuse, before anything is written; `field` names the input."""

    def __init__(self, message: str, field: str):
        super().__init__(message)
        self.field = field


def allowed_registries(component, repository: Repository | None) -> list[str]:
    """Where a release's image may come from: its environment's registry, and the one its
    repository's CI pushes to (prod's images are built into dev's, then promoted)."""
    found = [component.environment.registry, repository.registry if repository else ""]
    return list(dict.fromkeys(r.rstrip("/") for r in found if r))


def check_image(component, repository: Repository | None, image: str) -> None:
    """Refuse an image from anywhere but allowed_registries: Gantry has Cloud Build copy it into
    the environment and runs it, and the worker's registry credentials follow its host."""
    registries = allowed_registries(component, repository)
    for registry in registries:
        if image.startswith(f"{registry}/") and IMAGE_PATH.fullmatch(image[len(registry) + 1 :]):
            return
    allowed = " or ".join(f"{r}/" for r in registries)
    raise ReleaseRefused(
        f"image {image!r} is not under {allowed}: {component} takes images only from the "
        "registries the topology configures for its environment and repository",
        "image",
    )


def release_authors(user, author: str = "", triggering_actor: str = "") -> tuple[str, str]:
    """(author, triggering actor), cleaned (clean_login), of a release `user` posts.

    A token of the `ci` role is a CI job: it names the run's GitHub actor (`author`, required:
    a release without one could be approved by whoever started it) and may name the run's
    triggering actor. Anyone else posts their own release: it is authored by their GitHub login
    (which Gantry must know), and they may name nobody else.
    """
    if user.groups.filter(name=CI_ROLE).exists():
        if not normalize_login(author):
            raise ReleaseRefused(
                "author is required with a ci token: the GitHub login of the run's actor "
                "(${{ github.actor }})",
                "author",
            )
        for field, value in (("author", author), ("triggering_actor", triggering_actor)):
            if value and (problem := login_problem(value)):
                raise ReleaseRefused(f"{field}: {problem}", field)
        return clean_login(author), clean_login(triggering_actor)
    own = github_login(user)
    if not own:
        raise ReleaseRefused(
            f"{user.get_username()} has no known GitHub login, so a release it posts would have "
            "no author to keep from approving it: an admin adds it to the topology's people: "
            "section, or a superuser sets it in the admin",
            "author",
        )
    for field, value in (("author", author), ("triggering_actor", triggering_actor)):
        if normalize_login(value) not in ("", own):
            raise ReleaseRefused(
                f"only a ci token may name the {field.replace('_', ' ')}; a release you post "
                f"is authored by you ({own})",
                field,
            )
    return own, ""


def create_release(component, *, actor=None, request=None, **fields) -> tuple[Release, bool]:
    """Create a release and its deployment; idempotent by (repository, sha, component).

    Its GitHub actors are kept clean (clean_login) in GitHub's case; they are compared
    normalised. The doors from outside (the API, the webhook's
    intake) check its image first (check_image), before anything is written or fetched.
    Prod-like environments get a deployment waiting for approval; the others get one queued at
    once. Either way, older deployments of the component still waiting are superseded.
    """
    for field in ("author", "triggering_actor"):
        if field in fields:
            fields[field] = clean_login(fields[field])
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
