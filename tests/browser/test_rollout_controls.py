"""Steering a running rollout from its card, in Chromium: pause and resume a canary, abort it
after saying why, swap a blue-green deployment back. The engine is not running here (tasks go to
an in-memory broker), so what the page asks for is what the rows show."""

import pytest

from audit.models import AuditEvent
from deployments.models import Deployment

from .htmx import count_swaps

S = Deployment.State
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def canary(make_deployment):
    return make_deployment("prod", "backend", state=S.VERIFYING, progress={"phase": "canary"})


def test_a_deployer_pauses_resumes_and_aborts_a_canary(sign_in, live_server, canary, shots):
    page = sign_in("deployer", "dana")
    page.goto(f"{live_server.url}{canary.release.get_absolute_url()}")
    card = page.locator(f"#deployment-{canary.pk}")
    assert card.locator(f"#cancel-{canary.pk}").count() == 0  # abort says it better
    assert card.locator(f"#promote-{canary.pk}").count() == 0  # prod: an approver's call

    card.locator(f"#pause-{canary.pk}").click()
    card.locator(f"#paused-{canary.pk}").wait_for()
    assert "Paused by dana" in card.locator(f"#paused-{canary.pk}").inner_text()
    canary.refresh_from_db()
    assert canary.paused_by == "dana"
    count_swaps(page, 2)  # the refreshes keep it
    assert card.locator(f"#resume-{canary.pk}").is_visible()
    page.screenshot(path=str(shots / "deployment-paused-canary.png"), full_page=True)

    card.locator(f"#resume-{canary.pk}").click()
    card.locator(f"#pause-{canary.pk}").wait_for()
    canary.refresh_from_db()
    assert canary.paused_at is None and canary.resumed_at is not None

    card.locator(f"#abort-{canary.pk}").click()
    question = page.locator(f"#deployment-{canary.pk}-actions.confirm")
    question.wait_for()
    assert f"Abort the canary of deployment #{canary.pk}?" in question.inner_text()
    canary.refresh_from_db()
    assert not canary.cancel_requested  # asking changed nothing
    question.locator("input[name=reason]").fill("p99 doubled")
    question.locator("button[type=submit]").click()
    page.locator(f"#deployment-{canary.pk} .message.success").wait_for()
    canary.refresh_from_db()
    assert canary.cancel_requested
    assert canary.cancel_reason == "canary aborted by dana: p99 doubled"
    assert card.locator(f"#pause-{canary.pk}, #abort-{canary.pk}").count() == 0
    actions = AuditEvent.objects.filter(object_id=str(canary.pk)).values_list("action", flat=True)
    assert list(actions.order_by("id")) == [
        "deployment.paused",
        "deployment.resumed",
        "deployment.canary_aborted",
    ]


def test_an_approver_promotes_a_prod_canary_with_a_reason(sign_in, live_server, canary):
    page = sign_in("approver", "bob")
    page.goto(f"{live_server.url}{canary.release.get_absolute_url()}")
    page.locator(f"#promote-{canary.pk}").click()
    question = page.locator(f"#deployment-{canary.pk}-actions.confirm")
    assert "Every instance of prod/backend moves" in question.inner_text()
    question.locator("input[name=reason]").fill("hotfix, soaked in staging")
    question.locator("button[type=submit]").click()
    page.locator(f"#deployment-{canary.pk} .message.success").wait_for()
    canary.refresh_from_db()
    assert canary.promote_requested_by == "bob"
    assert AuditEvent.objects.get(action="deployment.promoted_early").message == (
        "hotfix, soaked in staging"
    )


def test_a_deployer_swaps_a_blue_green_deployment_back(sign_in, live_server, make_deployment):
    warm = make_deployment(
        "prod",
        "ai-server",
        state=S.VERIFYING,
        previous={"live": "blue", "idle": "green", "live_mig": "nemo-ai-blue-mig"},
        operations=[{"id": "op-1", "what": "swap", "at": "2026-12-01T00:00:00+00:00"}],
    )
    page = sign_in("deployer", "dana")
    page.goto(f"{live_server.url}{warm.release.get_absolute_url()}")
    page.locator(f"#swap-back-{warm.pk}").click()
    question = page.locator(f"#deployment-{warm.pk}-actions.confirm")
    assert "Traffic goes back to blue (nemo-ai-blue-mig)" in question.inner_text()
    question.locator("button[type=submit]").click()
    page.locator(f"#deployment-{warm.pk} .message.success").wait_for()
    warm.refresh_from_db()
    assert warm.cancel_requested and warm.cancel_reason == "swapped back by dana"
