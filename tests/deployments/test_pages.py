"""Release, deployment, delivery and audit pages, with and without HTMX."""

import pytest
from django.urls import reverse

from audit.models import AuditEvent
from deployments.models import Approval, Deployment

S = Deployment.State
pytestmark = pytest.mark.django_db


@pytest.fixture
def pending(make_deployment):
    return make_deployment(state=S.PENDING_APPROVAL, approvals_required=1)


def test_release_list_and_detail_show_what_changes(client_as, pending, make_deployment):
    running = make_deployment(state=S.SUCCEEDED)
    Deployment.objects.filter(pk=running.pk).update(finished_at=running.created_at)
    client = client_as("viewer")
    page = client.get(reverse("releases")).content.decode()
    assert page.count('<td><a href="/releases/') == 2
    detail = client.get(pending.release.get_absolute_url()).content.decode()
    assert pending.release.digest in detail
    assert running.release.short_sha in detail  # what it replaces
    assert f"compare/{running.release.sha}...{pending.release.sha}" in detail
    assert "Waiting for approval" in detail
    assert 'name="decision"' not in detail  # a viewer gets no approve form


def test_approve_without_javascript(client_as, pending):
    client = client_as("approver", "bob")
    page = client.get(pending.release.get_absolute_url()).content.decode()
    assert 'value="approve"' in page and 'value="reject"' in page
    response = client.post(
        reverse("deployment-decide", args=[pending.pk]), {"decision": "approve", "comment": "ok"}
    )
    assert (
        response.status_code == 302 and response["Location"] == pending.release.get_absolute_url()
    )
    pending.refresh_from_db()
    assert pending.state == S.QUEUED
    assert Approval.objects.get().comment == "ok"
    assert "Queued" in client.get(response["Location"]).content.decode()


def test_approve_with_htmx_returns_the_refreshed_card(client_as, pending):
    client = client_as("approver", "bob")
    response = client.post(
        reverse("deployment-decide", args=[pending.pk]),
        {"decision": "approve"},
        HTTP_HX_REQUEST="true",
    )
    page = response.content.decode()
    assert response.status_code == 200
    assert page.startswith(f'<section class="card deployment" id="deployment-{pending.pk}"')
    assert "approved by bob" in page


def test_self_approval_is_refused_with_a_message(client_as, pending):
    client = client_as("approver", "dev-alice")  # the release's GitHub actor
    response = client.post(
        reverse("deployment-decide", args=[pending.pk]), {"decision": "approve"}, follow=True
    )
    assert "You triggered this build" in response.content.decode()
    pending.refresh_from_db()
    assert pending.state == S.PENDING_APPROVAL
    assert Approval.objects.count() == 0


@pytest.mark.parametrize("role", ["viewer", "deployer"])
def test_non_approvers_get_403(client_as, pending, role):
    response = client_as(role).post(
        reverse("deployment-decide", args=[pending.pk]), {"decision": "approve"}
    )
    assert response.status_code == 403
    assert Approval.objects.count() == 0


def test_a_bad_decision_value_changes_nothing(client_as, pending):
    client_as("approver", "bob").post(
        reverse("deployment-decide", args=[pending.pk]), {"decision": "maybe"}
    )
    pending.refresh_from_db()
    assert pending.state == S.PENDING_APPROVAL and Approval.objects.count() == 0


def test_deployer_cancels_a_waiting_deployment(client_as, pending):
    client = client_as("deployer")
    client.post(reverse("deployment-cancel", args=[pending.pk]))
    pending.refresh_from_db()
    assert pending.state == S.CANCELLED and pending.reason == "cancelled by deployer"
    response = client.post(reverse("deployment-cancel", args=[pending.pk]), follow=True)
    assert "cannot be cancelled" in response.content.decode()


def test_cancel_of_a_running_deployment_is_requested_not_forced(client_as, make_deployment):
    running = make_deployment(state=S.ROLLING_OUT)
    client_as("deployer").post(reverse("deployment-cancel", args=[running.pk]))
    running.refresh_from_db()
    assert running.state == S.ROLLING_OUT and running.cancel_requested
    assert running.events.filter(message__contains="stopping at the next safe point").exists()


def test_redeploy_of_a_proven_release_skips_approval(client_as, make_deployment):
    done = make_deployment(state=S.SUCCEEDED)
    client_as("deployer").post(reverse("release-redeploy", args=[done.release.pk]))
    again = done.release.deployments.exclude(pk=done.pk).get()
    assert again.state == S.QUEUED and again.requested_by == "deployer"


def test_redeploy_of_an_unproven_prod_release_waits_for_approval(client_as, pending):
    client_as("deployer").post(reverse("release-redeploy", args=[pending.release.pk]))
    again = pending.release.deployments.exclude(pk=pending.pk).get()
    assert again.state == S.PENDING_APPROVAL
    pending.refresh_from_db()
    assert pending.state == S.SUPERSEDED


def test_approvers_cannot_redeploy(client_as, pending):
    response = client_as("approver").post(reverse("release-redeploy", args=[pending.release.pk]))
    assert response.status_code == 403
    assert pending.release.deployments.count() == 1


def test_deployment_page_polls_only_while_unfinished(client_as, pending, make_deployment):
    client = client_as("viewer")
    assert (
        'hx-trigger="every 2s"'
        in client.get(reverse("deployment", args=[pending.pk])).content.decode()
    )
    done = make_deployment(state=S.SUCCEEDED)
    assert "hx-trigger" not in client.get(reverse("deployment", args=[done.pk])).content.decode()
    fragment = client.get(reverse("deployment", args=[done.pk]), HTTP_HX_REQUEST="true")
    assert fragment.content.decode().startswith('<section class="card deployment"')


def test_audit_page_lists_and_filters(client_as, pending):
    client = client_as("approver", "bob")
    client.post(reverse("deployment-decide", args=[pending.pk]), {"decision": "approve"})
    page = client.get(reverse("audit") + "?actor=bob").content.decode()
    assert "deployment.approve" in page and "deployment.queued" in page
    assert "topology.load" not in page
    assert AuditEvent.objects.filter(actor="bob", action__startswith="deployment.").count() == 2
    assert AuditEvent.objects.filter(actor="bob", action="auth.login").count() == 1


def test_deliveries_page(client_as):
    page = client_as("viewer").get(reverse("deliveries")).content.decode()
    assert "No deliveries yet." in page


def test_an_unfinished_deployment_says_what_it_waits_for(client_as, make_deployment):
    waiting = {"waiting": "nemo-frontend-mig to settle (2/4 on gantry-frontend-1, 1 healthy)"}
    running = make_deployment(state=S.ROLLING_OUT, progress=waiting)
    done = make_deployment(state=S.SUCCEEDED, progress=waiting)
    client = client_as("viewer")
    page = client.get(reverse("deployment", args=[running.pk])).content.decode()
    assert "Waiting for nemo-frontend-mig to settle (2/4 on gantry-frontend-1, 1 healthy)" in page
    assert "Waiting for" not in client.get(reverse("deployment", args=[done.pk])).content.decode()
