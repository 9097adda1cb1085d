"""A refused self-approval (the build's author approving their own release) is in the audit log,
with who tried and why it was refused, however the attempt came."""

import json

import pytest
from django.urls import reverse

from audit.models import AuditEvent
from deployments.approvals import ApprovalError, decide
from deployments.models import Approval, Deployment
from portal.models import ApiToken

pytestmark = pytest.mark.django_db

S = Deployment.State
REFUSED = "deployment.approval_refused"


@pytest.fixture
def waiting(make_deployment):
    return make_deployment(state=S.PENDING_APPROVAL)  # its release's author is dev-alice


@pytest.fixture
def alice(make_user):
    """An approver whose GitHub login is the build's author."""
    return make_user("approver", "alice", github_login="Dev-Alice")


def unchanged(deployment):
    deployment.refresh_from_db()
    return deployment.state == S.PENDING_APPROVAL and Approval.objects.count() == 0


def test_a_refused_self_approval_is_audited_with_who_and_why(waiting, alice):
    before = AuditEvent.objects.count()
    with pytest.raises(ApprovalError, match="You triggered this build"):
        decide(waiting.pk, alice, "approve", "trust me")
    assert AuditEvent.objects.count() == before + 1
    event = AuditEvent.objects.get(action=REFUSED)
    assert (event.actor, event.object_type, event.object_id) == (
        "alice",
        "deployments.deployment",
        str(waiting.pk),
    )
    assert "You triggered this build (GitHub user dev-alice)" in event.message
    assert event.data == {
        "reason": "self-approval",
        "author": "dev-alice",
        "triggering_actor": "",
        "comment": "trust me",
    }
    assert unchanged(waiting)


def test_the_page_and_the_api_audit_the_refusal_too(client, waiting, alice):
    client.force_login(alice)
    url = reverse("deployment-decide", args=[waiting.pk])
    page = client.post(url, {"decision": "approve"}, REMOTE_ADDR="127.0.0.7")
    assert page.status_code == 302
    token = ApiToken(name="alice-token", user=alice)
    raw = token.issue()
    token.save()
    api = client.generic(
        "POST",
        f"/api/deployments/{waiting.pk}/approve",
        json.dumps({}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {raw}",
    )
    assert api.status_code == 409
    events = AuditEvent.objects.filter(action=REFUSED).order_by("id")
    assert [(e.actor, e.remote_addr) for e in events] == [
        ("alice", "127.0.0.7"),
        ("alice", "127.0.0.1"),
    ]
    assert unchanged(waiting)


def test_other_refusals_and_rejecting_ones_own_build_write_no_refusal(
    make_deployment, alice, make_user
):
    deployment = make_deployment(state=S.PENDING_APPROVAL, approvals_required=2)
    bob = make_user("approver", "bob")
    decide(deployment.pk, bob, "approve")
    with pytest.raises(ApprovalError, match="already approved"):
        decide(deployment.pk, bob, "approve")
    decide(deployment.pk, alice, "reject", "not ready")  # an author may stop their own build
    deployment.refresh_from_db()
    assert deployment.state == S.REJECTED
    assert AuditEvent.objects.filter(action=REFUSED).count() == 0
