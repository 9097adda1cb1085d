"""Catch-up: builds whose webhook Gantry never received are found on the next beat and become
exactly one release, whether GitHub is asked to redeliver (an App) or the runs are read."""

from datetime import timedelta

import httpx
import pytest
from django.utils import timezone

from deployments.models import Release
from github import client as github_client
from github.catchup import catch_up
from github.intake import resolve_delivery
from github.models import CatchUp, WebhookDelivery
from github.tasks import catch_up as catch_up_task

from ..deployments.engine_helpers import CI_REGISTRY
from .payloads import SECRET, post

Outcome = WebhookDelivery.Outcome
REPO = "nemo-team/nemo-api"


@pytest.fixture
def gh(seed_topology, sandbox, sandbox_settings, settings):
    settings.GANTRY_GITHUB_WEBHOOK_SECRET = SECRET
    settings.GANTRY_GITHUB_TOKEN = "ghp_catch_up"
    github_client.tokens.clear()
    yield sandbox
    github_client.tokens.clear()


def github_ran(sandbox, sha, *, branch="develop", deliver=False, **fields):
    """A completed run on GitHub; with deliver=False its webhook never reached Gantry."""
    answer = httpx.post(
        f"{sandbox.url}/_sandbox/github/runs",
        json={
            "repository": REPO,
            "head_sha": sha,
            "head_branch": branch,
            "name": "build",
            "deliver": deliver,
            **fields,
        },
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


def ci_push(sandbox, sha):
    sandbox.world.registry.push_new(f"{CI_REGISTRY}/backend:{sha}")


@pytest.mark.django_db
def test_a_build_whose_delivery_was_dropped_becomes_exactly_one_release(gh):
    sha = "1" * 40
    ci_push(gh, sha)
    run = github_ran(gh, sha)["run"]
    assert catch_up() == 1
    delivery = WebhookDelivery.objects.get()
    assert (delivery.source, delivery.run_id, delivery.outcome) == (
        WebhookDelivery.Source.CATCH_UP,
        run["id"],
        Outcome.ACCEPTED,
    )
    assert resolve_delivery(delivery.pk).outcome == Outcome.RELEASED
    assert catch_up() == 0  # found once, however often catch-up runs
    catch_up_task.apply()
    assert WebhookDelivery.objects.count() == Release.objects.count() == 1
    state = CatchUp.objects.get(source=f"repo:{REPO}")
    assert state.found == 1 and state.last_error == "" and state.last_ok_at is not None


@pytest.mark.django_db
def test_runs_gantry_received_or_would_not_route_are_left_alone(gh, client):
    received = github_ran(gh, "2" * 40)
    post(client, received["payload"])  # its webhook did arrive
    github_ran(gh, "3" * 40, conclusion="failure")
    github_ran(gh, "4" * 40, name="lint")
    github_ran(gh, "5" * 40, branch="feature/x")
    github_ran(gh, "6" * 40, event="pull_request", head_repository="mallory/nemo-api")
    assert catch_up() == 0
    assert WebhookDelivery.objects.count() == 1


@pytest.mark.django_db
def test_the_real_delivery_arriving_after_catch_up_adds_no_second_release(gh, client):
    sha = "7" * 40
    ci_push(gh, sha)
    ran = github_ran(gh, sha)
    catch_up()
    resolve_delivery(WebhookDelivery.objects.get().pk)
    late = post(client, ran["payload"])  # GitHub's own delivery, redelivered after all
    assert late.status_code == 202
    resolve_delivery(WebhookDelivery.objects.get(guid=late.json()["delivery"]).pk)
    assert WebhookDelivery.objects.count() == 2 and Release.objects.count() == 1


@pytest.mark.django_db
def test_a_run_older_than_the_look_back_is_not_taken(gh, settings):
    old = (timezone.now() - timedelta(hours=settings.GANTRY_GITHUB_CATCHUP_HOURS + 1)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    github_ran(gh, "8" * 40, created_at=old)
    assert catch_up() == 0


@pytest.mark.django_db
def test_github_failing_is_recorded_and_the_next_run_looks_back_as_far(gh):
    gh.inject_fault("http_error", path="/github/*", status=503, count=1)
    assert catch_up() == 0
    state = CatchUp.objects.exclude(last_error="").get()  # the first repository asked
    assert "503" in state.last_error and state.last_ok_at is None
    ci_push(gh, "9" * 40)
    github_ran(gh, "9" * 40)
    assert catch_up() == 1


@pytest.mark.django_db
def test_nothing_is_asked_of_github_when_it_is_not_configured(gh, settings):
    settings.GANTRY_GITHUB_TOKEN = ""
    github_ran(gh, "a" * 40)
    assert catch_up() == 0
    assert not gh.github.calls_to("GET", "/actions/runs")


@pytest.mark.django_db(transaction=True)
def test_an_app_asks_github_to_redeliver_what_failed_and_it_becomes_one_release(
    gh, settings, app_key, live_server
):
    """GitHub's recipe for an App: the delivery that failed is redelivered with its id to the
    real webhook (a live server here), and resolves into one release."""
    settings.GANTRY_GITHUB_TOKEN = ""
    settings.GANTRY_GITHUB_APP_ID = "42"
    settings.GANTRY_GITHUB_APP_PRIVATE_KEY = app_key[0]
    settings.GANTRY_GITHUB_APP_INSTALLATION_ID = "1"  # the repositories' installation
    httpx.post(f"{gh.url}/_sandbox/github/apps", json={"app_id": "42", "public_key": app_key[1]})
    hook = {"url": f"{live_server.url}/webhooks/github/", "secret": SECRET, "content_type": "form"}
    assert httpx.post(f"{gh.url}/_sandbox/github/hook", json=hook).status_code == 201
    sha = "b" * 40
    ci_push(gh, sha)
    gh.inject_fault("http_error", path="/_sandbox/github/hook/deliver", status=502, count=1)
    ran = github_ran(gh, sha, deliver=True)
    assert ran["delivery"]["status_code"] == 502 and not WebhookDelivery.objects.exists()

    # The App finds the failed delivery and asks GitHub to redeliver it (same guid); the runs
    # listing then sees the run's completion as received.
    assert catch_up() == 1
    delivery = WebhookDelivery.objects.get()
    assert (delivery.guid, delivery.source) == (ran["delivery"]["guid"], "webhook")
    assert resolve_delivery(delivery.pk).outcome == Outcome.RELEASED
    assert catch_up() == 0
    assert WebhookDelivery.objects.count() == Release.objects.count() == 1
    assert len(gh.github.calls_to("POST", r"/app/hook/deliveries/\d+/attempts")) == 1
