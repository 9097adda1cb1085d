"""Whole deployments against the sandbox with notification channels that do not work."""

import logging

import pytest

from deployments.models import Deployment
from notifications.models import Channel, Event, Notification
from notifications.tasks import deliver
from tests.deployments.engine_helpers import drive, new_release

S = Deployment.State
pytestmark = pytest.mark.django_db


def test_a_failing_channel_never_holds_up_a_deployment(
    engine, make_channel, receiver, django_capture_on_commit_callbacks, settings
):
    settings.GANTRY_NOTIFY_MAX_ATTEMPTS = 3
    make_channel("discord", "prod")
    receiver.always(500, "", delay=0.5)  # slow and broken
    with django_capture_on_commit_callbacks(execute=True) as enqueued:
        deployment = drive(new_release(engine, "prod", "frontend"))
    assert deployment.state == S.SUCCEEDED, deployment.reason
    notification = Notification.objects.get()
    assert (notification.event, notification.state) == (
        Event.DEPLOYMENT_SUCCEEDED,
        Notification.State.PENDING,
    )
    assert receiver.requests == []  # delivery went to the queue, not into the deployment
    deliveries = [c for c in enqueued if c.__qualname__.startswith("enqueue_delivery")]
    assert len(deliveries) == 1

    deliver.apply((notification.pk,))
    notification.refresh_from_db()
    assert notification.state == Notification.State.FAILED and notification.attempts == 3
    deployment.refresh_from_db()
    assert deployment.state == S.SUCCEEDED


def test_a_channel_that_breaks_the_notifier_leaves_the_rollout_alone(
    engine, make_channel, receiver, caplog
):
    broken = make_channel("webhook", "prod", "broken")
    Channel.objects.filter(pk=broken.pk).update(kind="smoke")
    make_channel("slack", "prod", "fine")
    with caplog.at_level(logging.ERROR, logger="notifications.events"):
        deployment = drive(new_release(engine, "prod", "frontend"))
    assert deployment.state == S.SUCCEEDED, deployment.reason
    assert list(Notification.objects.values_list("channel__name", flat=True)) == ["fine"]
    assert "smoke" in caplog.text
