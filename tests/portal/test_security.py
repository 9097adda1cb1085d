"""CSRF, the Content-Security-Policy, production settings, sign-in lockout and secrets."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.test import Client
from django.urls import URLResolver, get_resolver, reverse

from audit.models import AuditEvent

from .test_permissions import TABLE

ROOT = Path(__file__).resolve().parents[2]
# Views that take no session and so no CSRF token: each proves its caller another way.
CSRF_EXEMPT = {"github-webhook": "HMAC signature of the body"}


def _views():
    def walk(patterns, namespace=""):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                if pattern.namespace != "admin":
                    inner = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
                    yield from walk(pattern.url_patterns, inner)
            else:
                yield f"{namespace}{pattern.name}", pattern.callback

    return dict(walk(get_resolver().url_patterns))


def test_only_machine_endpoints_and_the_api_skip_django_csrf():
    """django-ninja exempts its views from Django's middleware and checks the CSRF token itself
    for session callers (tested below, with the pages); bearer-token callers need none."""
    exempt = {name for name, view in _views().items() if getattr(view, "csrf_exempt", False)}
    assert {name for name in exempt if not name.startswith("api:")} == set(CSRF_EXEMPT)


SESSION_POSTS = sorted(
    {(name, key) for (name, key, method) in TABLE if method == "POST" and name not in CSRF_EXEMPT}
)


@pytest.mark.parametrize(("name", "key"), SESSION_POSTS)
def test_every_state_change_needs_the_csrf_token(make_deployment, make_user, name, key):
    from deployments.models import Approval, Deployment

    deployment = make_deployment("prod", "frontend", state="pending_approval")
    admin = make_user("admin", "root-admin")
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin)
    audit_before = AuditEvent.objects.count()
    from github.models import WebhookDelivery

    delivery = WebhookDelivery.objects.create(guid="g", event="workflow_run", outcome="failed")
    kwargs = {
        "release": {"pk": deployment.release_id},
        "deployment": {"pk": deployment.pk},
        "api-deployment": {"id": deployment.pk},
        "delivery": {"pk": delivery.pk},
        "api-delivery": {"id": delivery.pk},
        "api-release": {"id": deployment.release_id},
        "component": {"name": "prod", "component": "frontend"},
        "api-component": {"name": "prod", "component": "frontend"},
    }.get(key, {})
    url = reverse(name, kwargs=kwargs)
    if name.startswith("api:"):
        response = client.post(url, '{"comment": "ok"}', content_type="application/json")
    else:
        response = client.post(url, {"decision": "approve", "reason": "because"})
    assert response.status_code == 403
    assert "CSRF" in response.content.decode()
    assert Deployment.objects.get(pk=deployment.pk).state == "pending_approval"
    assert Deployment.objects.count() == 1 and Approval.objects.count() == 0
    assert WebhookDelivery.objects.get().attempts == 1
    assert AuditEvent.objects.count() == audit_before


def test_pages_carry_a_strict_content_security_policy(client_as, seed_topology):
    response = client_as("viewer").get(reverse("home"))
    policy = dict(
        part.strip().split(" ", 1) for part in response["Content-Security-Policy"].split(";")
    )
    assert policy["script-src"] == "'self'"
    assert policy["style-src"] == "'self'"
    assert policy["object-src"] == "'none'"
    assert policy["frame-ancestors"] == "'none'"
    assert "unsafe" not in response["Content-Security-Policy"]
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"


INLINE = [
    (re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)[^>]*>", re.I), "inline <script>"),
    (re.compile(r"\sstyle=", re.I), "style attribute"),
    (re.compile(r"<style", re.I), "<style> element"),
    (re.compile(r"\son[a-z]+=", re.I), "inline event handler"),
    (re.compile(r"hx-on", re.I), "hx-on handler (needs eval)"),
    (re.compile(r"javascript:", re.I), "javascript: URL"),
]


def test_templates_hold_no_inline_script_or_style():
    """The browser tests catch what the CSP refuses at run time; this catches it in every
    template, including the ones no browser test opens."""
    found = []
    for path in sorted((ROOT / "templates").rglob("*.html")):
        text = path.read_text()
        found += [f"{path.relative_to(ROOT)}: {what}" for rx, what in INLINE if rx.search(text)]
    assert not found


def _production(code: str) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter with production settings (DEBUG off)."""
    env = {
        **{
            k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"
        },  # browser tests
        "DEBUG": "0",
        "SECRET_KEY": "k" * 20 + "production-like-key-for-tests-0123456789",
        "ALLOWED_HOSTS": "gantry.example.com",
        "DATABASE_URL": "",
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "GANTRY_VAR_DIR": str(django_settings.VAR_DIR),
    }
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def test_check_deploy_is_clean_with_production_settings():
    done = _production(
        "import sys, django; from django.core.management import call_command;"
        "django.setup(); call_command('check', deploy=True, fail_level='WARNING')"
    )
    assert done.returncode == 0, done.stderr
    assert "no issues" in done.stdout + done.stderr


def test_production_responses_are_https_only():
    done = _production(
        "import json, django; django.setup();"
        "from django.conf import settings;"
        # no collectstatic in tests: plain static storage instead of the hashed manifest
        "settings.STORAGES['staticfiles'] = {'BACKEND': "
        "'django.contrib.staticfiles.storage.StaticFilesStorage'};"
        "from django.test import Client; c = Client(HTTP_HOST='gantry.example.com');"
        "plain = c.get('/login/');"
        "tls = c.get('/login/', secure=True);"
        "cookie = tls.cookies['csrftoken'];"
        "print(json.dumps({'plain': plain.status_code, 'location': plain['Location'],"
        "'hsts': tls['Strict-Transport-Security'], 'secure': cookie['secure'],"
        "'session_secure': __import__('django.conf').conf.settings.SESSION_COOKIE_SECURE}))"
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["plain"] == 301 and seen["location"] == "https://gantry.example.com/login/"
    assert seen["hsts"] == "max-age=31536000; includeSubDomains; preload"
    assert seen["secure"] is True and seen["session_secure"] is True


def test_production_without_a_secret_key_refuses_to_start():
    done = _production("import os, django; os.environ['SECRET_KEY'] = ''; django.setup()")
    assert done.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in done.stderr


@pytest.mark.django_db
def test_repeated_failed_sign_ins_lock_the_account_for_that_address(client, make_user):
    from axes.models import AccessAttempt

    make_user("viewer", "alice", password="correct horse battery")
    for _ in range(django_settings.AXES_FAILURE_LIMIT):
        bad = client.post(reverse("login"), {"username": "alice", "password": "guess-123"})
    assert bad.status_code in (200, 429)
    locked = client.post(
        reverse("login"), {"username": "alice", "password": "correct horse battery"}
    )
    assert locked.status_code == 429
    assert "Sign-in locked" in locked.content.decode()
    assert client.get(reverse("home")).status_code == 302  # still not signed in
    attempts = AccessAttempt.objects.get(username="alice")
    assert attempts.failures_since_start >= django_settings.AXES_FAILURE_LIMIT
    # One when the limit is reached, one for the refused attempt after it.
    assert AuditEvent.objects.filter(action="auth.lockout", actor="alice").count() == 2
    assert AuditEvent.objects.filter(action="auth.login_failed", actor="alice").count() >= 4
    # The same account from another address, and another account, still sign in.
    elsewhere = Client(REMOTE_ADDR="10.1.2.3")
    ok = elsewhere.post(
        reverse("login"), {"username": "alice", "password": "correct horse battery"}
    )
    assert ok.status_code == 302
    make_user("viewer", "bob", password="another good one")
    other = client.post(reverse("login"), {"username": "bob", "password": "another good one"})
    assert other.status_code == 302
    # Nothing kept the password that was tried.
    kept = json.dumps(list(AuditEvent.objects.values()), default=str) + json.dumps(
        list(AccessAttempt.objects.values("post_data", "get_data")), default=str
    )
    assert "guess-123" not in kept and "correct horse battery" not in kept


@pytest.mark.django_db
def test_the_webhook_secret_never_reaches_logs_pages_or_audit(client_as, settings, caplog):
    from github.models import WebhookDelivery
    from tests.github.payloads import post, workflow_run

    secret = "wh-secret-that-must-stay-put-7f3a"
    settings.GANTRY_GITHUB_WEBHOOK_SECRET = secret
    client = client_as("admin", "root")
    with caplog.at_level("DEBUG"):
        post(client, workflow_run(), secret="a-wrong-one", guid="forged-1")
        post(client, workflow_run(), secret=secret, guid="real-1")
        pages = [
            client.get(reverse(name)).content.decode() for name in ("deliveries", "audit", "home")
        ]
    assert WebhookDelivery.objects.count() == 2
    stored = json.dumps(list(WebhookDelivery.objects.values()), default=str) + json.dumps(
        list(AuditEvent.objects.values()), default=str
    )
    for text in (caplog.text, stored, *pages):
        assert secret not in text


@pytest.mark.sqlite_is_enough
def test_docs_security_names_only_tests_that_exist():
    """docs/security.md lists, for each defence, the test that holds it: each must exist."""
    root = Path(__file__).resolve().parents[2]
    text = (root / "docs" / "security.md").read_text()
    named = re.findall(r"`(tests/[\w/]+\.py)(?:::(\w+))?`", text)
    assert len(named) > 40
    missing = [
        f"{path}::{test}"
        for path, test in named
        if not (root / path).exists()
        or (test and not re.search(rf"^def {test}\(", (root / path).read_text(), re.M))
    ]
    assert missing == []
