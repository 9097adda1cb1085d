"""Deployments, their timeline and approvals, and approving or rejecting them through the API."""

from datetime import timedelta

import pytest

from audit.models import AuditEvent
from deployments.models import Approval, Deployment
from portal.models import Profile

pytestmark = pytest.mark.django_db
S = Deployment.State


@pytest.fixture
def waiting(make_deployment):
    return make_deployment("prod", "backend", state=S.PENDING_APPROVAL, approvals_required=1)


def test_the_list_filters_by_state_and_environment(api, make_deployment, token_for):
    raw = token_for("viewer")
    queued_dev = make_deployment("dev", "backend", state=S.QUEUED)
    waiting_prod = make_deployment("prod", "frontend", state=S.PENDING_APPROVAL)
    done_prod = make_deployment("prod", "backend", state=S.SUCCEEDED)

    def ids(**query):
        answer = api("GET", "/api/deployments/", raw, **query).json()
        assert answer["count"] == len(answer["items"])
        return [d["id"] for d in answer["items"]]

    assert ids() == [done_prod.pk, waiting_prod.pk, queued_dev.pk]  # newest first
    assert ids(state="pending_approval") == [waiting_prod.pk]
    assert ids(environment="prod") == [done_prod.pk, waiting_prod.pk]
    assert ids(environment="prod", state="queued") == []
    assert ids(component="frontend") == [waiting_prod.pk]
    assert ids(environment="staging") == []


def test_an_unknown_state_is_a_400_naming_the_parameter(api, make_deployment, token_for):
    response = api("GET", "/api/deployments/", token_for("viewer"), state="sideways")
    assert response.status_code == 400
    assert response.json()["field"] == "state" and "pending_approval" in response.json()["error"]


def test_the_detail_has_the_timeline_and_approvals(api, waiting, token_for, make_user):
    waiting.log("step", "image promoted")
    Approval.objects.create(
        deployment=waiting, user=make_user("approver", "carol"), decision="reject"
    )
    answer = api("GET", f"/api/deployments/{waiting.pk}/", token_for("viewer")).json()
    assert answer["id"] == waiting.pk and answer["release"] == waiting.release_id
    assert (answer["environment"], answer["component"], answer["state"]) == (
        "prod",
        "backend",
        "pending_approval",
    )
    assert answer["url"] == f"http://testserver/deployments/{waiting.pk}/"
    assert [e["message"] for e in answer["events"]] == ["image promoted"]
    assert [(a["user"], a["decision"]) for a in answer["approvals"]] == [("carol", "reject")]


def test_approving_writes_one_approval_and_queues_it(
    api, waiting, token_for, django_capture_on_commit_callbacks
):
    raw = token_for("approver", "bob")
    audit_before = AuditEvent.objects.count()
    with django_capture_on_commit_callbacks() as callbacks:
        response = api("POST", f"/api/deployments/{waiting.pk}/approve", raw, {"comment": " lgtm "})
    assert response.status_code == 200
    answer = response.json()
    assert answer["state"] == "queued" and answer["reason"] == "approved by bob"
    assert [(a["user"], a["decision"], a["comment"]) for a in answer["approvals"]] == [
        ("bob", "approve", "lgtm")
    ]
    approval = Approval.objects.get()
    assert (approval.deployment_id, approval.user.username) == (waiting.pk, "bob")
    waiting.refresh_from_db()
    assert waiting.state == S.QUEUED and waiting.queued_at
    new_audit = AuditEvent.objects.order_by("id")[audit_before:]
    assert [(e.actor, e.action) for e in new_audit] == [
        ("bob", "deployment.approve"),
        ("bob", "deployment.queued"),
    ]
    assert len(callbacks) == 1  # the engine is enqueued after commit


def test_an_approval_body_is_optional(api, waiting, token_for):
    response = api("POST", f"/api/deployments/{waiting.pk}/approve", token_for("approver"))
    assert response.status_code == 200 and response.json()["state"] == "queued"
    assert Approval.objects.get().comment == ""


def test_rejecting_ends_it(api, waiting, token_for):
    raw = token_for("approver", "carol")
    response = api("POST", f"/api/deployments/{waiting.pk}/reject", raw, {"comment": "breaks it"})
    assert response.status_code == 200
    assert response.json()["reason"] == "rejected by carol: breaks it"
    waiting.refresh_from_db()
    assert waiting.state == S.REJECTED and waiting.finished_at
    assert Approval.objects.get().decision == "reject"
    assert AuditEvent.objects.filter(action="deployment.reject", actor="carol").count() == 1


def refused_and_unchanged(response, waiting, message, approvals=0):
    assert response.status_code == 409
    assert message in response.json()["error"]
    assert Approval.objects.count() == approvals
    state = waiting.state
    waiting.refresh_from_db()
    assert waiting.state == state


def test_the_author_of_the_build_cannot_approve_it(api, waiting, token_for, django_user_model):
    raw = token_for("approver", "alice")
    alice = django_user_model.objects.get(username="alice")
    Profile.objects.filter(user=alice).update(github_login="Dev-Alice")  # the release's author
    audit_before = AuditEvent.objects.count()
    response = api("POST", f"/api/deployments/{waiting.pk}/approve", raw)
    refused_and_unchanged(response, waiting, "You triggered this build")
    refusals = AuditEvent.objects.filter(action="deployment.approval_refused")
    assert AuditEvent.objects.count() == audit_before + 1 and refusals.count() == 1
    assert waiting.events.count() == 0


def test_one_person_approves_once(api, make_deployment, token_for):
    waiting = make_deployment("prod", "backend", state=S.PENDING_APPROVAL, approvals_required=2)
    raw = token_for("approver", "bob")
    assert api("POST", f"/api/deployments/{waiting.pk}/approve", raw).status_code == 200
    second = api("POST", f"/api/deployments/{waiting.pk}/approve", raw)
    refused_and_unchanged(second, waiting, "already approved", approvals=1)


def test_an_expired_approval_no_longer_counts(api, make_deployment, token_for, settings):
    waiting = make_deployment("prod", "backend", state=S.PENDING_APPROVAL, approvals_required=2)
    raw = token_for("approver", "bob")
    api("POST", f"/api/deployments/{waiting.pk}/approve", raw)
    Approval.objects.update(created_at=waiting.created_at - timedelta(seconds=10))
    settings.GANTRY_APPROVAL_TTL = 5
    assert api("POST", f"/api/deployments/{waiting.pk}/approve", raw).status_code == 200
    assert Approval.objects.count() == 2  # the old one expired, so bob may approve again
    waiting.refresh_from_db()
    assert waiting.state == S.PENDING_APPROVAL  # one live approval of the two needed


def test_a_deployment_that_no_longer_waits_is_a_409(api, make_deployment, token_for):
    queued = make_deployment("dev", "backend", state=S.QUEUED)
    response = api("POST", f"/api/deployments/{queued.pk}/approve", token_for("approver"))
    refused_and_unchanged(response, queued, "no longer waits for a decision")


def test_an_unknown_deployment_is_a_404(api, waiting, token_for):
    raw = token_for("approver")
    for path in ("/api/deployments/999/", "/api/deployments/999/approve"):
        method = "POST" if path.endswith("approve") else "GET"
        response = api(method, path, raw)
        assert response.status_code == 404 and response.json() == {"error": "no deployment 999"}
    assert Approval.objects.count() == 0


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"comment": 5}, "comment", "comment must be a string"),
        ({"comment": "x" * 2001}, "comment", "at most 2000 characters"),
        ({"comment": "a\x00b"}, "comment", "NUL"),
        ({"approve": True}, "approve", "unknown field 'approve'"),
        ([], None, "body must be a JSON object"),
    ],
)
def test_a_bad_decision_body_is_a_400_and_writes_nothing(
    api, waiting, token_for, body, field, message
):
    response = api("POST", f"/api/deployments/{waiting.pk}/approve", token_for("approver"), body)
    assert response.status_code == 400
    assert message in response.json()["error"] and response.json().get("field") == field
    waiting.refresh_from_db()
    assert waiting.state == S.PENDING_APPROVAL and Approval.objects.count() == 0
