"""Which happenings become notifications, for which channels, and that making them never gets in
the way of the deployment or sweep that caused them."""

import logging

import pytest
from django.db import connection

from audit.models import AuditEvent
from deployments.models import Deployment
from deployments.releases import create_release
from environments import monitoring
from environments.models import Component
from notifications.models import Channel, Event, Notification

S = Deployment.State
pytestmark = pytest.mark.django_db


@pytest.fixture
def channels(make_channel):
    """prod: one for everything, one for failures only, one disabled; dev: one for everything."""
    return {
        "all": make_channel("discord", "prod", "all"),
        "failures": make_channel(
            "slack", "prod", "failures", events=[Event.DEPLOYMENT_FAILED, Event.COMPONENT_DOWN]
        ),
        "off": make_channel("webhook", "prod", "off", enabled=False),
        "dev": make_channel("webhook", "dev", "dev"),
    }


def sent_to(event):
    return sorted(Notification.objects.filter(event=event).values_list("channel__name", flat=True))


def test_a_release_waiting_for_approval_asks_once_per_channel(channels):
    component = Component.objects.get(environment__name="prod", name="backend")
    release, _ = create_release(
        component,
        repository="nemo-team/nemo-api",
        sha="a" * 40,
        branch="main",
        image="registry/backend:" + "a" * 40,
        digest="sha256:" + "1" * 64,
    )
    deployment = release.deployments.get()
    assert deployment.state == S.PENDING_APPROVAL
    assert sent_to(Event.APPROVAL_REQUESTED) == ["all"]
    # A later audit row for the same state (a deployment moved back to waiting) adds nothing.
    AuditEvent.record("deployment.pending_approval", obj=deployment)
    assert Notification.objects.count() == 1
    notification = Notification.objects.get()
    assert (notification.subject, notification.status, notification.state) == (
        str(deployment),
        "pending_approval",
        Notification.State.PENDING,
    )
    assert notification.link == f"https://gantry.example.com/deployments/{deployment.pk}/"
    assert notification.message == f"Approval requested: {deployment} — needs 1 approval"


def test_a_dev_release_queues_at_once_and_asks_nobody(channels):
    component = Component.objects.get(environment__name="dev", name="backend")
    create_release(
        component,
        repository="nemo-team/nemo-api",
        sha="b" * 40,
        branch="develop",
        image="registry/backend:" + "b" * 40,
        digest="sha256:" + "2" * 64,
    )
    assert Notification.objects.count() == 0


@pytest.mark.parametrize(
    ("start", "path", "event", "channels_told"),
    [
        (S.VERIFYING, [S.SUCCEEDED], Event.DEPLOYMENT_SUCCEEDED, ["all"]),
        (S.PROMOTING, [S.FAILED], Event.DEPLOYMENT_FAILED, ["all", "failures"]),
        (
            S.ROLLING_OUT,
            [S.ROLLING_BACK, S.ROLLED_BACK],
            Event.DEPLOYMENT_ROLLED_BACK,
            ["all"],
        ),
    ],
)
def test_each_end_state_notifies_each_matching_channel_once(
    channels, make_deployment, start, path, event, channels_told
):
    deployment = make_deployment("prod", "backend", state=start)
    for state in path:
        deployment.transition(state, reason=f"now {state}")
    assert sent_to(event) == channels_told
    assert Notification.objects.count() == len(channels_told)
    assert set(Notification.objects.values_list("message", flat=True)) == {
        f"{Event(event).label}: {deployment} — now {path[-1]}"
    }


def test_states_nobody_asked_for_stay_quiet(channels, make_deployment):
    deployment = make_deployment("prod", "backend", state=S.QUEUED)
    deployment.transition(S.PROMOTING)
    deployment.transition(S.ROLLING_OUT)
    deployment.transition(S.VERIFYING)
    make_deployment("prod", "backend", state=S.QUEUED).transition(S.CANCELLED)
    assert Notification.objects.count() == 0


@pytest.fixture
def prod_stack(prod_stack, settings):
    """The shared healthy prod stack, where one result makes a verdict."""
    settings.GANTRY_STATUS_CONFIRMATIONS = 1
    return prod_stack


def test_component_down_and_recovered_come_from_probe_sweeps(channels, prod_stack):
    prod, routes = prod_stack
    monitoring.sweep(prod.pk)  # unknown -> up everywhere: nothing to say
    assert Notification.objects.count() == 0
    routes["/prod/backend/actuator/health"] = (503, {"status": "DOWN"}, 0)
    monitoring.sweep(prod.pk)
    assert sent_to(Event.COMPONENT_DOWN) == ["all", "failures"]
    down = Notification.objects.get(event=Event.COMPONENT_DOWN, channel__name="all")
    assert (down.subject, down.status) == ("prod/backend", "down")
    backend = Component.objects.get(environment__name="prod", name="backend")
    assert down.link == "https://gantry.example.com" + backend.get_absolute_url()
    monitoring.sweep(prod.pk)  # still down: no new event, no new message
    assert Notification.objects.count() == 2
    routes["/prod/backend/actuator/health"] = (200, {"status": "UP"}, 0)
    monitoring.sweep(prod.pk)
    assert sent_to(Event.COMPONENT_RECOVERED) == ["all"]
    assert Notification.objects.count() == 3


def test_a_channel_whose_message_cannot_be_made_is_skipped_and_logged(
    channels, make_deployment, caplog
):
    Channel.objects.filter(pk=channels["all"].pk).update(kind="pigeon")
    deployment = make_deployment("prod", "backend", state=S.PROMOTING)
    with caplog.at_level(logging.ERROR, logger="notifications.events"):
        deployment.transition(S.FAILED, reason="boom")
    deployment.refresh_from_db()
    assert deployment.state == S.FAILED
    assert AuditEvent.objects.filter(action="deployment.failed").count() == 1
    assert sent_to(Event.DEPLOYMENT_FAILED) == ["failures"]  # the other channel still hears
    assert "no payload for channel kind 'pigeon'" in caplog.text


def test_a_database_error_while_notifying_leaves_the_transition_whole(
    channels, make_deployment, caplog
):
    """The notifications table is gone (say, a migration not yet run): the savepoint keeps the
    caller's transaction usable and the deployment moves on."""
    if connection.vendor == "mysql":
        pytest.skip("MySQL commits DDL at once; the renamed table would outlive the test")
    deployment = make_deployment("prod", "backend", state=S.VERIFYING)
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE notifications_notification RENAME TO notifications_gone")
    with caplog.at_level(logging.ERROR, logger="notifications.events"):
        deployment.transition(S.SUCCEEDED, reason="healthy")
    deployment.refresh_from_db()
    assert deployment.state == S.SUCCEEDED
    assert deployment.events.filter(kind="state").count() == 1
    assert AuditEvent.objects.filter(action="deployment.succeeded").count() == 1
    assert "could not create the deployment:" in caplog.text
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE notifications_gone RENAME TO notifications_notification")
    assert Notification.objects.count() == 0
