"""Promote a release's image into the target environment's registry, by digest.

Build once, deploy the same digest everywhere: a Cloud Build job copies `image@digest` to the
environment's repository under its tags (`<env>-<version>`, `<env>-latest`), then the registry is
asked for the new tags' digest, which must be the release's. When the tags already point at the
digest (a redeploy, or dev deploying what CI pushed to dev), nothing is copied.

A build that sits queued (or waits for an approval in Cloud Build) past the promotion timeout
is cancelled and fails the deployment, saying where it was stuck.
"""

from django.conf import settings

from .steps import NOW, Step, StepFailed, later

GCRANE = "gcr.io/go-containerregistry/gcrane"


def target_tags(step: Step) -> list[str]:
    release = step.deployment.release
    env = step.environment.name
    version = release.version or release.short_sha
    return [f"{env}-{version}", f"{env}-latest"]


def _digest_or_none(step: Step, image: str):
    from gcp.errors import ImageNotFound

    try:
        return step.gcp.get_digest(image)
    except ImageNotFound:
        return None


def promote(step: Step):
    deployment, release = step.deployment, step.deployment.release
    repository = step.component.image_repository
    tags = target_tags(step)
    wanted = release.digest
    if deployment.build_id:
        build = step.gcp.get_build(step.project, deployment.build_id)
        status = build.status
        if not build.finished:
            limit = step.option("promotion_timeout", settings.GANTRY_PROMOTION_TIMEOUT)
            if step.seconds_in_state() > limit:
                step.gcp.cancel_build(step.project, build.id)
                raise StepFailed(
                    f"Cloud Build {build.id} still {build.status} after {limit:g}s; cancelled it"
                    f" (log: {build.log_url or 'none'})"
                )
            step.waiting(f"Cloud Build {build.id} ({build.status})")
            return later()
        if status != "SUCCESS":
            detail = build.detail or status
            raise StepFailed(
                f"Cloud Build {build.id} ended {status}: {detail} (log: {build.log_url or 'none'})"
            )
        step.save(f"Cloud Build {build.id} succeeded", build_log_url=build.log_url or "")
    found = {tag: _digest_or_none(step, f"{repository}:{tag}") for tag in tags}
    if all(digest == wanted for digest in found.values()):
        if not deployment.build_id:
            step.save(f"{repository} already has {wanted[:19]}… as {', '.join(tags)}; no copy")
        step.save(target_image=f"{repository}@{wanted}")
        deployment.transition(deployment.S.ROLLING_OUT, reason=f"image {repository}@{wanted[:19]}…")
        return NOW
    if deployment.build_id:
        wrong = {tag: digest for tag, digest in found.items() if digest != wanted}
        raise StepFailed(f"after the copy the registry shows {wrong}, not {wanted}")
    source = release.image_by_digest
    steps = [{"name": GCRANE, "args": ["cp", source, f"{repository}:{tag}"]} for tag in tags]
    build_id = step.gcp.create_build(
        step.project, steps, tags=["gantry", f"deployment-{deployment.pk}"]
    )
    step.save(
        f"Cloud Build {build_id}: copy {source} to {repository} as {', '.join(tags)}",
        build_id=build_id,
    )
    return later()
