"""Turning what happened in Gantry into Notification rows, inside the caller's transaction.

This runs in the middle of deployment transitions and probe sweeps, so it only writes rows and
asks for delivery after commit; the network is touched by the worker alone. Nothing here may
stop the caller: any error is logged and swallowed, and a savepoint keeps the caller's
transaction usable.
"""

import logging

from django.db import transaction

from .models import Channel, Event, Notification
from .payloads import Message, render
from .tasks import enqueue_delivery

logger = logging.getLogger(__name__)

DEPLOYMENT_EVENTS = {
    "pending_approval": Event.APPROVAL_REQUESTED,
    "succeeded": Event.DEPLOYMENT_SUCCEEDED,
    "failed": Event.DEPLOYMENT_FAILED,
    "rolled_back": Event.DEPLOYMENT_ROLLED_BACK,
}


def notify(messages):
    """Queue each (environment_id, source, Message) for every enabled channel wanting it.
    Returns the notifications created; a channel whose row cannot be made is logged and
    skipped, and never stops the others or the caller."""
    try:
        environments = {environment_id for environment_id, _, _ in messages}
        with transaction.atomic():
            channels = list(Channel.objects.filter(environment_id__in=environments, enabled=True))
    except Exception:
        logger.exception("could not look up channels for %s", [m[1] for m in messages])
        return []
    created = []
    for environment_id, source, message in messages:
        for channel in channels:
            if channel.environment_id == environment_id and channel.wants(message.event):
                notification = _create(channel, source, message)
                if notification is not None:
                    created.append(notification)
    return created


def _create(channel, source, message):
    try:
        with transaction.atomic():
            notification, new = Notification.objects.get_or_create(
                channel=channel,
                source=source,
                defaults={
                    "event": message.event,
                    "subject": message.subject[:200],
                    "link": message.url[:400],
                    "status": message.status[:24],
                    "message": message.text,
                    "payload": render(channel.kind, message),
                },
            )
            if new:
                enqueue_delivery(notification.pk)
    except Exception:
        logger.exception("could not create the %s notification for channel #%s", source, channel.pk)
        return None
    return notification if new else None


def deployment_message(deployment, event) -> Message:
    detail = deployment.reason
    if event == Event.APPROVAL_REQUESTED and not detail:
        count = deployment.approvals_required
        detail = f"needs {count} approval{'s' if count != 1 else ''}"
    return Message(
        event=event,
        environment=deployment.component.environment.name,
        subject=str(deployment),
        status=deployment.state,
        path=deployment.get_absolute_url(),
        detail=detail,
        at=deployment.state_changed_at,
    )


def deployment_reached(deployment, state):
    """A deployment entered `state`; notify if it is one people want to hear about.
    `deployment` is a Deployment or its id (an audit row knows only the id)."""
    event = DEPLOYMENT_EVENTS.get(state)
    if event is None:
        return []
    from deployments.models import Deployment

    try:
        with transaction.atomic():
            if not isinstance(deployment, Deployment):
                deployment = Deployment.objects.select_related(
                    "release", "component__environment"
                ).get(pk=deployment)
            source = f"deployment:{deployment.pk}:{state}"
            environment_id = deployment.component.environment_id
            message = deployment_message(deployment, event)
    except Exception:
        logger.exception(
            "could not describe deployment %s for notifications",
            getattr(deployment, "pk", deployment),
        )
        return []
    return notify([(environment_id, source, message)])


def health_changed(health_events):
    """Confirmed status changes from a probe sweep: down, and down → up."""
    from environments.models import Component, Status

    try:
        wanted = [
            (e, Event.COMPONENT_DOWN if e.status == Status.DOWN else Event.COMPONENT_RECOVERED)
            for e in health_events
            if e.status == Status.DOWN or (e.previous == Status.DOWN and e.status == Status.UP)
        ]
        if not wanted:
            return []
        with transaction.atomic():
            components = Component.objects.select_related("environment").in_bulk(
                {e.component_id for e, _ in wanted}
            )
        messages = []
        for health_event, event in wanted:
            component = components[health_event.component_id]
            # bulk_create leaves no pk on MySQL: the component and time name the change.
            source = f"health:{component.pk}:{health_event.at.isoformat()}:{health_event.status}"
            messages.append(
                (
                    component.environment_id,
                    source,
                    Message(
                        event=event,
                        environment=component.environment.name,
                        subject=str(component),
                        status=health_event.status,
                        path=component.get_absolute_url(),
                        detail=health_event.detail
                        or f"{health_event.previous} → {health_event.status}",
                        at=health_event.at,
                    ),
                )
            )
    except Exception:
        logger.exception("could not describe health events for notifications")
        return []
    return notify(messages)
