import pytest

from deployments.models import Deployment, Release
from github.models import WebhookDelivery

from .payloads import SECRET, post, workflow_run

pytestmark = pytest.mark.django_db
Outcome = WebhookDelivery.Outcome


@pytest.fixture(autouse=True)
def webhook_secret(settings, seed_topology):
    settings.GANTRY_GITHUB_WEBHOOK_SECRET = SECRET


def only_delivery():
    assert WebhookDelivery.objects.count() == 1
    return WebhookDelivery.objects.get()


@pytest.mark.parametrize(
    ("secret", "signature", "detail"),
    [
        (None, None, "missing or wrong X-Hub-Signature-256"),
        ("another-secret", None, "missing or wrong X-Hub-Signature-256"),
        (None, "sha1=abc", "missing or wrong X-Hub-Signature-256"),
    ],
)
def test_bad_signatures_are_401_and_keep_nothing_but_the_rejection(
    client, secret, signature, detail
):
    response = post(client, workflow_run(), secret=secret, signature=signature, guid="g-1")
    assert response.status_code == 401
    delivery = only_delivery()
    assert (delivery.outcome, delivery.detail) == (Outcome.REJECTED, detail)
    assert delivery.guid is None and delivery.claimed_guid == "g-1"
    assert delivery.payload is None
    assert Release.objects.count() == 0


def test_without_a_configured_secret_everything_is_refused(client, settings):
    settings.GANTRY_GITHUB_WEBHOOK_SECRET = ""
    response = post(client, workflow_run(), secret="")
    assert response.status_code == 401
    assert only_delivery().detail == "no webhook secret configured"


def test_ping_is_answered(client):
    response = post(client, {"zen": "Keep it logically awesome.", "hook_id": 1}, event="ping")
    assert response.status_code == 200
    assert only_delivery().outcome == Outcome.PONG


def test_a_successful_build_is_accepted_and_handed_to_a_worker(
    client, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        response = post(client, workflow_run(), guid="delivery-1")
    assert response.status_code == 202
    delivery = only_delivery()
    assert delivery.outcome == Outcome.ACCEPTED
    assert delivery.detail == "resolving images for prod/backend"
    assert (delivery.guid, delivery.event, delivery.action) == (
        "delivery-1",
        "workflow_run",
        "completed",
    )
    assert delivery.payload["workflow_run"]["head_branch"] == "main"
    assert len(callbacks) == 1  # resolve_delivery, after commit
    assert Release.objects.count() == 0  # the registry is the worker's business


def test_a_repeated_delivery_creates_nothing_new(client, django_capture_on_commit_callbacks):
    payload = workflow_run()
    with django_capture_on_commit_callbacks() as callbacks:
        post(client, payload, guid="same")
        response = post(client, payload, guid="same")
    assert response.status_code == 200
    assert response.json()["outcome"] == "duplicate"
    assert WebhookDelivery.objects.count() == 1
    assert len(callbacks) == 1


def test_malformed_json_is_400_and_stores_no_payload(client):
    response = post(client, None, body=b'{"action": "completed", ')
    assert response.status_code == 400
    delivery = only_delivery()
    assert delivery.outcome == Outcome.INVALID and "not JSON" in delivery.detail
    assert delivery.payload is None


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda p: p["workflow_run"].pop("head_sha"), "missing field workflow_run.head_sha"),
        (lambda p: p.pop("repository"), "missing field repository.full_name"),
        (
            lambda p: p["workflow_run"]["actor"].update(login=5),
            "field workflow_run.actor.login must be str",
        ),
        (lambda p: p["workflow_run"].update(head_sha="xyz"), "40-character hex SHA"),
        (lambda p: p["workflow_run"].update(run_attempt="1"), "run_attempt must be int"),
        (lambda p: p["workflow_run"].update(run_number=10**63), "between 0 and 10^15"),
    ],
)
def test_missing_or_bad_fields_are_400_with_the_field_named(client, mutate, message):
    payload = workflow_run()
    mutate(payload)
    response = post(client, payload)
    assert response.status_code == 400
    assert message in response.json()["detail"]
    delivery = only_delivery()
    assert delivery.outcome == Outcome.INVALID and message in delivery.detail
    assert Release.objects.count() == Deployment.objects.count() == 0


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (workflow_run(conclusion="failure"), "conclusion 'failure': only successful runs"),
        (workflow_run(action="requested"), "action 'requested': only completed runs"),
        (workflow_run(repository="someone/else"), "repository someone/else is not in the topology"),
        (workflow_run(workflow="lint"), "workflow 'lint' is not one of build"),
        (workflow_run(branch="feature/x"), "branch 'feature/x' deploys to no environment"),
        (
            workflow_run(branch="develop", event="pull_request", head_repository="mallory/api"),
            "event 'pull_request': only push runs deploy",
        ),
        (
            workflow_run(branch="develop", head_repository="mallory/nemo-api"),
            "comes from mallory/nemo-api, not nemo-team/nemo-api: runs from forks never deploy",
        ),
    ],
)
def test_builds_gantry_does_not_release_are_recorded_as_ignored(
    client, payload, reason, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        response = post(client, payload)
    assert response.status_code == 200
    delivery = only_delivery()
    assert delivery.outcome == Outcome.IGNORED
    assert reason in delivery.detail
    assert callbacks == []


def test_other_events_are_ignored(client):
    response = post(client, {"ref": "refs/heads/main"}, event="push")
    assert response.status_code == 200
    assert only_delivery().detail == "event 'push' is not handled"


def test_get_is_not_allowed(client):
    assert client.get("/webhooks/github/").status_code == 405
