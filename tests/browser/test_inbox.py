"""The approvals inbox in Chromium: the top bar's count, the page, approving from it."""

import pytest

from deployments.models import Approval, Deployment, Release

S = Deployment.State
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def waiting(make_deployment):
    """Two deployments bob may approve and one he built."""
    first = make_deployment(state=S.PENDING_APPROVAL, approvals_required=1)
    second = make_deployment("prod", "frontend", state=S.PENDING_APPROVAL, approvals_required=1)
    own = make_deployment("prod", "ai-server", state=S.PENDING_APPROVAL, approvals_required=1)
    Release.objects.filter(pk=own.release_id).update(author="bob")
    return first, second, own


def test_an_approver_sees_the_count_and_approves_from_the_inbox(sign_in, live_server, waiting):
    first, second, own = waiting
    page = sign_in("approver", "bob")
    assert page.locator("#approvals-count").text_content() == "2 waiting for you"

    page.click("#approvals-link")
    page.wait_for_url(f"{live_server.url}/approvals/")
    assert page.locator("h1").inner_text() == "Approvals"
    assert page.locator(f"#inbox-approve-{first.pk}").is_visible()
    assert page.locator(f"#inbox-approve-{second.pk}").is_visible()
    theirs = page.locator(f"#inbox-{own.pk}")
    assert "You triggered this build (GitHub user bob)" in theirs.inner_text()
    assert theirs.locator("button").count() == 0

    page.fill(f"#inbox-comment-{first.pk}", "ship it")
    page.click(f"#inbox-approve-{first.pk}")
    page.locator(".message.success").wait_for()
    assert page.url == f"{live_server.url}/approvals/"
    assert f"{first}: queued." in page.locator(".message.success").inner_text()
    assert page.locator("#approvals-count").text_content() == "1 waiting for you"
    assert page.locator(f"#inbox-{first.pk}").count() == 0
    first.refresh_from_db()
    assert first.state == S.QUEUED
    assert list(Approval.objects.values_list("user__username", "comment")) == [("bob", "ship it")]


def test_a_viewer_has_no_inbox_link(sign_in, live_server, waiting):
    page = sign_in("viewer", "vic")
    assert page.locator("#approvals-link").count() == 0
    assert page.locator("nav >> text=Deployments").is_visible()
