"""GitHub as it really sends: both content types, redeliveries with the same id, registry trouble
while resolving, runs from forks, null fields, any-case repository names, big bodies, Retry."""

import json
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from deployments.models import Deployment, Release
from environments.models import Repository
from github.intake import TRANSIENT_TRIES, overdue, resolve_delivery
from github.models import WebhookDelivery
from github.payloads import sign

from ..deployments.engine_helpers import CI_REGISTRY
from .payloads import SECRET, post, workflow_run

Outcome = WebhookDelivery.Outcome
pytestmark = pytest.mark.django_db


@pytest.fixture
def flow(seed_topology, sandbox, sandbox_settings, settings):
    settings.GANTRY_GITHUB_WEBHOOK_SECRET = SECRET
    return sandbox


def ci_push(sandbox, component, sha):
    return sandbox.world.registry.push_new(f"{CI_REGISTRY}/{component}:{sha}")


def delivered(response) -> WebhookDelivery:
    return WebhookDelivery.objects.get(guid=response.json()["delivery"])


def dev_build(**overrides):
    return workflow_run(repository="nemo-team/nemo-api", branch="develop", **overrides)


def test_a_form_encoded_delivery_becomes_a_release(client, flow):
    payload = dev_build()
    ci_push(flow, "backend", payload["workflow_run"]["head_sha"])
    response = post(client, payload, form=True)
    assert response.status_code == 202, response.content
    assert resolve_delivery(delivered(response).pk).outcome == Outcome.RELEASED
    assert Release.objects.count() == Deployment.objects.count() == 1


def test_a_form_body_without_one_payload_field_is_invalid(client, flow):
    body = b"payload=1&payload=2"
    response = post(client, None, body=body, form=True)
    assert response.status_code == 400
    assert "one `payload` field" in response.json()["detail"]
    assert WebhookDelivery.objects.get().outcome == Outcome.INVALID


def test_a_failed_delivery_redelivered_with_its_id_after_the_image_exists_is_one_release(
    client, flow, settings
):
    payload = dev_build()
    first = post(client, payload, guid="redeliver-me")
    delivery = resolve_delivery(delivered(first).pk)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        received_at=timezone.now() - timedelta(seconds=settings.GANTRY_IMAGE_WAIT_SECONDS + 1)
    )
    assert resolve_delivery(delivery.pk).outcome == Outcome.FAILED
    ci_push(flow, "backend", payload["workflow_run"]["head_sha"])

    again = post(client, payload, guid="redeliver-me")  # GitHub's Redeliver keeps the id
    assert again.status_code == 202, again.content
    delivery = resolve_delivery(delivered(again).pk)
    assert (delivery.outcome, delivery.attempts) == (Outcome.RELEASED, 2)
    assert WebhookDelivery.objects.count() == Release.objects.count() == 1

    third = post(client, payload, guid="redeliver-me")
    assert third.json()["outcome"] == "duplicate"
    assert WebhookDelivery.objects.get().attempts == 2 and Release.objects.count() == 1


def test_a_redelivery_of_an_accepted_delivery_changes_nothing(
    client, flow, django_capture_on_commit_callbacks
):
    payload = dev_build()
    post(client, payload, guid="once")
    with django_capture_on_commit_callbacks() as callbacks:
        again = post(client, payload, guid="once")
    assert (again.status_code, again.json()["outcome"]) == (200, "duplicate")
    assert callbacks == []
    assert WebhookDelivery.objects.get().attempts == 1


def test_an_ignored_delivery_is_taken_once_the_topology_routes_it(client, flow):
    payload = workflow_run(repository="nemo-team/nemo-docs", branch="develop")
    assert post(client, payload, guid="later").status_code == 200
    assert WebhookDelivery.objects.get().outcome == Outcome.IGNORED
    Repository.objects.create(
        full_name="nemo-team/nemo-docs", components=["backend"], registry=CI_REGISTRY
    )
    again = post(client, payload, guid="later")
    assert again.status_code == 202
    assert delivered(again).outcome == Outcome.ACCEPTED and WebhookDelivery.objects.count() == 1


def test_transient_registry_errors_are_retried_then_succeed(client, flow):
    payload = dev_build()
    ci_push(flow, "backend", payload["workflow_run"]["head_sha"])
    flow.inject_fault("http_error", path="/v2/*", status=503, count=1)
    delivery = resolve_delivery(delivered(post(client, payload)).pk)
    assert delivery.outcome == Outcome.ACCEPTED
    assert "registry error" in delivery.detail and "503" in delivery.detail
    assert delivery.next_resolve_at > timezone.now() and delivery.resolve_tries == 1
    assert resolve_delivery(delivery.pk).outcome == Outcome.RELEASED
    assert Release.objects.count() == 1


def test_transient_registry_errors_give_up_after_a_bounded_number_of_tries(client, flow):
    delivery = delivered(post(client, dev_build()))
    WebhookDelivery.objects.filter(pk=delivery.pk).update(resolve_tries=TRANSIENT_TRIES)
    flow.inject_fault("http_error", path="/v2/*", status=503, count=1)
    delivery = resolve_delivery(delivery.pk)
    assert delivery.outcome == Outcome.FAILED
    assert f"after {TRANSIENT_TRIES + 1} tries" in delivery.detail
    assert Release.objects.count() == 0


def test_a_registry_that_refuses_gantry_fails_the_delivery_with_the_reason(client, flow):
    flow.inject_fault("http_error", path="/v2/*", status=401, count=1)
    delivery = resolve_delivery(delivered(post(client, dev_build())).pk)
    assert delivery.outcome == Outcome.FAILED and "401" in delivery.detail


def test_the_reconciler_finds_accepted_deliveries_whose_message_was_lost(client, flow, settings):
    lost = delivered(post(client, dev_build()))
    fresh = delivered(post(client, dev_build()))
    failed = delivered(post(client, dev_build()))
    failed.finish(Outcome.FAILED, "gone")
    past = timezone.now() - timedelta(seconds=settings.GANTRY_RECONCILE_GRACE_SECONDS + 1)
    WebhookDelivery.objects.filter(pk__in=[lost.pk, failed.pk]).update(next_resolve_at=past)
    assert overdue() == [lost.pk]
    assert fresh.pk not in overdue(now=timezone.now())


@pytest.mark.parametrize(
    ("drop", "author"),
    [
        (["actor"], "dev-alice"),  # triggering_actor
        (["actor", "triggering_actor"], "dev-alice"),  # sender
    ],
)
def test_a_run_without_an_actor_is_released_with_the_next_best_login(client, flow, drop, author):
    payload = dev_build()
    for key in drop:
        payload["workflow_run"].pop(key)
    ci_push(flow, "backend", payload["workflow_run"]["head_sha"])
    resolve_delivery(delivered(post(client, payload)).pk)
    assert Release.objects.get().author == author


@pytest.mark.parametrize(
    ("field", "reason"),
    [
        ("head_branch", "the run has no branch"),
        ("name", "the run has no workflow name"),
    ],
)
def test_null_branch_or_name_is_ignored_with_the_reason(client, flow, field, reason):
    payload = dev_build()
    payload["workflow_run"][field] = None
    payload.pop("workflow")  # the workflow's name beside the run would stand in for its own
    response = post(client, payload)
    assert response.status_code == 200
    delivery = WebhookDelivery.objects.get()
    assert delivery.outcome == Outcome.IGNORED and reason in delivery.detail


def test_a_run_with_an_empty_name_is_routed_by_its_workflows_name(client, flow):
    payload = dev_build()
    payload["workflow_run"]["name"] = ""  # as GitHub's own examples send it
    assert post(client, payload).status_code == 202
    payload = dev_build()
    payload["workflow_run"]["name"], payload["workflow"]["name"] = "", "lint"
    assert post(client, payload).status_code == 200


def test_repository_names_match_whatever_their_case(client, flow):
    payload = workflow_run(repository="Nemo-Team/Nemo-API", branch="develop")
    ci_push(flow, "backend", payload["workflow_run"]["head_sha"])
    response = post(client, payload)
    assert response.status_code == 202
    resolve_delivery(delivered(response).pk)
    assert Release.objects.get().repository == "nemo-team/nemo-api"  # as the topology names it


def test_workflow_dispatch_deploys_only_where_the_topology_allows_it(client, flow):
    payload = dev_build(event="workflow_dispatch")
    assert post(client, payload).status_code == 200
    Repository.objects.filter(full_name="nemo-team/nemo-api").update(
        events=["push", "workflow_dispatch"]
    )
    assert post(client, dev_build(event="workflow_dispatch")).status_code == 202


def test_pull_request_events_can_never_be_allowed():
    repository = Repository(
        full_name="a/b", components=["x"], registry="r", events=["pull_request"]
    )
    with pytest.raises(ValidationError, match="pull_request: only push"):
        repository.full_clean()


def test_a_body_over_djangos_limit_but_within_githubs_is_read(client, flow):
    payload = dev_build()
    payload["padding"] = "x" * (3 * 1024 * 1024)  # over Django's 2.5 MB, as big pushes are
    assert post(client, payload).status_code == 202


def test_a_body_over_githubs_25_mb_is_a_json_413_and_recorded(client, flow):
    body = b"x" * (25 * 1024 * 1024 + 1)
    response = client.post(
        "/webhooks/github/",
        data=body,
        content_type="application/json",
        HTTP_X_GITHUB_EVENT="workflow_run",
        HTTP_X_GITHUB_DELIVERY="huge",
        HTTP_X_HUB_SIGNATURE_256=sign(SECRET, body),
    )
    assert response.status_code == 413 and "25 MB" in response.json()["error"]
    delivery = WebhookDelivery.objects.get()
    assert (delivery.guid, delivery.claimed_guid, delivery.payload) == (None, "huge", None)


def test_retry_redecides_a_failed_delivery_and_is_audited(client, flow, client_as):
    payload = dev_build()
    delivery = delivered(post(client, payload))
    delivery.finish(Outcome.FAILED, "image was missing")
    ci_push(flow, "backend", payload["workflow_run"]["head_sha"])
    deployer = client_as("deployer")
    response = deployer.post(reverse("delivery-retry", args=[delivery.pk]))
    assert response.status_code == 302
    delivery.refresh_from_db()
    assert (delivery.outcome, delivery.attempts) == (Outcome.ACCEPTED, 2)
    event = AuditEvent.objects.get(action="github.delivery.retry")
    assert event.data == {"guid": delivery.guid, "from": "failed", "to": "accepted"}
    assert resolve_delivery(delivery.pk).outcome == Outcome.RELEASED


def test_retry_refuses_a_delivery_that_came_to_something(client, flow, client_as):
    payload = dev_build()
    ci_push(flow, "backend", payload["workflow_run"]["head_sha"])
    delivery = resolve_delivery(delivered(post(client, payload)).pk)
    page = client_as("deployer").post(reverse("delivery-retry", args=[delivery.pk]), follow=True)
    assert "only failed, invalid or ignored ones" in page.content.decode()
    delivery.refresh_from_db()
    assert delivery.attempts == 1 and not AuditEvent.objects.filter(action="github.delivery.retry")


def test_viewers_may_not_retry(client, flow, client_as):
    delivery = delivered(post(client, dev_build()))
    delivery.finish(Outcome.FAILED, "x")
    assert (
        client_as("viewer").post(reverse("delivery-retry", args=[delivery.pk])).status_code == 403
    )
    assert WebhookDelivery.objects.get().outcome == Outcome.FAILED


def test_the_page_pages_filters_and_keeps_forged_calls_apart(client, flow, client_as):
    post(client, dev_build(), guid="the-real-one")
    for n in range(60):
        post(client, dev_build(), guid=f"forged-{n}", secret="not-the-secret")
    viewer = client_as("viewer")
    page = viewer.get(reverse("deliveries")).content.decode()
    assert "the-real-one" in page and "forged-0" not in page
    assert "60 unsigned or unverifiable calls" in page
    rejected = viewer.get(reverse("deliveries"), {"outcome": "rejected"}).content.decode()
    assert "forged-59" in rejected and "page 1 of 2" in rejected
    second = viewer.get(reverse("deliveries"), {"outcome": "rejected", "page": 2}).content.decode()
    assert "forged-0" in second
    by_repo = viewer.get(reverse("deliveries"), {"repository": "NEMO-TEAM/nemo-api"})
    assert "the-real-one" in by_repo.content.decode()
    assert (
        "the-real-one"
        not in viewer.get(reverse("deliveries"), {"repository": "someone/else"}).content.decode()
    )


def test_a_form_body_signature_is_over_the_raw_body(client, flow):
    payload = dev_build()
    body = f"payload={json.dumps(payload)}".encode()  # not URL-encoded: still one field
    response = post(client, None, body=body, form=True, signature=sign(SECRET, b"other"))
    assert response.status_code == 401


def test_the_api_lists_deliveries_and_retries_as_the_page_does(client, flow, client_as):
    payload = dev_build()
    failed = delivered(post(client, payload))
    failed.finish(Outcome.FAILED, "image was missing")
    post(client, dev_build(), guid="forged", secret="wrong")
    deployer = client_as("deployer")
    listed = deployer.get("/api/deliveries/").json()
    assert listed["count"] == 1
    assert (listed["items"][0]["guid"], listed["items"][0]["can_retry"]) == (failed.guid, True)
    assert deployer.get("/api/deliveries/", {"outcome": "rejected"}).json()["count"] == 1
    retried = deployer.post(f"/api/deliveries/{failed.pk}/retry")
    assert retried.status_code == 200, retried.content
    assert (retried.json()["outcome"], retried.json()["attempts"]) == ("accepted", 2)
    again = deployer.post(f"/api/deliveries/{failed.pk}/retry")
    assert again.status_code == 409 and "only failed, invalid or ignored" in again.json()["error"]
    assert deployer.post("/api/deliveries/999999/retry").status_code == 404


class CredentialsGone:
    """The registry adapter as it is when Google's credentials cannot be had: an error that is
    neither the registry's nor a missing image (our own adapter's stand-in, not a client's)."""

    def get_digest(self, image):
        raise RuntimeError("could not refresh the access token")


def test_an_unexpected_error_is_tried_again_a_bounded_number_of_times(client, flow):
    delivery = delivered(post(client, dev_build()))
    delivery = resolve_delivery(delivery.pk, registry=CredentialsGone())
    assert delivery.outcome == Outcome.ACCEPTED and "RuntimeError" in delivery.detail
    WebhookDelivery.objects.filter(pk=delivery.pk).update(resolve_tries=TRANSIENT_TRIES)
    delivery = resolve_delivery(delivery.pk, registry=CredentialsGone())
    assert delivery.outcome == Outcome.FAILED
    assert "could not refresh the access token" in delivery.detail


def test_the_page_reads_in_the_same_number_of_queries_however_many_deliveries(client_as, flow):
    viewer = client_as("viewer")

    def queries():
        with CaptureQueriesContext(connection) as seen:
            assert viewer.get(reverse("deliveries")).status_code == 200
        return len(seen)

    WebhookDelivery.objects.create(guid="one", event="ping", outcome=Outcome.PONG)
    few = queries()
    WebhookDelivery.objects.bulk_create(
        WebhookDelivery(guid=f"g{n}", event="ping", outcome=Outcome.PONG) for n in range(60)
    )
    assert queries() == few
