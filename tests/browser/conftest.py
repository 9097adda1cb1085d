"""Playwright driving the system's Chromium against pytest-django's live server."""

import os
import shutil
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from environments import mig, monitoring, stats
from environments.models import Environment

# Playwright's sync API keeps an event loop in this thread; the ORM calls the tests make between
# page actions are ordinary synchronous calls, so Django's async guard does not apply to them.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = os.environ.get("GANTRY_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# How long a page action or a wait for an element may take before the test gives up: a guard
# against a hang, far beyond what a loaded machine needs, never a deadline a test races.
PATIENCE_MS = 120_000
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM} (make test installs Debian's chromium as root)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    """A fresh page. Every browser test is also a Content-Security-Policy test: Chromium reports
    each refused script, style or connection on the console, and any such report fails the test."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(PATIENCE_MS)
    page.set_default_navigation_timeout(PATIENCE_MS)
    refused = []
    page.on(
        "console",
        lambda message: (
            refused.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    yield page
    context.close()
    assert not refused, f"the page broke its Content-Security-Policy: {refused}"


@pytest.fixture
def sign_in(page, live_server, make_user):
    """sign_in("approver", "bob") -> the page, signed in through the real login form."""

    def go(role, username):
        user = make_user(role, username, password="browser-pass-1")
        if role == "admin":
            user.is_staff = True
            user.save()
        page.goto(f"{live_server.url}/login/")
        page.fill("#id_username", username)
        page.fill("#id_password", "browser-pass-1")
        page.click("button[type=submit]")
        page.wait_for_url(f"{live_server.url}/")
        return page

    return go


@pytest.fixture
def shots():
    folder = Path(
        os.environ.get("GANTRY_SCREENSHOT_DIR") or django_settings.VAR_DIR / "screenshots"
    )
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def watched(seed_topology, sandbox_settings, patient_probes, settings):
    """Both environments swept, their figures and instance groups read, as the workers do. The
    tiles' colours come from what the sandbox serves, never from how fast the machine is
    (patient_probes)."""
    settings.GANTRY_STATUS_CONFIRMATIONS = 1

    def sweep():
        for environment in Environment.objects.all():
            monitoring.sweep(environment.pk)
            stats.collect(environment.pk)
            mig.collect(environment.pk)

    sweep()
    sweep()  # a second reading gives the rates and ratios their first interval
    sweep.sandbox = sandbox_settings
    return sweep
