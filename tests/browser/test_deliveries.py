"""The Deliveries page in a real browser: a deployer finds a failed delivery and retries it."""

import os
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from playwright.sync_api import expect

from github.models import WebhookDelivery
from tests.github.payloads import workflow_run

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_deployer_filters_to_failed_deliveries_and_retries_one(sign_in, live_server):
    failed = WebhookDelivery.objects.create(
        guid="failed-build",
        event="workflow_run",
        action="completed",
        repository="nemo-team/unknown",
        outcome=WebhookDelivery.Outcome.FAILED,
        detail="image was not in the registry after 10 min",
        payload=workflow_run(repository="nemo-team/unknown", branch="develop"),
    )
    WebhookDelivery.objects.create(
        claimed_guid="forged", event="workflow_run", outcome=WebhookDelivery.Outcome.REJECTED
    )
    page = sign_in("deployer", "dana")
    page.click("text=Deliveries")
    page.wait_for_url("**/deliveries/", wait_until="load")  # the click returns once it commits
    expect(page.locator("text=failed-build")).to_have_count(1)
    expect(page.locator("text=1 unsigned or unverifiable call")).to_have_count(1)
    page.select_option("#f-outcome", "failed")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**/deliveries/?outcome=failed**")
    folder = Path(
        os.environ.get("GANTRY_SCREENSHOT_DIR") or django_settings.VAR_DIR / "screenshots"
    )
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / "deliveries.png"), full_page=True)
    page.click("button:has-text('Retry')")
    page.locator(".message").first.wait_for()
    assert "retried: ignored" in page.locator(".message").first.inner_text()
    failed.refresh_from_db()
    assert (failed.outcome, failed.attempts) == (WebhookDelivery.Outcome.IGNORED, 2)
    assert (
        "not in the topology"
        in page.locator("td", has_text="nemo-team/unknown is not").inner_text()
    )
