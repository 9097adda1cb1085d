from celery import shared_task
from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from .health import HEARTBEAT_KEY


@shared_task(acks_late=True, ignore_result=True)
def heartbeat():
    """Beat schedules this; /healthz shows when a worker last ran it."""
    now = timezone.now().isoformat()
    cache.set(HEARTBEAT_KEY, now, timeout=None)
    return now


@shared_task(acks_late=True, ignore_result=True)
def prune_broker():
    """Beat, hourly: the embedded broker forgets the messages it already handed out."""
    from .broker import prune

    return prune(settings.CELERY_BROKER_URL)
