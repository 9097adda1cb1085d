"""The approvals inbox (issue 14, item 10): the top bar's count and the /approvals/ page."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from deployments.inbox import approvable_count, waiting_for
from deployments.models import Approval, Deployment, Release
from environments.models import Environment, FreezeWindow
from portal.models import Profile

S = Deployment.State
pytestmark = pytest.mark.django_db


@pytest.fixture
def waiting(make_deployment, make_user):
    """bob's inbox: two he may approve, one he built, one he approved already; one queued."""
    bob = make_user("approver", "bob")
    first = make_deployment(state=S.PENDING_APPROVAL, approvals_required=1)
    second = make_deployment("prod", "frontend", state=S.PENDING_APPROVAL, approvals_required=1)
    own = make_deployment(state=S.PENDING_APPROVAL, approvals_required=1)
    Release.objects.filter(pk=own.release_id).update(author="Bob")
    approved = make_deployment(state=S.PENDING_APPROVAL, approvals_required=2)
    Approval.objects.create(deployment=approved, user=bob, decision="approve")
    make_deployment(state=S.QUEUED)
    # Oldest first: make the creation order plain whatever the clock's resolution.
    now = timezone.now()
    for age, deployment in enumerate((approved, own, second, first)):
        Deployment.objects.filter(pk=deployment.pk).update(
            created_at=now - timedelta(hours=age + 1)
        )
    return {"bob": bob, "first": first, "second": second, "own": own, "approved": approved}


def badge(page: str) -> str | None:
    """The count in the top bar's Approvals link, None when the link is not there."""
    if 'id="approvals-link"' not in page:
        return None
    link = page.split('id="approvals-link"')[1].split("</a>")[0]
    if 'id="approvals-count">' not in link:
        return ""
    return link.split('id="approvals-count">')[1].split("<")[0]


def test_the_badge_counts_what_the_user_may_approve(client, waiting):
    client.force_login(waiting["bob"])
    page = client.get(reverse("releases")).content.decode()
    assert badge(page) == "2"
    assert approvable_count(waiting["bob"]) == 2


@pytest.mark.parametrize("role", ["viewer", "deployer", "ci"])
def test_no_badge_for_those_who_cannot_approve(client_as, waiting, role):
    page = client_as(role).get(reverse("releases")).content.decode()
    assert badge(page) is None


def test_no_badge_for_the_anonymous(client, waiting):
    page = client.get(reverse("login")).content.decode()
    assert badge(page) is None


def test_an_approver_with_nothing_to_do_gets_the_link_without_a_count(client_as, make_deployment):
    make_deployment(state=S.QUEUED)
    page = client_as("approver", "bob").get(reverse("releases")).content.decode()
    assert badge(page) == ""


def test_the_badge_is_one_query(waiting, django_assert_num_queries):
    bob = waiting["bob"]
    bob.has_perm("deployments.approve_deployment")  # the request has read the permissions once
    with django_assert_num_queries(1):
        assert approvable_count(bob) == 2


def test_an_expired_approval_does_not_keep_a_deployment_off_the_count(waiting, settings):
    Approval.objects.filter(user=waiting["bob"]).update(
        created_at=timezone.now() - timedelta(seconds=settings.GANTRY_APPROVAL_TTL + 60)
    )
    assert approvable_count(waiting["bob"]) == 3


def test_an_approver_gantry_cannot_tell_from_the_author_may_approve_no_github_build(
    client, waiting, make_user
):
    stranger = make_user("approver", "stranger", github_login="")
    assert approvable_count(stranger) == 0
    yours, theirs = waiting_for(stranger)
    assert yours == [] and len(theirs) == 4
    assert all("does not know your GitHub login" in item.why_not for item in theirs)


def test_the_inbox_lists_oldest_first_and_the_rest_apart_with_why(client, waiting):
    client.force_login(waiting["bob"])
    response = client.get(reverse("approvals"))
    assert response.status_code == 200
    yours, theirs = response.context["yours"], response.context["theirs"]
    assert [item.deployment for item in yours] == [waiting["first"], waiting["second"]]
    assert [item.deployment for item in theirs] == [waiting["own"], waiting["approved"]]
    why = {item.deployment.pk: item.why_not for item in theirs}
    assert why[waiting["own"].pk].startswith("You triggered this build (GitHub user bob)")
    assert why[waiting["approved"].pk] == "You have already approved this deployment."

    page = response.content.decode()
    assert page.count('id="inbox-approve-') == 2
    assert f'id="inbox-approve-{waiting["own"].pk}"' not in page
    assert "Waiting for you (2)" in page and "Waiting for someone else (2)" in page
    assert "You triggered this build" in page
    assert "1 of 2" in page  # bob's approval counts on the one he approved


def test_who_else_can_approve_leaves_out_the_builds_actors_and_the_unknown(
    client, make_user, make_deployment, django_user_model
):
    bob = make_user("approver", "bob")
    make_user("approver", "carol")
    make_user("approver", "dev-alice")  # the build's author
    make_user("approver", "dana", github_login="")  # Gantry cannot tell her from the author
    make_user("admin", "erin")
    make_user("viewer", "vic")
    root = django_user_model.objects.create_superuser("root", password="pw-for-tests-1")
    Profile.objects.create(user=root, github_login="root", github_login_source="admin")
    gone = make_user("approver", "gone")
    gone.is_active = False
    gone.save()
    pending = make_deployment(state=S.PENDING_APPROVAL, approvals_required=2)
    Approval.objects.create(
        deployment=pending, user=make_user("approver", "fred"), decision="approve"
    )

    (item,) = waiting_for(bob)[0]
    assert item.others == ["carol", "erin", "root"]
    assert item.still_needed == 1
    client.force_login(bob)
    assert "carol, erin, root" in client.get(reverse("approvals")).content.decode()


def test_a_manual_release_may_be_approved_by_someone_without_a_github_login(
    make_user, make_deployment
):
    pending = make_deployment(state=S.PENDING_APPROVAL, approvals_required=1)
    Release.objects.filter(pk=pending.release_id).update(author="")
    dana = make_user("approver", "dana", github_login="")
    assert approvable_count(dana) == 1
    (item,) = waiting_for(dana)[0]
    assert item.deployment == pending and item.others == []


def test_the_inbox_shows_the_freeze_that_would_hold_a_deployment(client, waiting):
    now = timezone.now()
    FreezeWindow.objects.create(
        environment=Environment.objects.get(name="prod"),
        name="quarter-end",
        reason="quarter-end close",
        starts_at=now - timedelta(hours=1),
        ends_at=now + timedelta(hours=5),
    )
    Deployment.objects.filter(pk=waiting["second"].pk).update(
        freeze_override_by="erin", freeze_override_reason="hotfix"
    )
    client.force_login(waiting["bob"])
    response = client.get(reverse("approvals"))
    first, second = response.context["yours"]
    assert first.freeze[0].name == "quarter-end" and second.freeze is None
    page = response.content.decode()
    assert "quarter-end: quarter-end close, until" in page
    assert "overridden by erin" in page


def test_approving_from_the_inbox_without_javascript_comes_back_to_it(client, waiting):
    client.force_login(waiting["bob"])
    first = waiting["first"]
    response = client.post(
        reverse("deployment-decide", args=[first.pk]),
        {"decision": "approve", "comment": "from the inbox", "next": reverse("approvals")},
        follow=True,
    )
    assert response.redirect_chain == [(reverse("approvals"), 302)]
    first.refresh_from_db()
    assert first.state == S.QUEUED
    assert Approval.objects.get(deployment=first).comment == "from the inbox"
    page = response.content.decode()
    assert f"{first}: queued." in page
    assert badge(page) == "1"
    assert [item.deployment for item in response.context["yours"]] == [waiting["second"]]


def test_a_next_to_another_site_is_ignored(client, waiting):
    client.force_login(waiting["bob"])
    first = waiting["first"]
    response = client.post(
        reverse("deployment-decide", args=[first.pk]),
        {"decision": "approve", "next": "https://evil.example.com/"},
    )
    assert response["Location"] == first.release.get_absolute_url()


@pytest.mark.parametrize("role", ["viewer", "deployer", "ci", None])
def test_only_approvers_open_the_inbox(client_as, waiting, role):
    assert client_as(role, f"user-{role}").get(reverse("approvals")).status_code == 403


def test_the_inbox_and_badge_cost_the_same_for_few_and_many(
    client, make_user, make_deployment, django_assert_num_queries
):
    bob = make_user("approver", "bob")
    client.force_login(bob)

    def grow(size):
        while Deployment.objects.filter(state=S.PENDING_APPROVAL).count() < size:
            pending = make_deployment(state=S.PENDING_APPROVAL, approvals_required=2)
            someone = make_user("approver", f"approver-{pending.pk}")
            Approval.objects.create(deployment=pending, user=someone, decision="approve")

    grow(2)
    client.get(reverse("approvals"))  # warm: the session, content types
    with CaptureQueriesContext(connection) as few:
        assert len(client.get(reverse("approvals")).context["yours"]) == 2
    grow(8)
    with django_assert_num_queries(len(few)):
        page = client.get(reverse("approvals"))
    assert len(page.context["yours"]) == 8
    assert badge(page.content.decode()) == "8"
