"""/metrics: figures computed from rows at scrape time, parsed back the way Prometheus reads."""

import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext, override_settings
from django.urls import reverse
from django.utils import timezone
from kombu import Connection
from prometheus_client.parser import text_string_to_metric_families

from audit.models import AuditEvent
from deployments.models import Deployment
from environments.models import Component, ComponentHealth, Environment, ProbeSample
from github.models import WebhookDelivery
from portal import broker

pytestmark = pytest.mark.django_db
TOKEN = "prometheus-scrape-token-0123456789"
S = Deployment.State


@pytest.fixture
def scrape(client, settings):
    """scrape() -> {family name: {labels tuple (sorted items): value}} for every sample."""
    settings.GANTRY_METRICS_TOKEN = TOKEN

    def get():
        response = client.get(reverse("metrics"), HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
        assert response.status_code == 200, response.content
        assert response["Content-Type"].startswith("text/plain")
        families = {}
        for family in text_string_to_metric_families(response.content.decode()):
            for sample in family.samples:
                labels = tuple(sorted(sample.labels.items()))
                families.setdefault(sample.name, {})[labels] = sample.value
        return families

    return get


def by(samples, *names):
    """{(label values in `names` order): value} of one sample name."""
    return {tuple(dict(labels)[n] for n in names): value for labels, value in samples.items()}


def finish(deployment, *path, started=None):
    """Walk a deployment through states the way the engine does (transition, so audited)."""
    if started is not None:
        Deployment.objects.filter(pk=deployment.pk).update(started_at=started)
        deployment.refresh_from_db()
    for state in path:
        deployment.transition(state, reason="test")
    return deployment


def test_finished_deployments_count_each_outcome_from_the_audit_log(scrape, make_deployment):
    for _ in range(2):
        finish(make_deployment("prod", "backend", state="verifying"), S.SUCCEEDED)
    finish(make_deployment("prod", "backend", state="promoting"), S.FAILED)
    finish(make_deployment("dev", "frontend", state="verifying"), S.ROLLING_BACK, S.ROLLED_BACK)
    # Succeeded, then rolled back by hand: counted once under each outcome, never taken back.
    finish(
        make_deployment("dev", "frontend", state="verifying"),
        S.SUCCEEDED,
        S.ROLLING_BACK,
        S.ROLLED_BACK,
    )
    finish(make_deployment("dev", "backend", state="queued"), S.CANCELLED)
    finish(make_deployment("prod", "frontend", state="pending_approval"), S.REJECTED)
    # Unfinished ones and other audit rows are not finished deployments.
    make_deployment("prod", "mysql", state="rolling_out")
    AuditEvent.record("deployment.succeeded", message="no object: not a deployment")

    finished = by(
        scrape()["gantry_deployments_finished_total"], "environment", "component", "outcome"
    )

    assert finished == {
        ("prod", "backend", "succeeded"): 2,
        ("prod", "backend", "failed"): 1,
        ("dev", "frontend", "rolled_back"): 2,
        ("dev", "frontend", "succeeded"): 1,
        ("dev", "backend", "cancelled"): 1,
        ("prod", "frontend", "rejected"): 1,
    }


def test_unfinished_deployments_and_waiting_approvals(scrape, make_deployment):
    now = timezone.now()
    make_deployment("prod", "frontend", state="rolling_out")
    make_deployment("prod", "backend", state="verifying")
    make_deployment("dev", "backend", state="queued")
    make_deployment("dev", "frontend", state="queued")
    make_deployment(
        "prod", "ai-server", state="pending_approval", created_at=now - timedelta(seconds=600)
    )
    make_deployment(
        "prod", "chromadb", state="pending_approval", created_at=now - timedelta(seconds=60)
    )
    finish(make_deployment("prod", "mysql", state="verifying"), S.SUCCEEDED)

    metrics = scrape()
    states = by(metrics["gantry_deployments"], "environment", "state")
    waiting = by(metrics["gantry_approvals_waiting"], "environment")
    oldest = by(metrics["gantry_approval_oldest_age_seconds"], "environment")

    unfinished = [s.value for s in S if s not in Deployment.FINAL]
    assert set(states) == {(env, s) for env in ("prod", "dev") for s in unfinished}
    assert {k: v for k, v in states.items() if v} == {
        ("prod", "rolling_out"): 1,
        ("prod", "verifying"): 1,
        ("prod", "pending_approval"): 2,
        ("dev", "queued"): 2,
    }
    assert waiting == {("prod",): 2, ("dev",): 0}
    assert 600 <= oldest["prod",] <= 630
    assert oldest["dev",] == 0


def test_duration_histogram_counts_each_bucket_within_the_window(scrape, make_deployment):
    now = timezone.now()
    for seconds in (20, 45, 100, 400, 5000):
        finish(
            make_deployment("prod", "backend", state="verifying"),
            S.SUCCEEDED,
            started=now - timedelta(seconds=seconds),
        )
    finish(
        make_deployment("prod", "frontend", state="verifying"),
        S.ROLLING_BACK,
        S.ROLLED_BACK,
        started=now - timedelta(seconds=700),
    )
    old = finish(
        make_deployment("prod", "backend", state="verifying"),
        S.SUCCEEDED,
        started=now - timedelta(days=40, seconds=60),
    )
    Deployment.objects.filter(pk=old.pk).update(finished_at=now - timedelta(days=40))
    finish(make_deployment("prod", "backend", state="queued"), S.CANCELLED)  # never started

    metrics = scrape()
    buckets = by(
        metrics["gantry_deployment_duration_seconds_bucket"], "environment", "outcome", "le"
    )
    counts = by(metrics["gantry_deployment_duration_seconds_count"], "environment", "outcome")
    sums = by(metrics["gantry_deployment_duration_seconds_sum"], "environment", "outcome")

    succeeded = {le: v for (env, outcome, le), v in buckets.items() if outcome == "succeeded"}
    assert succeeded == {
        "30.0": 1,
        "60.0": 2,
        "120.0": 3,
        "300.0": 3,
        "600.0": 4,
        "900.0": 4,
        "1800.0": 4,
        "3600.0": 4,
        "+Inf": 5,
    }
    assert buckets["prod", "rolled_back", "600.0"] == 0
    assert buckets["prod", "rolled_back", "900.0"] == 1
    assert counts == {("prod", "succeeded"): 5, ("prod", "rolled_back"): 1}
    assert 5565 <= sums["prod", "succeeded"] <= 5565 + 30
    assert 700 <= sums["prod", "rolled_back"] <= 730


def test_webhook_deliveries_by_settled_outcome_and_pending(scrape):
    for outcome, n in (("released", 3), ("rejected", 1), ("accepted", 2), ("invalid", 1)):
        for _ in range(n):
            WebhookDelivery.objects.create(outcome=outcome, event="workflow_run")

    metrics = scrape()
    total = by(metrics["gantry_webhook_deliveries_total"], "outcome")

    settled = {o.value for o in WebhookDelivery.Outcome} - {"accepted"}
    assert set(total) == {(o,) for o in settled}
    assert {k: v for k, v in total.items() if v} == {
        ("released",): 3,
        ("rejected",): 1,
        ("invalid",): 1,
    }
    assert metrics["gantry_webhook_deliveries_pending"] == {(): 2}


def test_probe_results_by_component(scrape, seed_topology):
    now = timezone.now().replace(microsecond=0)
    prod = Environment.objects.get(name="prod")
    Environment.objects.filter(pk=prod.pk).update(probed_at=now)
    backend = Component.objects.get(environment=prod, name="backend")
    frontend = Component.objects.get(environment=prod, name="frontend")
    ComponentHealth.objects.create(component=backend, status="up", since=now)
    ComponentHealth.objects.create(component=frontend, status="down", since=now)
    rows = [
        (backend, now, "up", 12.5),
        (backend, now - timedelta(minutes=10), "down", None),
        (backend, now - timedelta(minutes=20), "up", 30.0),
        (backend, now - timedelta(hours=2), "down", None),  # outside the hour
        (frontend, now, "degraded", 1500.0),
        (frontend, now - timedelta(minutes=5), "down", None),
    ]
    ProbeSample.objects.bulk_create(
        ProbeSample(component=c, at=at, status=s, latency_ms=ms) for c, at, s, ms in rows
    )

    metrics = scrape()
    confirmed = by(metrics["gantry_component_status"], "environment", "component", "status")
    latest = by(metrics["gantry_probe_status"], "environment", "component", "status")
    latency = by(metrics["gantry_probe_latency_seconds"], "environment", "component")
    hour = by(metrics["gantry_probe_samples_last_hour"], "environment", "component", "status")
    probed = by(metrics["gantry_environment_probed_timestamp_seconds"], "environment")

    assert len(confirmed) == 12 * 4 and sum(confirmed.values()) == 12
    assert confirmed["prod", "backend", "up"] == 1 and confirmed["prod", "backend", "down"] == 0
    assert confirmed["prod", "frontend", "down"] == 1
    assert confirmed["dev", "backend", "unknown"] == 1  # never probed
    assert {k: v for k, v in latest.items() if v} == {
        ("prod", "backend", "up"): 1,
        ("prod", "frontend", "degraded"): 1,
    }
    assert latency == {("prod", "backend"): 0.0125, ("prod", "frontend"): 1.5}
    assert {k: v for k, v in hour.items() if v} == {
        ("prod", "backend", "up"): 2,
        ("prod", "backend", "down"): 1,
        ("prod", "frontend", "degraded"): 1,
        ("prod", "frontend", "down"): 1,
    }
    assert probed == {("prod",): now.timestamp()}


# --- Celery queues ------------------------------------------------------------------------------


def queue_depths(metrics):
    return by(metrics.get("gantry_celery_queue_length", {}), "queue")


def scrape_errors(metrics):
    return by(metrics["gantry_scrape_errors"], "source")


def test_queue_depth_on_a_real_redis_broker(scrape, redis_url):
    import redis

    prefix = f"gantry-metrics-test-{uuid.uuid4().hex}:"
    client = redis.Redis.from_url(redis_url)
    lists = {
        "celery": 5,
        "notifications": 2,
        "notifications\x06\x163": 1,  # kombu's list for priority 3 of the same queue
        "unrelated": 4,
    }
    try:
        for name, n in lists.items():
            client.lpush(prefix + name, *[f'{{"n": {i}}}' for i in range(n)])
        with override_settings(
            REDIS_URL=redis_url,
            CELERY_BROKER_URL=redis_url,
            CELERY_BROKER_TRANSPORT_OPTIONS={"global_keyprefix": prefix},
        ):
            metrics = scrape()
    finally:
        client.delete(*[prefix + name for name in lists])
        client.close()

    assert queue_depths(metrics) == {("celery",): 5, ("notifications",): 3}
    assert scrape_errors(metrics)["celery",] == 0


def test_an_unreachable_broker_leaves_queue_depth_out_and_says_so(scrape, seed_topology):
    with override_settings(
        REDIS_URL="redis://127.0.0.1:1/0",
        CELERY_BROKER_URL="redis://127.0.0.1:1/0",
        CELERY_BROKER_TRANSPORT_OPTIONS={},
    ):
        metrics = scrape()

    assert "gantry_celery_queue_length" not in metrics
    assert scrape_errors(metrics) == {
        ("celery",): 1,
        ("deployments",): 0,
        ("webhooks",): 0,
        ("probes",): 0,
    }
    assert by(metrics["gantry_approvals_waiting"], "environment") == {("prod",): 0, ("dev",): 0}


def test_queue_depth_on_the_embedded_broker(scrape, tmp_path):
    url, options = broker.embedded(tmp_path)
    with Connection(url, transport_options=options) as conn:
        for queue, n in (("celery", 4), ("notifications", 2), ("elsewhere", 3)):
            simple = conn.SimpleQueue(queue)
            for i in range(n):
                simple.put({"n": i})
            simple.close()

    with override_settings(
        REDIS_URL="", CELERY_BROKER_URL=url, CELERY_BROKER_TRANSPORT_OPTIONS=options
    ):
        metrics = scrape()

    assert queue_depths(metrics) == {("celery",): 4, ("notifications",): 2}
    assert scrape_errors(metrics)["celery",] == 0


def test_an_unreadable_broker_file_is_a_scrape_error(scrape, tmp_path):
    url, options = broker.embedded(tmp_path / "missing")
    with override_settings(
        REDIS_URL="", CELERY_BROKER_URL=url, CELERY_BROKER_TRANSPORT_OPTIONS=options
    ):
        metrics = scrape()

    assert "gantry_celery_queue_length" not in metrics
    assert scrape_errors(metrics)["celery",] == 1


# --- who may scrape -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "header", "expected"),
    [
        (TOKEN, f"Bearer {TOKEN}", 200),
        (TOKEN, f"bearer {TOKEN}", 200),
        (TOKEN, f"Bearer {TOKEN}x", 401),
        (TOKEN, f"Bearer {TOKEN[:-1]}", 401),
        (TOKEN, f"Basic {TOKEN}", 401),
        (TOKEN, "Bearer ", 401),
        (TOKEN, None, 401),
        ("", f"Bearer {TOKEN}", 401),
        ("", "Bearer ", 401),
    ],
)
def test_bearer_token(client, settings, token, header, expected):
    settings.GANTRY_METRICS_TOKEN = token
    extra = {"HTTP_AUTHORIZATION": header} if header is not None else {}
    response = client.get(reverse("metrics"), **extra)
    assert response.status_code == expected
    if expected == 401:
        assert response["WWW-Authenticate"] == 'Bearer realm="gantry-metrics"'
        assert b"gantry_" not in response.content
    else:
        assert b"gantry_scrape_errors" in response.content


@pytest.mark.parametrize("token", [TOKEN, ""])
@pytest.mark.parametrize(("role", "expected"), [("viewer", 200), ("admin", 200), (None, 403)])
def test_signed_in_users_need_the_viewer_role(client_as, settings, token, role, expected):
    settings.GANTRY_METRICS_TOKEN = token
    response = client_as(role, username=f"user-{role}").get(reverse("metrics"))
    assert response.status_code == expected
    assert (b"gantry_scrape_errors" in response.content) == (expected == 200)


def test_a_wrong_token_is_refused_even_with_a_session(client_as, settings):
    settings.GANTRY_METRICS_TOKEN = TOKEN
    client = client_as("viewer")
    assert client.get(reverse("metrics"), HTTP_AUTHORIZATION="Bearer wrong").status_code == 401


def test_anonymous_visitors_get_401_not_the_sign_in_page(client, settings):
    settings.GANTRY_METRICS_TOKEN = ""
    response = client.get(reverse("metrics"))
    assert response.status_code == 401
    assert "Location" not in response


def test_only_get(client, settings):
    settings.GANTRY_METRICS_TOKEN = TOKEN
    response = client.post(reverse("metrics"), HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 405


# --- cost of a scrape ---------------------------------------------------------------------------


def populate(extra_components, now):
    """More components; every component gets a health row and a few probe results."""
    template = Component.objects.get(environment__name="prod", name="mysql")
    for n in range(extra_components):
        template.pk, template.name, template.port = None, f"extra-{n}", 10000 + n
        template.save()
    for component in Component.objects.all():
        ComponentHealth.objects.get_or_create(component=component, defaults={"status": "up"})
        ProbeSample.objects.bulk_create(
            ProbeSample(component=component, at=now - timedelta(minutes=m), status="up")
            for m in range(3)
        )


def test_query_count_does_not_grow_with_components_or_deployments(
    scrape, make_deployment, django_assert_max_num_queries
):
    now = timezone.now()
    Environment.objects.update(probed_at=now)
    populate(0, now)
    finish(make_deployment("prod", "backend", state="verifying"), S.SUCCEEDED)
    WebhookDelivery.objects.create(outcome="released")
    scrape()  # warm: the first request also loads content types and the like
    with CaptureQueriesContext(connection) as small:
        before = scrape()

    populate(48, now)
    for component in ("frontend", "backend", "ai-server", "chromadb"):
        for env in ("prod", "dev"):
            for path in ((S.SUCCEEDED,), (S.ROLLING_BACK, S.ROLLED_BACK), (S.FAILED,)):
                finish(make_deployment(env, component, state="verifying"), *path)
            make_deployment(env, component, state="pending_approval")
    for _ in range(20):
        WebhookDelivery.objects.create(outcome="released")

    with django_assert_max_num_queries(len(small)):
        after = scrape()

    assert len(after["gantry_component_status"]) == 60 * 4 > len(before["gantry_component_status"])
    assert sum(after["gantry_deployments_finished_total"].values()) == 1 + 8 * 3
