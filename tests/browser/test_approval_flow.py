import pytest

from deployments.models import Approval, Deployment

from .htmx import count_swaps

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


def test_the_author_sees_why_they_cannot_approve_where_the_button_would_be(
    sign_in, live_server, pending
):
    page = sign_in("approver", "dev-alice")  # the build's GitHub actor
    page.goto(f"{live_server.url}{pending.release.get_absolute_url()}")
    card = page.locator(f"#deployment-{pending.pk}")
    why = card.locator(".why-not")
    assert "You triggered this build" in why.inner_text()
    assert card.locator("button[value=approve]").count() == 0
    count_swaps(page, 3)  # and it stays there, refresh after refresh
    assert "You triggered this build" in card.locator(".why-not").inner_text()
    pending.refresh_from_db()
    assert pending.state == S.PENDING_APPROVAL
    assert Approval.objects.count() == 0


def test_what_an_approver_types_survives_the_refreshes_and_is_what_they_send(
    sign_in, live_server, pending
):
    page = sign_in("approver", "bob")
    page.goto(f"{live_server.url}{pending.release.get_absolute_url()}")
    comment = page.locator(f"#comment-{pending.pk}")
    comment.click()
    page.keyboard.type("Looks")
    count_swaps(page, 3)
    assert page.evaluate("() => document.activeElement.id") == f"comment-{pending.pk}"
    page.keyboard.type(" good")
    assert comment.input_value() == "Looks good"

    page.locator(f"#approve-{pending.pk}").click()
    page.locator(f"#deployment-{pending.pk} .state-queued").wait_for()
    assert list(Approval.objects.values_list("comment", flat=True)) == ["Looks good"]


def test_keyboard_focus_on_approve_stays_through_the_refreshes(sign_in, live_server, pending):
    page = sign_in("approver", "bob")
    page.goto(f"{live_server.url}{pending.release.get_absolute_url()}")
    page.locator(f"#approve-{pending.pk}").focus()
    count_swaps(page, 3)
    assert page.evaluate("() => document.activeElement.id") == f"approve-{pending.pk}"
    page.keyboard.press("Enter")
    page.locator(f"#deployment-{pending.pk} .state-queued").wait_for()
    pending.refresh_from_db()
    assert pending.state == S.QUEUED


def test_reject_asks_first_in_place_and_keep_it_puts_the_buttons_back(
    sign_in, live_server, pending
):
    page = sign_in("approver", "bob")
    page.goto(f"{live_server.url}{pending.release.get_absolute_url()}")
    page.locator(f"#comment-{pending.pk}").fill("not today")
    page.locator(f"#reject-{pending.pk}").click()
    question = page.locator(f"#deployment-{pending.pk}-actions.confirm")
    question.wait_for()
    assert f"Reject deployment #{pending.pk}?" in question.inner_text()
    pending.refresh_from_db()
    assert pending.state == S.PENDING_APPROVAL

    question.locator("text=Keep it as it is").click()
    page.locator(f"#approve-{pending.pk}").wait_for()

    page.locator(f"#reject-{pending.pk}").click()
    page.locator(f"#deployment-{pending.pk}-actions.confirm button[type=submit]").click()
    page.locator(f"#deployment-{pending.pk} .state-rejected").wait_for()
    pending.refresh_from_db()
    assert pending.state == S.REJECTED
