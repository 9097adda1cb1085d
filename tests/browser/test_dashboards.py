"""The dashboards in headless Chromium against the sandbox: HTMX refreshes the tiles in place, and
screenshots land in var/screenshots/ (GANTRY_SCREENSHOT_DIR) for a reviewer to look at."""

import pytest

from .htmx import count_swaps

pytestmark = pytest.mark.django_db(transaction=True)


def test_tiles_refresh_in_place_when_a_component_goes_down(sign_in, live_server, watched, shots):
    page = sign_in("viewer", "vera")
    page.goto(f"{live_server.url}/environments/prod/")
    assert page.locator("article.tile").count() == 6
    assert page.locator("#tile-prod-backend.status-up").count() == 1
    page.screenshot(path=str(shots / "dashboard-prod.png"), full_page=True)

    watched.sandbox.inject_fault("down", environment="prod", component="backend")
    watched()
    url_before = page.url
    # HTMX asks again every 5 s; the default timeout (PATIENCE_MS) only guards against a hang.
    page.locator("#tile-prod-backend.status-down").wait_for()
    assert page.url == url_before
    assert "HTTP 503" in page.locator("#tile-prod-backend").inner_text()
    page.screenshot(path=str(shots / "dashboard-prod-backend-down.png"), full_page=True)

    watched.sandbox.clear_faults()
    watched()
    page.locator("#tile-prod-backend.status-up").wait_for()


def test_screenshots_of_the_overview_and_a_component(sign_in, live_server, watched, shots):
    page = sign_in("viewer", "vera")
    assert page.locator("#env-prod li.status-up, #env-dev li.status-up").count() >= 8
    page.screenshot(path=str(shots / "overview.png"), full_page=True)
    page.goto(f"{live_server.url}/environments/prod/components/frontend/")
    assert "autoscaler 4\u20138" in page.locator(".mig").inner_text()
    page.screenshot(path=str(shots / "component-prod-frontend.png"), full_page=True)
    page.goto(f"{live_server.url}/environments/dev/")
    page.screenshot(path=str(shots / "dashboard-dev.png"), full_page=True)
    for name in ("overview", "component-prod-frontend", "dashboard-dev"):
        assert (shots / f"{name}.png").stat().st_size > 10_000


def test_keyboard_focus_stays_on_a_tile_through_the_refreshes(sign_in, live_server, watched):
    """The tiles are swapped every 5 s; the link a person tabbed to keeps the focus (each
    focusable element in a refreshed part has an id, which htmx focuses again)."""
    page = sign_in("viewer", "vera")
    page.goto(f"{live_server.url}/environments/prod/")
    page.locator("#tile-prod-backend-link").focus()
    count_swaps(page, 2)
    assert page.evaluate("() => document.activeElement.id") == "tile-prod-backend-link"

    page.goto(f"{live_server.url}/")
    page.locator("#overview-prod-backend").focus()
    count_swaps(page, 2)
    assert page.evaluate("() => document.activeElement.id") == "overview-prod-backend"
