"""Rolling a component back from its page, in Chromium: the history's button, the confirmation
that says what changes, and the new deployment in the history."""

from datetime import timedelta

import pytest
from django.utils import timezone

from deployments.models import Deployment

S = Deployment.State
pytestmark = pytest.mark.django_db(transaction=True)


def test_a_deployer_rolls_back_from_the_component_page(sign_in, live_server, make_deployment):
    now = timezone.now()
    old = make_deployment("dev", "backend", state=S.SUCCEEDED, finished_at=now - timedelta(hours=2))
    running = make_deployment(
        "dev", "backend", state=S.SUCCEEDED, finished_at=now - timedelta(hours=1)
    )
    page = sign_in("deployer", "dana")
    page.goto(f"{live_server.url}/environments/dev/components/backend/")
    assert running.release.version in page.locator("#history .running").inner_text()
    assert page.locator("#history button.rollback").count() == 1

    page.locator(f"#history-{old.pk} button.rollback").click()
    page.wait_for_url(f"{live_server.url}/environments/dev/components/backend/rollback/")
    question = page.locator("#confirm")
    assert f"Roll dev/backend back to {old.release.version}?" in question.inner_text()
    compare = question.locator("a.compare")
    assert compare.get_attribute("href") == (
        f"https://github.com/nemo/backend/compare/{old.release.sha}...{running.release.sha}"
    )
    assert question.locator(".digest-now").inner_text() == running.release.image_by_digest
    assert question.locator(".digest-after").inner_text() == old.release.image_by_digest
    assert Deployment.objects.count() == 2  # asking changed nothing

    question.locator("button[type=submit]").click()
    page.wait_for_url(f"{live_server.url}/environments/dev/components/backend/#history")
    again = old.release.deployments.exclude(pk=old.pk).get()
    row = page.locator(f"#history-{again.pk}")
    assert "Queued" in row.locator(".state").inner_text()
    assert "dana" in row.inner_text()
    assert f"{again} created (queued): rolling back to {old.release}." in page.inner_text("main")
