import threading
from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied
from django.db import close_old_connections, connection
from django.utils import timezone

from audit.models import AuditEvent
from deployments.approvals import ApprovalError, decide
from deployments.models import Approval, Deployment

S = Deployment.State


@pytest.fixture
def waiting(make_deployment):
    def make(required=1):
        return make_deployment(state=S.PENDING_APPROVAL, approvals_required=required)

    return make


@pytest.mark.django_db
def test_an_approver_queues_the_deployment(waiting, make_user, django_capture_on_commit_callbacks):
    deployment = waiting()
    bob = make_user("approver", "bob")
    with django_capture_on_commit_callbacks() as callbacks:
        decide(deployment.pk, bob, "approve", "looks good")
    deployment.refresh_from_db()
    assert deployment.state == S.QUEUED and deployment.queued_at
    assert deployment.reason == "approved by bob"
    assert list(deployment.approvals.values_list("user__username", "decision", "comment")) == [
        ("bob", "approve", "looks good")
    ]
    actions = AuditEvent.objects.filter(object_id=str(deployment.pk)).values_list(
        "action", flat=True
    )
    assert sorted(actions) == ["deployment.approve", "deployment.queued"]
    assert len(callbacks) == 1  # the engine starts after commit


@pytest.mark.django_db
def test_the_author_of_the_build_cannot_approve_it(waiting, make_user):
    deployment = waiting()
    alice = make_user("approver", "alice", github_login="Dev-Alice")  # release.author: dev-alice
    with pytest.raises(ApprovalError, match="You triggered this build"):
        decide(deployment.pk, alice, "approve")
    deployment.refresh_from_db()
    assert deployment.state == S.PENDING_APPROVAL
    assert Approval.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["viewer", "deployer", None])
def test_only_approvers_decide(waiting, make_user, role):
    deployment = waiting()
    with pytest.raises(PermissionDenied):
        decide(deployment.pk, make_user(role, f"user-{role}"), "approve")
    assert Approval.objects.count() == 0


@pytest.mark.django_db
def test_a_rejection_ends_it(waiting, make_user):
    deployment = waiting(required=2)
    decide(deployment.pk, make_user("approver", "bob"), "approve")
    decide(deployment.pk, make_user("approver", "carol"), "reject", "breaks the API")
    deployment.refresh_from_db()
    assert deployment.state == S.REJECTED
    assert deployment.reason == "rejected by carol: breaks the API"
    with pytest.raises(ApprovalError, match="no longer waits"):
        decide(deployment.pk, make_user("approver", "dave"), "approve")
    assert Approval.objects.count() == 2


@pytest.mark.django_db
def test_two_approvals_needed_and_each_person_counts_once(waiting, make_user):
    deployment = waiting(required=2)
    bob, carol = make_user("approver", "bob"), make_user("approver", "carol")
    decide(deployment.pk, bob, "approve")
    deployment.refresh_from_db()
    assert deployment.state == S.PENDING_APPROVAL
    with pytest.raises(ApprovalError, match="already approved"):
        decide(deployment.pk, bob, "approve")
    decide(deployment.pk, carol, "approve")
    deployment.refresh_from_db()
    assert deployment.state == S.QUEUED
    assert deployment.reason == "approved by bob, carol"


@pytest.mark.django_db
def test_an_expired_approval_no_longer_counts(waiting, make_user, settings):
    settings.GANTRY_APPROVAL_TTL = 3600
    deployment = waiting(required=2)
    bob, carol = make_user("approver", "bob"), make_user("approver", "carol")
    decide(deployment.pk, bob, "approve")
    Approval.objects.update(created_at=timezone.now() - timedelta(hours=2))
    decide(deployment.pk, carol, "approve")
    deployment.refresh_from_db()
    assert deployment.state == S.PENDING_APPROVAL  # bob's approval expired
    decide(deployment.pk, bob, "approve")  # bob may approve again
    deployment.refresh_from_db()
    assert deployment.state == S.QUEUED
    assert Approval.objects.count() == 3


@pytest.mark.django_db(transaction=True)
def test_two_approvers_at_once_queue_exactly_once(waiting, make_user):
    if connection.vendor == "sqlite":
        pytest.skip("row locks need PostgreSQL or MySQL; SQLite serialises whole transactions")
    deployment = waiting(required=2)
    approvers = [make_user("approver", "bob"), make_user("approver", "carol")]
    barrier = threading.Barrier(2)
    errors = []

    def approve(user):
        try:
            barrier.wait()
            decide(deployment.pk, user, "approve")
        except Exception as exc:  # surfaced by the assertion below
            errors.append(exc)
        finally:
            close_old_connections()
            connection.close()

    threads = [threading.Thread(target=approve, args=(u,)) for u in approvers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    deployment.refresh_from_db()
    assert deployment.state == S.QUEUED
    assert Approval.objects.filter(deployment=deployment).count() == 2
    assert deployment.events.filter(message__contains="→ queued").count() == 1
