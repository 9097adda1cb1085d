"""Release, deployment, delivery and audit pages, with and without HTMX."""

import json

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
    assert response["HX-Retarget"] == f"#deployment-{pending.pk}"  # the card, not the form
    assert "approved by bob" in page
    assert page.count("queued.</p>") == 1  # the action's message, once


def test_the_build_author_sees_why_they_cannot_approve_where_the_button_would_be(
    client_as, pending
):
    page = client_as("approver", "dev-alice").get(pending.release.get_absolute_url())
    page = page.content.decode()
    assert 'value="approve"' not in page
    assert "You cannot approve this deployment." in page and "You triggered this build" in page
    assert 'value="reject"' in page  # rejecting is still theirs to do


def test_reject_asks_first_and_keeps_the_comment(client_as, pending):
    client = client_as("approver", "bob")
    url = reverse("deployment-decide", args=[pending.pk])
    asked = client.post(url, {"decision": "reject", "comment": "breaks the API"})

    page = asked.content.decode()
    assert asked.status_code == 200 and f"Reject deployment #{pending.pk}?" in page
    assert 'value="breaks the API"' in page and 'name="confirm" value="1"' in page
    pending.refresh_from_db()
    assert pending.state == S.PENDING_APPROVAL and Approval.objects.count() == 0

    done = client.post(url, {"decision": "reject", "comment": "breaks the API", "confirm": "1"})
    assert done.status_code == 302
    pending.refresh_from_db()
    assert pending.state == S.REJECTED
    assert Approval.objects.get().comment == "breaks the API"


def test_with_htmx_the_question_takes_the_place_of_the_actions(client_as, pending):
    client = client_as("approver", "bob")
    asked = client.post(
        reverse("deployment-decide", args=[pending.pk]),
        {"decision": "reject"},
        HTTP_HX_REQUEST="true",
    )
    page = asked.content.decode()
    assert page.startswith(f'<div id="deployment-{pending.pk}-actions" class="actions confirm"')
    assert f'hx-get="/deployments/{pending.pk}/?part=actions"' in page  # "keep it" puts them back


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


def test_deployer_cancels_a_waiting_deployment_after_saying_yes(client_as, pending):
    client = client_as("deployer")
    url = reverse("deployment-cancel", args=[pending.pk])
    asked = client.post(url)
    assert "It ends at once; nothing has changed on GCP yet." in asked.content.decode()
    pending.refresh_from_db()
    assert pending.state == S.PENDING_APPROVAL
    client.post(url, {"confirm": "1"})
    pending.refresh_from_db()
    assert pending.state == S.CANCELLED and pending.reason == "cancelled by deployer"
    response = client.post(url, {"confirm": "1"}, follow=True)
    assert "cannot be cancelled" in response.content.decode()


def test_cancel_of_a_running_deployment_is_requested_not_forced(client_as, make_deployment):
    running = make_deployment(state=S.ROLLING_OUT)
    client = client_as("deployer")
    asked = client.post(reverse("deployment-cancel", args=[running.pk]))
    assert "rolls back to what ran before" in asked.content.decode()
    client.post(reverse("deployment-cancel", args=[running.pk]), {"confirm": "1"})
    running.refresh_from_db()
    assert running.state == S.ROLLING_OUT and running.cancel_requested
    assert running.events.filter(message__contains="rolling back at the next safe point").exists()


def test_a_redeploy_to_prod_asks_first_then_waits_for_approval_even_for_a_proven_release(
    client_as, make_deployment
):
    done = make_deployment(state=S.SUCCEEDED)
    client = client_as("deployer")
    url = reverse("release-redeploy", args=[done.release.pk])
    asked = client.post(url).content.decode()
    assert "needs 1 approval: the new deployment waits for them" in asked
    assert "skip_approval_reason" not in asked  # a deployer may not skip it
    assert done.release.deployments.count() == 1

    response = client.post(url, {"confirm": "1"}, follow=True)
    again = done.release.deployments.exclude(pk=done.pk).get()
    assert again.state == S.PENDING_APPROVAL and again.requested_by == "deployer"
    assert response.content.decode().count(f"{again} created") == 1  # the message, once


def test_an_approver_who_deploys_may_skip_the_approval_by_saying_why(client_as, make_deployment):
    done = make_deployment(state=S.SUCCEEDED)
    client = client_as("admin", "carol")
    url = reverse("release-redeploy", args=[done.release.pk])
    assert "skip_approval_reason" in client.post(url).content.decode()

    reason = "roll back the broken checkout, incident 42"
    client.post(url, {"confirm": "1", "skip_approval_reason": reason})

    again = done.release.deployments.exclude(pk=done.pk).get()
    assert again.state == S.QUEUED
    skipped = AuditEvent.objects.get(action="deployment.approval_skipped")
    assert (skipped.actor, skipped.message, skipped.object_id) == ("carol", reason, str(again.pk))


def test_a_deployer_cannot_skip_the_approval_and_nothing_is_created(client_as, make_deployment):
    done = make_deployment(state=S.SUCCEEDED)
    response = client_as("deployer").post(
        reverse("release-redeploy", args=[done.release.pk]),
        {"confirm": "1", "skip_approval_reason": "trust me"},
    )
    assert response.status_code == 403
    assert done.release.deployments.count() == 1
    assert not AuditEvent.objects.filter(action="deployment.approval_skipped").exists()


def test_the_builds_author_cannot_skip_its_approval(client_as, make_deployment):
    done = make_deployment(state=S.SUCCEEDED)  # built by dev-alice
    response = client_as("admin", "dev-alice").post(
        reverse("release-redeploy", args=[done.release.pk]),
        {"confirm": "1", "skip_approval_reason": "my own fix"},
        follow=True,
    )
    assert "It must go through approval." in response.content.decode()
    assert done.release.deployments.count() == 1


def test_a_redeploy_to_dev_is_queued_at_once(client_as, make_deployment):
    done = make_deployment("dev", state=S.SUCCEEDED)
    client_as("deployer").post(
        reverse("release-redeploy", args=[done.release.pk]), {"confirm": "1"}
    )
    assert done.release.deployments.exclude(pk=done.pk).get().state == S.QUEUED


def test_redeploy_of_an_unproven_prod_release_waits_for_approval(client_as, pending):
    client_as("deployer").post(
        reverse("release-redeploy", args=[pending.release.pk]), {"confirm": "1"}
    )
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


def test_the_live_part_has_no_form_and_asks_for_the_actions_only_when_they_change(
    client_as, pending
):
    client = client_as("approver", "bob")
    page = client.get(reverse("deployment", args=[pending.pk])).content.decode()
    offer = page.split(f'id="deployment-{pending.pk}-offer" name="offer" value="')[1][:16]
    url = reverse("deployment", args=[pending.pk])

    live = client.get(url, {"part": "live", "offer": offer}, HTTP_HX_REQUEST="true")
    assert "<form" not in live.content.decode() and "HX-Trigger" not in live.headers

    Deployment.objects.filter(pk=pending.pk).update(state=S.QUEUED)  # someone else approved
    changed = client.get(url, {"part": "live", "offer": offer}, HTTP_HX_REQUEST="true")
    assert json.loads(changed["HX-Trigger"]) == {f"deployment-{pending.pk}-changed": {}}
    actions = client.get(url, {"part": "actions"}, HTTP_HX_REQUEST="true").content.decode()
    assert 'value="approve"' not in actions and f'id="cancel-{pending.pk}"' not in actions


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
