"""Delivery over real HTTP to a local receiver: payload shapes, retries, failures, idempotency.

`deliver.apply()` runs the Celery task in this process; its retries run at once, in order (the
countdowns are honoured by a real worker only).
"""

import logging
import socket
from datetime import timedelta

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from deployments.models import Deployment
from notifications.models import Channel, Notification
from notifications.tasks import deliver, redeliver_stale

from .conftest import SECRET_PATH

S = Deployment.State
pytestmark = pytest.mark.django_db


@pytest.fixture
def fail_deployment(make_deployment):
    """fail_deployment() -> a prod deployment that just failed, with its notifications made."""

    def fail(reason="promotion failed: Cloud Build said no"):
        deployment = make_deployment("prod", "backend", state=S.PROMOTING)
        deployment.transition(S.FAILED, reason=reason)
        return deployment

    return fail


def run(notification):
    deliver.apply((notification.pk,))
    notification.refresh_from_db()
    return notification


def test_generic_webhook_gets_the_documented_object(make_channel, receiver, fail_deployment):
    channel = make_channel("webhook")
    deployment = fail_deployment()
    notification = run(Notification.objects.get())
    assert notification.state == Notification.State.SENT and notification.attempts == 1
    [request] = receiver.requests
    assert request["path"] == SECRET_PATH
    assert request["headers"]["Content-Type"] == "application/json"
    assert request["headers"]["Idempotency-Key"] == f"gantry-notification-{notification.pk}"
    assert request["json"] == {
        "event": "deployment_failed",
        "environment": "prod",
        "subject": str(deployment),
        "status": "failed",
        "url": f"https://gantry.example.com/deployments/{deployment.pk}/",
        "message": f"Deployment failed: {deployment} — promotion failed: Cloud Build said no",
        "at": deployment.state_changed_at.isoformat(),
    }
    channel.refresh_from_db()
    assert channel.consecutive_failures == 0 and channel.last_success_at is not None


def test_discord_gets_content_and_an_embed_and_pings_nobody(
    make_channel, receiver, fail_deployment
):
    make_channel("discord")
    deployment = fail_deployment(reason="@everyone look")
    run(Notification.objects.get())
    [body] = receiver.bodies
    link = f"https://gantry.example.com/deployments/{deployment.pk}/"
    assert body["content"] == f"❌ **Deployment failed**: {deployment} <{link}>"
    [embed] = body["embeds"]
    assert (embed["title"], embed["url"], embed["description"]) == (
        str(deployment),
        link,
        "@everyone look",
    )
    assert {f["name"]: f["value"] for f in embed["fields"]} == {
        "Environment": "prod",
        "Status": "failed",
    }
    assert body["allowed_mentions"] == {"parse": []}


def test_slack_gets_text_and_blocks_with_escaped_markup(make_channel, receiver, fail_deployment):
    make_channel("slack")
    deployment = fail_deployment(reason="exit <1> & more")
    run(Notification.objects.get())
    [body] = receiver.bodies
    link = f"https://gantry.example.com/deployments/{deployment.pk}/"
    assert body["text"] == f"❌ Deployment failed: {deployment} — {link}"
    section, context = body["blocks"]
    assert section["text"]["text"] == (
        f"❌ *Deployment failed*: <{link}|{deployment}>\nexit &lt;1&gt; &amp; more"
    )
    assert context["elements"][0]["text"].startswith("prod · failed · ")


def test_without_a_base_url_links_are_paths_and_nothing_pretends_to_be_clickable(
    make_channel, receiver, fail_deployment, settings
):
    settings.GANTRY_BASE_URL = ""
    make_channel("discord")
    deployment = fail_deployment()
    run(Notification.objects.get())
    [body] = receiver.bodies
    assert body["content"].endswith(f"({deployment.get_absolute_url()})")
    assert "url" not in body["embeds"][0]


@pytest.mark.parametrize(
    "failure",
    [500, 503, (429, "slow down", 0, {"Retry-After": "0"}), (204, "", 0.8, {})],
    ids=["500", "503", "429", "timeout"],
)
def test_transient_failures_are_retried_until_it_gets_through(
    make_channel, receiver, fail_deployment, failure, settings
):
    settings.GANTRY_NOTIFY_TIMEOUT = 0.3
    channel = make_channel("webhook")
    fail_deployment()
    receiver.answer(failure, failure)  # then 204
    notification = run(Notification.objects.get())
    assert notification.state == Notification.State.SENT
    assert notification.attempts == len(receiver.requests) == 3
    assert notification.last_error == "" and notification.sent_at is not None
    assert len({str(r["json"]) for r in receiver.requests}) == 1  # the same message each time
    channel.refresh_from_db()
    assert channel.consecutive_failures == 0 and channel.last_failure_at is not None


def test_a_4xx_fails_at_once_with_the_reason_and_never_the_url(
    make_channel, receiver, fail_deployment, caplog
):
    channel = make_channel("discord")
    fail_deployment()
    receiver.answer((404, f'{{"message": "Unknown Webhook {SECRET_PATH}", "code": 10015}}'))
    with caplog.at_level(logging.DEBUG):
        notification = run(Notification.objects.get())
    assert notification.state == Notification.State.FAILED
    assert notification.attempts == len(receiver.requests) == 1
    assert notification.last_error == "HTTP 404 Not Found"  # never the body
    assert "s3cr3t" not in caplog.text
    channel.refresh_from_db()
    assert channel.url.endswith(SECRET_PATH)  # stored, only never shown
    assert channel.consecutive_failures == 1 and not channel.failing


def test_a_channel_that_keeps_failing_gives_up_is_marked_failing_and_still_gets_new_messages(
    make_channel, receiver, fail_deployment, settings
):
    settings.GANTRY_NOTIFY_MAX_ATTEMPTS = 4
    channel = make_channel("webhook")
    fail_deployment()
    receiver.always(500, "upstream sad")
    notification = run(Notification.objects.get())
    assert notification.state == Notification.State.FAILED
    assert notification.attempts == len(receiver.requests) == 4
    assert notification.last_error == "gave up after 4 attempts: HTTP 500 Internal Server Error"
    channel.refresh_from_db()
    assert channel.failing and channel.consecutive_failures == 4
    [failing] = AuditEvent.objects.filter(action="channel.failing")  # once, at 3
    assert failing.message == "3 failed attempts in a row"  # the audit log is for every viewer

    receiver.script.clear()
    fail_deployment()
    second = run(Notification.objects.filter(state=Notification.State.PENDING).get())
    assert second.state == Notification.State.SENT
    channel.refresh_from_db()
    assert not channel.failing
    [recovered] = AuditEvent.objects.filter(action="channel.recovered")
    assert recovered.data == {"url": channel.masked_url}


def test_connection_refused_is_retried_then_fails(make_channel, fail_deployment, settings):
    settings.GANTRY_NOTIFY_MAX_ATTEMPTS = 2
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    make_channel("webhook", url=f"http://127.0.0.1:{port}{SECRET_PATH}")
    fail_deployment()
    notification = run(Notification.objects.get())
    assert notification.state == Notification.State.FAILED and notification.attempts == 2
    assert notification.last_error.startswith("gave up after 2 attempts: ConnectError")
    assert "s3cr3t" not in notification.last_error


def test_delivering_twice_sends_once(make_channel, receiver, fail_deployment):
    make_channel("webhook")
    fail_deployment()
    notification = run(Notification.objects.get())
    assert run(notification).attempts == 1
    assert len(receiver.requests) == 1


def test_a_message_another_worker_holds_is_left_to_it(make_channel, receiver, fail_deployment):
    make_channel("webhook")
    fail_deployment()
    notification = Notification.objects.get()
    assert notification.claim(lease_seconds=60)  # another worker, mid-send
    assert not notification.claim(lease_seconds=60)
    assert run(notification).attempts == 1
    assert notification.state == Notification.State.PENDING and receiver.requests == []


def test_a_failed_message_is_not_tried_again(make_channel, receiver, fail_deployment):
    make_channel("webhook")
    fail_deployment()
    receiver.answer(400)
    notification = run(Notification.objects.get())
    assert run(notification).state == Notification.State.FAILED
    assert len(receiver.requests) == 1


def test_a_channel_disabled_before_delivery_sends_nothing(make_channel, receiver, fail_deployment):
    channel = make_channel("webhook")
    fail_deployment()
    Channel.objects.filter(pk=channel.pk).update(enabled=False)
    notification = run(Notification.objects.get())
    assert (notification.state, notification.last_error) == (
        Notification.State.FAILED,
        "channel disabled before delivery",
    )
    assert receiver.requests == []


def test_overdue_messages_are_redelivered_by_the_beat(
    make_channel, receiver, fail_deployment, in_process_broker
):
    make_channel("webhook")
    for _ in range(4):
        fail_deployment()
    lost, _fresh, held, done = Notification.objects.order_by("pk")
    long_ago = timezone.now() - timedelta(minutes=10)
    Notification.objects.filter(pk__in=[lost.pk, held.pk, done.pk]).update(next_attempt_at=long_ago)
    held.claim(lease_seconds=60)
    Notification.objects.filter(pk=done.pk).update(state=Notification.State.SENT)
    assert list(Notification.objects.stale(60)) == [lost]

    in_process_broker.conf.task_always_eager = True  # run what the beat enqueues right here
    try:
        redeliver_stale.apply()
    finally:
        in_process_broker.conf.task_always_eager = False
    lost.refresh_from_db()
    assert lost.state == Notification.State.SENT
    assert len(receiver.requests) == 1
    assert Notification.objects.filter(state=Notification.State.PENDING).count() == 2
