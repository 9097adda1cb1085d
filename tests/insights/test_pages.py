"""/insights/, GET /api/insights/dora and the DORA gauges on /metrics."""

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.django_db
TOKEN = "prometheus-scrape-token-0123456789"


@pytest.fixture
def history(deployed):
    """prod backend over the last days: two successes, a failure fixed 2 h later."""
    now = timezone.now()
    deployed(now - timedelta(days=20), built=now - timedelta(days=20, hours=3))
    deployed(now - timedelta(days=3), state="failed")
    deployed(
        now - timedelta(days=3) + timedelta(hours=2),
        created=now - timedelta(days=3) + timedelta(hours=1),
        built=now - timedelta(days=3, hours=1),
    )
    return now


def test_viewers_see_every_environment_with_figures_and_tiers(client_as, history):
    response = client_as("viewer").get(reverse("insights"))
    assert response.status_code == 200
    page = response.content.decode()
    assert "Production" in page and "Development" in page
    assert "Deployment frequency" in page and "Rework rate" in page
    assert "0.07 per day" in page  # 2 succeeded in 30 days
    assert "33 %" in page  # 1 of 3 failed; 1 of 3 was a fix
    assert "2.0 h" in page  # recovery: failure to the fix
    assert '<span class="badge status-down">low</span>' in page  # fail rate 33 %
    assert "no data" in page  # the databases are never deployed by Gantry
    assert 'aria-current="page">30 days' in page
    assert "<svg" in page and "<title>" in page
    assert f'href="{reverse("insights")}"' in page  # the top bar's link


def test_window_is_chosen_by_days(client_as, history):
    client = client_as("viewer")
    page = client.get(reverse("insights"), {"days": "7"}).content.decode()
    assert 'aria-current="page">7 days' in page
    assert "0.14 per day" in page  # the fix, once in 7 days


@pytest.mark.parametrize("days", ["14", "week"])
def test_a_bad_window_is_a_400_saying_what_is_allowed(client_as, seed_topology, days):
    response = client_as("viewer").get(reverse("insights"), {"days": days})
    assert response.status_code == 400
    assert "days must be one of 7, 30, 90" in response.content.decode()


def test_the_anonymous_sign_in_and_people_without_a_role_are_refused(client, client_as, db):
    response = client.get(reverse("insights"))
    assert response.status_code == 302 and "/login/?next=/insights/" in response["Location"]
    assert client_as(None, "nobody").get(reverse("insights")).status_code == 403


def test_page_query_count_does_not_grow_with_deployments(
    client_as, deployed, django_assert_num_queries
):
    client = client_as("viewer")
    now = timezone.now()

    def add(n):
        for i in range(n):
            for component in ("backend", "frontend"):
                state = ("succeeded", "failed")[i % 2]
                deployed(now - timedelta(days=i % 25, hours=1), state=state, component=component)

    add(1)
    client.get(reverse("insights"))  # the session and permission caches warm up
    cache.clear()  # measure the figures drawn, not served from the last drawing (portal/polls)
    with CaptureQueriesContext(connection) as few:
        client.get(reverse("insights"))
    assert len(few.captured_queries) <= 11  # session, user, permissions, the version, 3 reads
    add(15)
    with django_assert_num_queries(len(few.captured_queries)):
        assert client.get(reverse("insights")).status_code == 200


def test_api_gives_the_figures_of_one_environment(api, token_for, history):
    response = api("GET", "/api/insights/dora", token_for("viewer"), environment="prod", days=30)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["days"] == 30 and body["fix_hours"] == 24
    [prod] = body["environments"]
    assert prod["name"] == "prod" and len(prod["buckets"]) == 5
    backend = next(c for c in prod["components"] if c["name"] == "backend")["figures"]
    assert backend["deployments"] == 3 and backend["failed"] == 1 and backend["rework"] == 1
    assert backend["deployment_frequency_per_day"] == pytest.approx(2 / 30)
    assert backend["recovery_time_seconds"] == pytest.approx(7200)
    assert backend["lead_time_seconds"] == pytest.approx(3 * 3600)  # median of 3 h and 3 h
    assert backend["tiers"] == {
        "deployment_frequency": "medium",
        "lead_time": "elite",
        "change_fail_rate": "low",
        "recovery_time": "high",
        "rework_rate": None,
    }
    redis = next(c for c in prod["components"] if c["name"] == "redis")["figures"]
    assert redis["deployments"] == 0 and redis["lead_time_seconds"] is None


def test_api_all_environments_by_default(api, token_for, seed_topology):
    body = api("GET", "/api/insights/dora", token_for("viewer")).json()
    assert body["days"] == 30 and [e["name"] for e in body["environments"]] == ["prod", "dev"]


def test_api_refuses_a_bad_window_and_an_unknown_environment(api, token_for, seed_topology):
    token = token_for("viewer")
    bad = api("GET", "/api/insights/dora", token, days=14)
    assert bad.status_code == 400 and bad.json()["field"] == "days"
    missing = api("GET", "/api/insights/dora", token, environment="staging")
    assert missing.status_code == 404 and "staging" in missing.json()["error"]
    assert api("GET", "/api/insights/dora").status_code == 401


def test_metrics_has_the_dora_gauges(client, settings, history):
    settings.GANTRY_METRICS_TOKEN = TOKEN
    response = client.get(reverse("metrics"), HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    samples = {
        (s.name, s.labels.get("environment"), s.labels.get("component"), s.labels.get("window")): (
            s.value
        )
        for family in text_string_to_metric_families(response.content.decode())
        for s in family.samples
    }
    key = ("prod", "backend")
    assert samples[("gantry_dora_deployment_frequency_per_day", *key, "30d")] == pytest.approx(
        2 / 30
    )
    assert samples[("gantry_dora_deployment_frequency_per_day", *key, "7d")] == pytest.approx(1 / 7)
    assert samples[("gantry_dora_change_fail_ratio", *key, "90d")] == pytest.approx(1 / 3)
    assert samples[("gantry_dora_recovery_time_seconds", *key, "7d")] == pytest.approx(7200)
    assert samples[("gantry_dora_rework_ratio", *key, "30d")] == pytest.approx(1 / 3)
    assert samples[("gantry_dora_lead_time_seconds", *key, "30d")] == pytest.approx(3 * 3600)
    assert ("gantry_dora_lead_time_seconds", "prod", "redis", "30d") not in samples  # no data
    assert samples[("gantry_dora_scrape_error", None, None, None)] == 0
