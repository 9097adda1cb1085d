"""Cancel, the canary and blue-green controls, redeploy and rollback through the API: the same
services and rules as the pages' buttons (deployments/actions.py); refusals are 409s with the
reason and write nothing."""

from datetime import timedelta

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from deployments.models import Deployment, DeploymentEvent

pytestmark = pytest.mark.django_db
S = Deployment.State
ROLLBACK = "/api/environments/{}/components/backend/rollback"


def counts():
    return (Deployment.objects.count(), DeploymentEvent.objects.count(), AuditEvent.objects.count())


@pytest.fixture
def good(make_deployment):
    """good("dev") -> (an earlier good deployment of the backend, the one running now)."""

    def make(environment="prod"):
        now = timezone.now()
        old = make_deployment(
            environment, "backend", state=S.SUCCEEDED, finished_at=now - timedelta(hours=2)
        )
        running = make_deployment(
            environment, "backend", state=S.SUCCEEDED, finished_at=now - timedelta(hours=1)
        )
        return old, running

    return make


def test_cancel_ends_a_waiting_deployment(api, make_deployment, token_for):
    waiting = make_deployment(state=S.PENDING_APPROVAL, approvals_required=1)
    response = api("POST", f"/api/deployments/{waiting.pk}/cancel", token_for("deployer", "dana"))
    assert response.status_code == 200
    assert (response.json()["id"], response.json()["state"]) == (waiting.pk, "cancelled")
    waiting.refresh_from_db()
    assert waiting.state == S.CANCELLED and waiting.reason == "cancelled by dana"
    assert AuditEvent.objects.filter(action="deployment.cancelled", actor="dana").count() == 1


def test_cancel_of_a_running_deployment_is_requested(api, make_deployment, token_for):
    running = make_deployment(state=S.ROLLING_OUT)
    response = api("POST", f"/api/deployments/{running.pk}/cancel", token_for("deployer"))
    assert response.status_code == 200 and response.json()["state"] == "rolling_out"
    running.refresh_from_db()
    assert running.cancel_requested


def test_cancel_of_a_finished_deployment_is_a_409_and_writes_nothing(
    api, make_deployment, token_for
):
    done = make_deployment(state=S.SUCCEEDED)
    raw = token_for("deployer")
    before = counts()
    response = api("POST", f"/api/deployments/{done.pk}/cancel", raw)
    assert response.status_code == 409
    assert response.json() == {"error": "A deployment that is succeeded cannot be cancelled."}
    assert counts() == before


@pytest.mark.parametrize(("role", "status"), [("viewer", 403), ("approver", 403), (None, 401)])
def test_cancel_needs_a_deployer(api, make_deployment, token_for, role, status):
    waiting = make_deployment(state=S.PENDING_APPROVAL)
    raw = token_for(role) if role else None
    before = counts()
    response = api("POST", f"/api/deployments/{waiting.pk}/cancel", raw)
    assert response.status_code == status and "error" in response.json()
    assert counts() == before


def test_cancel_of_no_such_deployment_is_a_404(api, token_for):
    response = api("POST", "/api/deployments/999999/cancel", token_for("deployer"))
    assert response.status_code == 404 and response.json() == {"error": "no deployment 999999"}


def test_redeploy_to_prod_waits_for_approval(api, good, token_for):
    old, _ = good()
    response = api("POST", f"/api/releases/{old.release_id}/redeploy", token_for("deployer"))
    assert response.status_code == 201
    again = old.release.deployments.exclude(pk=old.pk).get()
    assert response.json()["id"] == again.pk and response.json()["state"] == "pending_approval"


def test_redeploy_by_an_approver_with_a_reason_skips_the_approval_audited(api, good, token_for):
    old, _ = good()
    raw = token_for("admin", "carol")
    body = {"skip_approval_reason": "incident 12"}
    response = api("POST", f"/api/releases/{old.release_id}/redeploy", raw, body)
    assert response.status_code == 201 and response.json()["state"] == "queued"
    skipped = AuditEvent.objects.get(action="deployment.approval_skipped")
    assert (skipped.actor, skipped.message) == ("carol", "incident 12")


def test_a_deployer_who_tries_to_skip_the_approval_gets_a_403_and_nothing(api, good, token_for):
    old, _ = good()
    raw = token_for("deployer")
    before = counts()
    body = {"skip_approval_reason": "trust me"}
    response = api("POST", f"/api/releases/{old.release_id}/redeploy", raw, body)
    assert response.status_code == 403
    assert response.json() == {"error": "Only approvers may deploy without a new approval."}
    assert counts() == before


def test_the_builds_author_cannot_skip_its_approval_a_409(api, good, token_for):
    old, _ = good()  # built by dev-alice
    raw = token_for("admin", "dev-alice")
    before = counts()
    body = {"skip_approval_reason": "mine"}
    response = api("POST", f"/api/releases/{old.release_id}/redeploy", raw, body)
    assert (
        response.status_code == 409 and "It must go through approval." in response.json()["error"]
    )
    assert counts() == before


@pytest.mark.parametrize(
    ("body", "field"),
    [({"skip_approval_reason": "x" * 501}, "skip_approval_reason"), ({"force": True}, "force")],
)
def test_bad_redeploy_input_is_a_400_naming_the_field(api, good, token_for, body, field):
    old, _ = good()
    raw = token_for("admin", "carol")
    before = counts()
    response = api("POST", f"/api/releases/{old.release_id}/redeploy", raw, body)
    assert response.status_code == 400 and response.json()["field"] == field
    assert counts() == before


def test_redeploy_of_no_such_release_is_a_404(api, token_for, seed_topology):
    response = api("POST", "/api/releases/999999/redeploy", token_for("deployer"))
    assert response.status_code == 404 and response.json() == {"error": "no release 999999"}


def test_rollback_in_dev_is_queued_and_audited(api, good, token_for):
    old, running = good("dev")
    raw = token_for("deployer", "dana")
    response = api("POST", ROLLBACK.format("dev"), raw, {"release": old.release_id})
    assert response.status_code == 201
    answer = response.json()
    again = Deployment.objects.get(pk=answer["id"])
    assert (again.release_id, answer["state"], answer["environment"]) == (
        old.release_id,
        "queued",
        "dev",
    )
    audit = AuditEvent.objects.get(action="deployment.rollback_requested")
    assert audit.actor == "dana" and audit.data["from"]["release"] == running.release_id
    assert audit.data["to"] == {"release": old.release_id}


def test_rollback_in_prod_waits_for_approval_unless_an_approver_says_why(api, good, token_for):
    old, _ = good()
    waits = api("POST", ROLLBACK.format("prod"), token_for("deployer"), {"release": old.release_id})
    assert waits.status_code == 201 and waits.json()["state"] == "pending_approval"
    body = {"release": old.release_id, "skip_approval_reason": "incident 3"}
    skips = api("POST", ROLLBACK.format("prod"), token_for("admin", "carol"), body)
    assert skips.status_code == 201 and skips.json()["state"] == "queued"
    assert Deployment.objects.get(pk=waits.json()["id"]).state == S.SUPERSEDED
    assert AuditEvent.objects.filter(action="deployment.rollback_requested").count() == 2
    assert AuditEvent.objects.filter(action="deployment.approval_skipped").count() == 1


def test_a_rollback_refused_is_a_409_with_the_reason_and_writes_nothing(
    api, good, make_deployment, token_for
):
    _, running = good()
    failed = make_deployment("prod", "backend", state=S.FAILED)
    frontend = make_deployment("prod", "frontend", state=S.SUCCEEDED)
    raw = token_for("deployer")
    before = counts()
    for release, message in (
        (running, "is what runs on prod/backend now"),
        (failed, "never succeeded on prod/backend"),
        (frontend, "is a release of prod/frontend, not of prod/backend"),
    ):
        response = api("POST", ROLLBACK.format("prod"), raw, {"release": release.release_id})
        assert response.status_code == 409 and message in response.json()["error"]
    assert counts() == before


@pytest.mark.parametrize(
    ("path", "body", "status", "field"),
    [
        (ROLLBACK.format("prod"), {}, 400, "release"),
        (ROLLBACK.format("prod"), {"release": "v1"}, 400, "release"),
        (ROLLBACK.format("prod"), {"release": 999999}, 404, "release"),
        (ROLLBACK.format("staging"), {"release": 1}, 404, None),
        ("/api/environments/prod/components/nope/rollback", {"release": 1}, 404, None),
    ],
)
def test_bad_rollback_input_says_what_and_writes_nothing(
    api, good, token_for, path, body, status, field
):
    good()
    raw = token_for("deployer")
    before = counts()
    response = api("POST", path, raw, body)
    assert response.status_code == status and response.json().get("field") == field
    assert counts() == before


@pytest.mark.parametrize("role", ["viewer", "approver", "ci"])
def test_rollback_needs_a_deployer(api, good, token_for, role):
    old, _ = good()
    raw = token_for(role)
    before = counts()
    response = api("POST", ROLLBACK.format("prod"), raw, {"release": old.release_id})
    assert response.status_code == 403 and "start_deployment" in response.json()["error"]
    assert counts() == before


def test_the_openapi_document_describes_the_actions(api):
    document = api("GET", "/api/openapi.json").json()
    paths = document["paths"]
    for path in (
        "/api/deployments/{id}/cancel",
        "/api/deployments/{id}/pause",
        "/api/deployments/{id}/promote",
        "/api/deployments/{id}/swap-back",
        "/api/releases/{id}/redeploy",
        "/api/environments/{name}/components/{component}/rollback",
    ):
        assert set(paths[path]["post"]["responses"]) >= {"400", "401", "403", "404", "409"}, path
    rollback = paths["/api/environments/{name}/components/{component}/rollback"]["post"]
    assert "deployment.rollback_requested" in rollback["description"]


@pytest.fixture
def canary(make_deployment):
    return make_deployment("prod", "backend", state=S.VERIFYING, progress={"phase": "canary"})


def test_pause_and_resume_a_canary(api, canary, token_for):
    raw = token_for("deployer", "dana")
    paused = api("POST", f"/api/deployments/{canary.pk}/pause", raw, {"reason": "odd p99"})
    assert paused.status_code == 200
    assert (paused.json()["paused_by"], paused.json()["state"]) == ("dana", "verifying")
    assert paused.json()["paused_at"]
    resumed = api("POST", f"/api/deployments/{canary.pk}/resume", raw)
    assert resumed.status_code == 200 and resumed.json()["paused_at"] is None
    actions = AuditEvent.objects.filter(object_id=str(canary.pk)).order_by("id")
    assert list(actions.values_list("action", "message")) == [
        ("deployment.paused", "odd p99"),
        ("deployment.resumed", ""),
    ]


def test_abort_a_canary_sets_the_cause_it_rolls_back_with(api, canary, token_for):
    response = api("POST", f"/api/deployments/{canary.pk}/abort", token_for("deployer", "dana"))
    assert response.status_code == 200
    body = response.json()
    assert body["cancel_requested"] and body["cancel_reason"] == "canary aborted by dana"


def test_promote_needs_a_reason_and_in_prod_an_approver(api, canary, token_for):
    path = f"/api/deployments/{canary.pk}/promote"
    before = counts()
    refused = api("POST", path, token_for("deployer"), {"reason": "trust me"})
    assert refused.status_code == 403
    bare = api("POST", path, token_for("approver", "bob"), {"reason": "  "})
    assert bare.status_code == 400 and bare.json()["field"] == "reason"
    assert counts() == before
    done = api("POST", path, token_for("approver", "bob2"), {"reason": "soaked in staging"})
    assert done.status_code == 200 and done.json()["promote_requested_by"] == "bob2"


@pytest.mark.parametrize("control", ["pause", "resume", "abort", "swap-back"])
def test_a_control_that_does_not_fit_is_a_409_and_writes_nothing(
    api, make_deployment, token_for, control
):
    rolling = make_deployment("prod", "frontend", state=S.VERIFYING)
    before = counts()
    response = api("POST", f"/api/deployments/{rolling.pk}/{control}", token_for("deployer"))
    assert response.status_code == 409 and response.json()["error"]
    assert counts() == before
    rolling.refresh_from_db()
    assert not (rolling.paused_at or rolling.cancel_requested)
