"""The notifications page and the channel admin: who sees them, and that URLs stay masked."""

import pytest
from django.urls import reverse

from audit.models import AuditEvent
from deployments.models import Deployment
from environments.models import Environment
from notifications.models import Channel, Event, Notification

from .conftest import SECRET_PATH

S = Deployment.State
pytestmark = pytest.mark.django_db


@pytest.fixture
def history(make_channel, make_deployment):
    """Three notifications on one channel: one sent, one failed, one pending."""
    channel = make_channel("discord", "prod", "ops-room")
    for _ in range(3):
        make_deployment("prod", "backend", state=S.PROMOTING).transition(S.FAILED, reason="x")
    sent, failed, _ = Notification.objects.order_by("pk")
    sent.mark_sent()
    failed.mark_failed(f"refused: {channel.url} resolves to 10.0.0.7, a private address")
    return channel


def test_a_viewer_sees_recent_notifications_and_channel_health(client_as, history, receiver):
    page = client_as("viewer").get(reverse("notifications")).content.decode()
    assert page.count('<tr class="notification-') == 3
    assert page.count('class="notification-failed"') == 1
    assert f"<code>{receiver.base}/****</code>" in page  # the channel, masked
    assert "s3cr3t" not in page
    assert "ops-room" in page and "Deployment failed" in page


@pytest.mark.parametrize("role", ["viewer", "deployer", "approver", "ci"])
def test_delivery_errors_are_shown_only_to_those_who_manage_channels(
    client, make_user, history, receiver, role
):
    client.force_login(make_user(role, role))
    page = client.get(reverse("notifications")).content.decode()
    assert "10.0.0.7" not in page and "refused" not in page
    assert "Last error" not in page

    client.force_login(make_user("admin", "root"))
    page = client.get(reverse("notifications")).content.decode()
    assert f"refused: {receiver.base}/**** resolves to 10.0.0.7, a private address" in page


def test_the_page_filters_by_state(client_as, history):
    page = client_as("viewer").get(reverse("notifications"), {"state": "failed"}).content
    assert page.decode().count('<tr class="notification-') == 1


def test_a_failing_channel_says_so(client_as, history):
    Channel.objects.filter(pk=history.pk).update(consecutive_failures=5)
    page = client_as("viewer").get(reverse("notifications")).content.decode()
    assert "failing</span> 5 failed attempts in a row" in page


def test_anonymous_visitors_are_sent_to_sign_in(client, history):
    response = client.get(reverse("notifications"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_a_user_without_a_role_is_refused(client, make_user, history):
    client.force_login(make_user(None, "nobody"))
    assert client.get(reverse("notifications")).status_code == 403


@pytest.fixture
def admin_client(client, make_user):
    user = make_user("admin", "root")
    user.is_staff = True
    user.save()
    client.force_login(user)
    return client


def test_an_admin_adds_a_channel_and_the_audit_keeps_only_the_masked_url(
    admin_client, seed_topology
):
    prod = Environment.objects.get(name="prod")
    response = admin_client.post(
        reverse("admin:notifications_channel_add"),
        {
            "environment": prod.pk,
            "name": "kakao",
            "kind": "webhook",
            "url": "https://gateway.example.com/kakao/abcdef-secret",
            "events": [Event.DEPLOYMENT_FAILED, Event.COMPONENT_DOWN],
            "enabled": "on",
        },
    )
    assert response.status_code == 302, response.content
    channel = Channel.objects.get()
    assert channel.url == "https://gateway.example.com/kakao/abcdef-secret"
    assert channel.events == [Event.DEPLOYMENT_FAILED, Event.COMPONENT_DOWN]
    [audit] = AuditEvent.objects.filter(action="channel.create")
    assert audit.actor == "root" and audit.data["url"] == "https://gateway.example.com/****"
    assert "abcdef-secret" not in str(audit.data) + audit.message + audit.object_repr

    listing = admin_client.get(reverse("admin:notifications_channel_changelist")).content
    change = admin_client.get(reverse("admin:notifications_channel_change", args=[channel.pk]))
    for html in (listing.decode(), change.content.decode()):
        assert "https://gateway.example.com/****" in html
        assert "abcdef-secret" not in html


def test_saving_a_channel_with_a_blank_url_keeps_the_stored_one(admin_client, make_channel):
    channel = make_channel("slack", "prod", "team")
    response = admin_client.post(
        reverse("admin:notifications_channel_change", args=[channel.pk]),
        {
            "environment": channel.environment_id,
            "name": "team-renamed",
            "kind": "slack",
            "url": "",
            "events": [Event.DEPLOYMENT_SUCCEEDED],
        },
    )
    assert response.status_code == 302, response.content
    channel.refresh_from_db()
    assert channel.name == "team-renamed" and channel.url.endswith(SECRET_PATH)
    assert not channel.enabled
    audit = AuditEvent.objects.get(action="channel.change")
    assert "url" not in audit.message and "name" in audit.message


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("url", "", "Enter the webhook URL."),
        ("url", "ftp://example.com/hook", "Enter an http(s) URL."),
        ("url", "not a url", "Enter a valid URL."),
        ("url", "https://127.0.0.1:8000/hook", "127.0.0.1 is a loopback address"),
        # The stub resolver answers a link-local fe80::1 for it (below): nothing is connected to.
        ("url", "https://meta.corp.example/computeMetadata/v1/", "a link-local address"),
        ("url", "http://hooks.example.com/hook", "plain http:// is allowed only"),
        ("url", "https://nowhere.example.com/hook", "nowhere.example.com cannot be resolved"),
        ("events", [], "choose at least one event, or disable the channel"),
        ("events", ["deployment_exploded"], "Select a valid choice."),
        ("kind", "pigeon", "Select a valid choice."),
    ],
)
def test_bad_channel_input_is_refused_and_saves_nothing(
    admin_client, seed_topology, settings, dns, field, value, error
):
    settings.GANTRY_NOTIFY_ALLOWED_NETWORKS = []
    dns.answers["meta.corp.example"] = ["fe80::1"]
    data = {
        "environment": Environment.objects.get(name="prod").pk,
        "name": "x",
        "kind": "discord",
        "url": "https://discord.com/api/webhooks/1/abc",
        "events": [Event.DEPLOYMENT_FAILED],
        "enabled": "on",
    }
    data[field] = value
    response = admin_client.post(reverse("admin:notifications_channel_add"), data)
    assert response.status_code == 200
    assert error in response.content.decode()
    assert Channel.objects.count() == 0
    assert not AuditEvent.objects.filter(action__startswith="channel.").exists()


def test_a_view_only_staff_user_never_sees_the_url(client, make_user, make_channel):
    from django.contrib.auth.models import Permission

    channel = make_channel("discord", "prod", "ops")
    user = make_user(None, "auditor")
    user.is_staff = True
    user.save()
    user.user_permissions.add(Permission.objects.get(codename="view_channel"))
    client.force_login(user)
    html = client.get(reverse("admin:notifications_channel_change", args=[channel.pk]))
    assert html.status_code == 200
    assert "/****" in html.content.decode() and "s3cr3t" not in html.content.decode()


def test_roles_carry_the_notification_permissions(make_user):
    viewer, admin = make_user("viewer", "v"), make_user("admin", "a")
    assert viewer.has_perm("notifications.view_notification")
    assert not viewer.has_perm("notifications.change_channel")
    assert all(
        admin.has_perm(f"notifications.{action}_channel")
        for action in ("add", "change", "delete", "view")
    )
