"""Celery tasks for notifications, routed to their own "notifications" queue (settings.py), so a
slow webhook never sits in front of a deployment step."""

from celery import shared_task
from django.conf import settings
from django.db import DatabaseError, transaction


@shared_task(
    bind=True,
    acks_late=True,
    ignore_result=True,
    autoretry_for=(DatabaseError,),
    retry_backoff=True,
    retry_backoff_max=60,
    max_retries=10,
    soft_time_limit=60,
    time_limit=90,
)
def deliver(self, notification_id: int):
    """Send one notification; retry with backoff while its channel answers like it may recover.
    Safe to run twice: a sent or failed notification is left alone, and a conditional claim
    keeps two workers from sending the same one."""
    from .delivery import attempt

    delay = attempt(notification_id)
    if delay is not None:
        raise self.retry(countdown=delay, max_retries=settings.GANTRY_NOTIFY_MAX_ATTEMPTS)


@shared_task(acks_late=True, ignore_result=True)
def redeliver_stale():
    """Beat: re-enqueue pending notifications whose delivery is overdue (a message lost on the
    broker, a worker that died mid-send). `deliver` claims before sending, so extras are no-ops."""
    from .models import Notification

    stale = Notification.objects.stale(settings.GANTRY_RECONCILE_GRACE_SECONDS)
    for notification_id in stale.values_list("pk", flat=True)[:500]:
        deliver.delay(notification_id)


def enqueue_delivery(notification_id: int):
    """Deliver once the current transaction commits. robust: a broker that is away is logged
    and left to redeliver_stale, never raised into the deployment that caused the message."""
    transaction.on_commit(lambda: deliver.delay(notification_id), robust=True)
