"""Celery tasks. They take ids, are safe to run twice, and are enqueued only after commit."""

from celery import shared_task
from django.db import DatabaseError, transaction


@shared_task(
    acks_late=True,
    ignore_result=True,
    autoretry_for=(DatabaseError,),
    retry_backoff=True,
    retry_backoff_max=60,
    max_retries=10,
    soft_time_limit=110,
    time_limit=120,
)
def advance_deployment(deployment_id: int):
    """Do the next step of a deployment, then schedule the one after it. GCP's transient errors
    are retried by the engine itself (counted on the row); this task only retries when the
    database itself is away."""
    from portal.logs import deployment_context

    from .engine import advance

    with deployment_context(deployment_id):
        outcome = advance(deployment_id)
    if not outcome.finished:
        advance_deployment.apply_async((deployment_id,), countdown=outcome.delay)


@shared_task(acks_late=True, ignore_result=True)
def reconcile_deployments():
    """Beat: pick up deployments whose next step is overdue (a lost message, a dead worker)."""
    from .engine import overdue

    for deployment_id in overdue():
        advance_deployment.delay(deployment_id)


def enqueue_advance(deployment_id: int, countdown: float = 0):
    """Run the deployment's next step once the current transaction commits."""
    transaction.on_commit(
        lambda: advance_deployment.apply_async((deployment_id,), countdown=countdown)
    )


@shared_task(
    acks_late=True,
    ignore_result=True,
    autoretry_for=(ConnectionError, TimeoutError),
    retry_backoff=True,
    retry_backoff_max=300,
    max_retries=8,
)
def resolve_delivery(delivery_id: int):
    """Resolve the images of an accepted webhook delivery and create its releases."""
    from .intake import resolve_delivery as resolve

    resolve(delivery_id)


def enqueue_delivery(delivery_id: int):
    transaction.on_commit(lambda: resolve_delivery.delay(delivery_id))


# --- back to GitHub (github_status, github_protection) -------------------------------------------
# A failing GitHub must never fail a deployment: these retry with backoff on 429/5xx/network,
# then give up quietly, leaving the error on the row for people to see.
GITHUB_MAX_RETRIES = 6


def _retry_github(task, exc, give_up):
    from celery.utils.time import get_exponential_backoff_interval

    from .github_api import GitHubError

    if (isinstance(exc, GitHubError) and not exc.retryable) or (
        task.request.retries >= task.max_retries
    ):
        give_up(exc)
        return
    wait = getattr(exc, "retry_after", None) or get_exponential_backoff_interval(
        factor=5, retries=task.request.retries, maximum=600, full_jitter=True
    )
    raise task.retry(countdown=max(1, min(wait, 900)), exc=exc)


@shared_task(bind=True, acks_late=True, ignore_result=True, max_retries=GITHUB_MAX_RETRIES)
def report_to_github(self, deployment_id: int):
    """Send the GitHub deployment statuses a deployment owes, oldest first."""
    from . import github_status
    from .github_api import GitHubError

    try:
        github_status.report(deployment_id)
    except (GitHubError, github_status.Busy, DatabaseError) as exc:
        _retry_github(self, exc, lambda error: github_status.give_up(deployment_id, error))


def enqueue_github_report(deployment_id: int):
    # robust: a broker that is away must not turn a committed state change into an error.
    transaction.on_commit(lambda: report_to_github.delay(deployment_id), robust=True)


@shared_task(bind=True, acks_late=True, ignore_result=True, max_retries=GITHUB_MAX_RETRIES)
def answer_protection_rule(self, rule_id: int):
    """Send Gantry's verdict on a GitHub deployment protection rule, once."""
    from . import github_protection
    from .github_api import GitHubError

    try:
        github_protection.answer(rule_id)
    except (GitHubError, github_protection.Busy, DatabaseError) as exc:
        _retry_github(self, exc, lambda error: github_protection.give_up(rule_id, error))


def enqueue_protection_answer(rule_id: int):
    transaction.on_commit(lambda: answer_protection_rule.delay(rule_id), robust=True)
