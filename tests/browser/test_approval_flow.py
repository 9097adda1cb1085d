import pytest

from deployments.models import Approval, Deployment

S = Deployment.State
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def pending(make_deployment):
    return make_deployment(state=S.PENDING_APPROVAL, approvals_required=1)


def test_an_approver_approves_a_pending_prod_release(sign_in, live_server, pending):
    page = sign_in("approver", "bob")
    page.click("text=Releases")
    page.click(f"text={pending.release}")
    card = page.locator(f"#deployment-{pending.pk}")
    assert card.locator(".state").inner_text() == "Waiting for approval"
    card.locator("input[name=comment]").fill("ship it")
    card.locator("button[value=approve]").click()
    page.locator(f"#deployment-{pending.pk} .state-queued").wait_for()
    assert "approved by bob" in page.locator(f"#deployment-{pending.pk} .reason").inner_text()
    pending.refresh_from_db()
    assert pending.state == S.QUEUED
    assert list(Approval.objects.values_list("user__username", "comment")) == [("bob", "ship it")]


def test_the_author_cannot_approve_their_own_build(sign_in, live_server, pending):
    page = sign_in("approver", "dev-alice")
    page.goto(f"{live_server.url}{pending.release.get_absolute_url()}")
    page.locator(f"#deployment-{pending.pk} button[value=approve]").click()
    message = page.locator(f"#deployment-{pending.pk} .message.error")
    message.wait_for()
    assert "You triggered this build" in message.inner_text()
    pending.refresh_from_db()
    assert pending.state == S.PENDING_APPROVAL
    assert Approval.objects.count() == 0
