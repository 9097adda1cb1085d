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
