"""The home page's matrix in Chromium against the sandbox (issue 14, item 7): before Gantry has
deployed anything, what the sandbox's groups run is flagged as not Gantry's; once Gantry's
deployment is what GCP runs, the flag goes at the next refresh, without a reload."""

from datetime import timedelta

import pytest
from django.utils import timezone

from deployments import matrix
from environments.models import StatSample

pytestmark = pytest.mark.django_db(transaction=True)


def test_drift_shows_until_gcp_runs_what_gantry_deployed(
    sign_in, live_server, watched, shots, make_deployment
):
    page = sign_in("viewer", "vera")
    page.goto(f"{live_server.url}/")
    drift = page.locator("#drift-prod-backend")
    assert "which Gantry did not deploy" in drift.inner_text()
    page.screenshot(path=str(shots / "home-matrix-drift.png"), full_page=True)

    reading = StatSample.objects.filter(
        component__environment__name="prod", component__name="backend", kind="mig"
    ).latest("at", "id")
    [template] = matrix.Cell(reading.component, reading=reading).gcp_runs
    deployment = make_deployment(
        "prod",
        "backend",
        state="succeeded",
        template=template,
        finished_at=timezone.now() - timedelta(minutes=1),
    )
    watched()
    drift.wait_for(state="detached")
    cell = page.locator("#cell-prod-backend")
    assert deployment.release.short_sha in cell.inner_text()
    assert page.locator("#matrix-drift").count() == 1  # the other components are still not Gantry's
    page.screenshot(path=str(shots / "home-matrix.png"), full_page=True)
