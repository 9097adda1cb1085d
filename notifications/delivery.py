"""Sending one notification: one POST, and what its answer means.

2xx is sent. A timeout, a lost connection, a name that does not resolve, 429 or 5xx is worth
another try after a backoff, up to GANTRY_NOTIFY_MAX_ATTEMPTS tries. Anything else (a 3xx, a 4xx,
a URL that now points where channels may not go) will not get better by retrying, and fails at
once with the reason. Of an answer only its status is kept: "HTTP 404 Not Found".
"""

import contextlib
import logging

import httpx
from celery.utils.time import get_exponential_backoff_interval
from django.conf import settings

from . import egress
from .models import Notification

logger = logging.getLogger(__name__)

TRANSIENT_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


def lease_seconds() -> float:
    return settings.GANTRY_NOTIFY_TIMEOUT * 2 + 10


def backoff(attempts: int, retry_after: str | None = None) -> float:
    """Seconds before the next try: exponential in the attempts made, never sooner than a
    429's Retry-After, never longer than GANTRY_NOTIFY_BACKOFF_MAX."""
    delay = get_exponential_backoff_interval(
        factor=settings.GANTRY_NOTIFY_BACKOFF,
        retries=max(attempts - 1, 0),
        maximum=settings.GANTRY_NOTIFY_BACKOFF_MAX,
    )
    with contextlib.suppress(ValueError):  # an HTTP date: the backoff will do
        delay = max(delay, float(retry_after or 0))
    return min(delay, settings.GANTRY_NOTIFY_BACKOFF_MAX)


def attempt(notification_id: int) -> float | None:
    """Try to send the notification once. Returns the seconds to wait before trying again, or
    None when there is nothing more to do (sent, failed for good, gone, or another worker's)."""
    notification = (
        Notification.objects.select_related("channel__environment")
        .filter(pk=notification_id)
        .first()
    )
    if notification is None or not notification.claim(lease_seconds()):
        return None
    channel = notification.channel
    if not channel.enabled:
        notification.mark_failed("channel disabled before delivery")
        return None
    try:
        destination = egress.check(channel.url)
    except egress.Refused as exc:
        return _permanent(notification, f"refused: {exc}")
    except egress.Unresolved as exc:
        return _transient(notification, str(exc))
    try:
        with egress.post(
            destination,
            json=notification.payload,
            timeout=settings.GANTRY_NOTIFY_TIMEOUT,
            headers={"Idempotency-Key": f"gantry-notification-{notification.pk}"},
        ) as response:
            status, retry_after = response.status_code, response.headers.get("Retry-After")
            error = egress.status_line(response)
    except httpx.TimeoutException as exc:
        error = f"no answer within {settings.GANTRY_NOTIFY_TIMEOUT:g}s ({type(exc).__name__})"
        return _transient(notification, error)
    except TRANSIENT_ERRORS as exc:
        return _transient(notification, f"{type(exc).__name__}: {exc}")
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        return _permanent(notification, f"{type(exc).__name__}: {exc}")
    if 200 <= status < 300:
        notification.mark_sent()
        channel.record_success()
        logger.info("notification %s sent to %s", notification.pk, channel)
        return None
    if status == 429 or status >= 500:
        return _transient(notification, error, retry_after)
    return _permanent(notification, error)


def _transient(notification, error, retry_after=None):
    channel = notification.channel
    error = channel.scrub(error)
    channel.record_failure()
    if notification.attempts >= settings.GANTRY_NOTIFY_MAX_ATTEMPTS:
        notification.mark_failed(f"gave up after {notification.attempts} attempts: {error}")
        logger.warning("notification %s to %s failed: %s", notification.pk, channel, error)
        return None
    delay = backoff(notification.attempts, retry_after)
    notification.retry_later(error, delay)
    logger.info("notification %s to %s: %s; retry in %gs", notification.pk, channel, error, delay)
    return delay


def _permanent(notification, error):
    channel = notification.channel
    error = channel.scrub(error)
    channel.record_failure()
    notification.mark_failed(error)
    logger.warning("notification %s to %s failed: %s", notification.pk, channel, error)
    return None
