from datetime import UTC, datetime, timedelta

import pytest

from deployments.models import Deployment

# Every test passes this moment to the service as `now`; rows are dated back from it.
NOW = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)


def ago(days: float = 0, hours: float = 0) -> datetime:
    return NOW - timedelta(days=days, hours=hours)


@pytest.fixture
def deployed(make_deployment):
    """deployed(finished, state="succeeded", component="backend", built=, created=, of=,
    committed=) -> a deployment that finished at `finished`, of a release built at `built`
    (default: an hour before) from a commit made at `committed` (default: none known). `of`
    redeploys that deployment's release instead of a fresh one."""

    def make(
        finished,
        state="succeeded",
        component="backend",
        environment="prod",
        built=None,
        created=None,
        of=None,
        committed=None,
    ):
        created = created or finished - timedelta(minutes=30)
        if of is None:
            deployment = make_deployment(environment, component, state=state)
            release = deployment.release
            release.created_at = built or finished - timedelta(hours=1)
            release.committed_at = committed
            release.save(update_fields=["created_at", "committed_at"])
        else:
            deployment = Deployment.objects.create(
                release=of.release, component=of.component, state=state, strategy=of.strategy
            )
        Deployment.objects.filter(pk=deployment.pk).update(
            created_at=created, started_at=created, finished_at=finished
        )
        deployment.refresh_from_db()
        return deployment

    return make
