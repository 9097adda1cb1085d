"""Shared set-up for engine tests: a sandbox-backed release of one component, driven to the end."""

import time

from deployments.engine import run_to_end
from deployments.models import Deployment, Release
from environments.models import Component

CI_REGISTRY = "asia-northeast3-docker.pkg.dev/nemo-dev/registry"


def new_release(sandbox, environment, component, n=1, branch=None):
    """Push a fresh image as CI would, and record its release with a queued deployment."""
    target = Component.objects.select_related("environment").get(
        environment__name=environment, name=component
    )
    sha = f"{n:040x}"
    image = f"{CI_REGISTRY}/{target.image}:{sha}"
    digest = sandbox.world.registry.push_new(image)
    release = Release.objects.create(
        component=target,
        repository="nemo-team/nemo-x",
        branch=branch or ("main" if environment == "prod" else "develop"),
        sha=sha,
        version=f"v{100 + n}",
        author="dev-alice",
        image=image,
        digest=digest,
    )
    return Deployment.objects.create(
        release=release,
        component=target,
        state="queued",
        strategy=target.strategy,
        queued_at=release.created_at,
    )


def drive(deployment, **kwargs) -> Deployment:
    """Run the engine synchronously, sleeping only a little between steps."""
    return run_to_end(deployment.pk, sleep=lambda s: time.sleep(min(s, 0.01)), **kwargs)


def available_over_time(sandbox, project, mig):
    """Total available instances of the MIG at each state it passed through."""
    return [
        sum(cell["available"] for zone in state.values() for cell in zone.values())
        for _, state in sandbox.history(project, mig)
    ]
