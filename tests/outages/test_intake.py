"""The broker and the cache are not on the intake path; a database that is away is a quick 503.

Gantry's cache and broker run on a Redis the test starts and kills itself (as production shares
one Memorystore, REDIS_URL), and the database is reached through a TCP proxy the test cuts.
What is answered 2xx is in the database, and a reconciler enqueues it once Redis is back."""

from datetime import timedelta

import pytest
import redis
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from deployments.models import Deployment
from deployments.tasks import reconcile_deployments
from github.models import WebhookDelivery
from github.tasks import reconcile_deliveries
from portal.models import Profile
from tests.github.payloads import SECRET, post, workflow_run

pytestmark = pytest.mark.django_db(transaction=True)
S = Deployment.State


def waiting_in_queue(redis_server) -> int:
    return redis.Redis.from_url(redis_server.url).llen("celery")


def overdue_by_grace(settings):
    return timezone.now() - timedelta(seconds=settings.GANTRY_RECONCILE_GRACE_SECONDS + 1)


def test_a_webhook_while_redis_is_away_is_stored_answered_and_picked_up_later(
    on_own_redis, redis_server, settings
):
    redis_server.stop()
    response = post(Client(raise_request_exception=False), workflow_run(branch="develop"))

    assert response.status_code == 202
    delivery = WebhookDelivery.objects.get()
    assert delivery.outcome == WebhookDelivery.Outcome.ACCEPTED

    redis_server.start()  # back, and empty: the message was never sent
    assert waiting_in_queue(redis_server) == 0
    WebhookDelivery.objects.update(next_resolve_at=overdue_by_grace(settings))
    reconcile_deliveries()
    assert waiting_in_queue(redis_server) == 1


def test_an_approval_while_redis_is_away_is_recorded_and_picked_up_later(
    on_own_redis, redis_server, settings, make_deployment, make_user
):
    deployment = make_deployment(state=S.PENDING_APPROVAL, approvals_required=1)
    bob = make_user("approver", "bob")
    Profile.objects.update_or_create(user=bob, defaults={"github_login": "bob"})
    client = Client(raise_request_exception=False)
    client.force_login(bob)

    redis_server.stop()
    response = client.post(
        reverse("deployment-decide", args=[deployment.pk]), {"decision": "approve"}
    )

    assert response.status_code == 302
    deployment.refresh_from_db()
    assert deployment.state == S.QUEUED
    assert AuditEvent.objects.filter(action="deployment.approve").count() == 1

    redis_server.start()
    Deployment.objects.filter(pk=deployment.pk).update(queued_at=overdue_by_grace(settings))
    reconcile_deployments()
    assert waiting_in_queue(redis_server) == 1


def test_pages_still_answer_while_redis_is_away(on_own_redis, redis_server, make_user, settings):
    settings.GANTRY_DASHBOARD_CACHE_SECONDS = 5  # the dashboards share readings through it
    client = Client(raise_request_exception=False)
    client.force_login(make_user("viewer"))
    redis_server.stop()

    assert client.get(reverse("environment", args=["dev"])).status_code == 200


# --- the database away ---------------------------------------------------------------------------


def test_a_webhook_while_the_database_is_away_gets_a_503_in_json(
    database_proxy, settings, seed_topology
):
    settings.GANTRY_GITHUB_WEBHOOK_SECRET = SECRET
    client = Client(raise_request_exception=False)
    assert post(client, workflow_run(branch="feature/x")).status_code == 200  # routes read

    database_proxy.cut()
    response = post(client, workflow_run(branch="develop"))

    assert response.status_code == 503
    assert response.headers["Content-Type"] == "application/json"
    assert "database" in response.json()["error"]
    database_proxy.restore()
    connection.close()
    assert WebhookDelivery.objects.count() == 1


def test_a_page_while_the_database_is_away_says_so_with_a_503(database_proxy, make_user):
    client = Client(raise_request_exception=False)
    client.force_login(make_user("viewer"))
    database_proxy.cut()

    response = client.get(reverse("environment", args=["dev"]))

    assert response.status_code == 503
    assert b"database" in response.content
    database_proxy.restore()
