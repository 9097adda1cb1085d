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


@shared_task(
    acks_late=True,
    ignore_result=True,
    autoretry_for=(Exception,),
    retry_backoff=True,
    retry_backoff_max=600,
    max_retries=5,
)
def prune_templates(component_id: int):
    """After a deployment ends: delete the component's old, unused Gantry-made templates. Lost
    or failed, nothing is at stake: the next deployment's end prunes the same ones."""
    from environments.models import Component
    from gcp.adapter import GcpAdapter

    from .templates import prune_templates as prune

    component = Component.objects.select_related("environment").filter(pk=component_id).first()
    if component is not None:
        prune(component, GcpAdapter.from_settings())


def on_state_changed(sender, deployment, before, to, **kwargs):
    """A deployment of a MIG component ended: prune its templates once that commits."""
    if to in deployment.FINAL and deployment.template:
        component_id = deployment.component_id
        transaction.on_commit(lambda: prune_templates.delay(component_id), robust=True)


def enqueue_advance(deployment_id: int, countdown: float = 0):
    """Run the deployment's next step once the current transaction commits. robust: a broker
    that is away is logged, never raised into the approval or release that committed;
    reconcile_deployments sends the step once its grace period has passed."""
    transaction.on_commit(
        lambda: advance_deployment.apply_async((deployment_id,), countdown=countdown),
        robust=True,
    )
