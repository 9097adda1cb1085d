"""The admin and the sign-in pages under the Content-Security-Policy, in Chromium: the `page`
fixture fails a test on any CSP report, so these only need to open the pages and use them."""

import pytest

from environments.models import FreezeWindow

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_admin_adds_a_one_off_freeze_in_the_admin(sign_in, live_server, seed_topology):
    page = sign_in("admin", "root")
    for path in ("/admin/", "/admin/deployments/deployment/", "/admin/environments/component/"):
        page.goto(f"{live_server.url}{path}")
        assert page.locator("#content").count() == 1
    page.goto(f"{live_server.url}/admin/environments/freezewindow/add/")
    page.select_option("#id_environment", label="prod")
    page.fill("#id_name", "year-end")
    page.fill("#id_reason", "year-end close")
    page.fill("#id_starts_at_0", "2026-12-24")
    page.fill("#id_starts_at_1", "18:00:00")
    page.fill("#id_ends_at_0", "2026-12-28")
    page.fill("#id_ends_at_1", "09:00:00")
    page.click("input[name=_save]")
    page.locator(".messagelist .success").wait_for()
    window = FreezeWindow.objects.get(name="year-end")
    assert (window.environment.name, window.from_topology) == ("prod", False)


def test_a_locked_out_sign_in_shows_its_page(page, live_server, make_user, settings):
    make_user("viewer", "mallory-target", password="the-right-one-1")
    for attempt in range(settings.AXES_FAILURE_LIMIT + 1):
        page.goto(f"{live_server.url}/login/")
        page.fill("#id_username", "mallory-target")
        page.fill("#id_password", f"wrong-{attempt}")
        page.click("button[type=submit]")
    assert page.locator("h1").inner_text() == "Sign-in locked"
