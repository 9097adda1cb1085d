"""Smaller holes found by attack (issue tracker, "Smaller holes", item 10): each test here failed
before its fix."""

import re

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.contrib.messages.storage.cookie import CookieStorage
from django.contrib.sessions.models import Session
from django.db import DatabaseError, connection, transaction
from django.test import RequestFactory
from django.urls import reverse

from audit.models import AuditEvent
from deployments.models import Approval, Deployment
from portal.models import ApiToken

pytestmark = pytest.mark.django_db

# --- a. NUL characters in forms and query-string filters -----------------------------------------

# Every page that filters on the query string, and the parameter it filters on.
FILTERS = [
    ("audit", "actor"),
    ("audit", "action"),
    ("audit", "object_id"),
    ("releases", "environment"),
    ("deliveries", "repository"),
    ("deliveries", "guid"),
    ("notifications", "state"),
]


@pytest.fixture
def waiting(make_deployment):
    return make_deployment(state=Deployment.State.PENDING_APPROVAL, approvals_required=1)


def snapshot():
    return (
        AuditEvent.objects.count(),
        Approval.objects.count(),
        list(Deployment.objects.values_list("state", flat=True)),
    )


def nothing_written(before):
    return snapshot() == before


@pytest.mark.parametrize(("name", "param"), FILTERS)
def test_a_nul_in_a_query_string_filter_is_a_400(client_as, seed_topology, name, param):
    client = client_as("admin")
    response = client.get(reverse(name), {param: "x\x00y"})
    assert response.status_code == 400
    assert "NUL" in response.content.decode() and repr(param) in response.content.decode()
    assert client.get(reverse(name), {param: "x"}).status_code == 200  # the filter still works


def test_a_nul_in_a_form_is_a_400_and_writes_nothing(client_as, waiting):
    client = client_as("approver", "bob")
    before = snapshot()
    url = reverse("deployment-decide", args=[waiting.pk])
    response = client.post(url, {"decision": "approve", "comment": "fine\x00"})
    assert response.status_code == 400 and "'comment'" in response.content.decode()
    assert nothing_written(before)
    # The same form without the NUL goes through.
    assert client.post(url, {"decision": "approve", "comment": "fine"}).status_code == 302
    assert Approval.objects.count() == 1


def test_a_nul_at_sign_in_is_a_400_and_counts_nothing(client, make_user):
    from axes.models import AccessAttempt

    make_user("viewer", "alice")
    before = snapshot()
    response = client.post(reverse("login"), {"username": "alice\x00", "password": "x"})
    assert response.status_code == 400
    assert nothing_written(before) and AccessAttempt.objects.count() == 0


def test_a_nul_in_a_field_name_the_path_a_cookie_or_the_api_is_a_400(client_as, seed_topology):
    client = client_as("admin")
    assert client.get(reverse("audit"), {"a\x00": "1"}).status_code == 400
    assert client.get("/environments/prod%00/").status_code == 400
    api = client.get("/api/releases", {"component": "\x00"})
    assert api.status_code == 400 and "NUL" in api.json()["error"]
    assert api.json()["field"] == "component"
    client.cookies["sessionid"] = "x\x00y"  # the session is looked up in the database
    assert client.get(reverse("home")).status_code == 400


def test_on_postgresql_a_nul_would_reach_the_database_and_fail(client_as, waiting):
    """What the 400 stands in front of: PostgreSQL's text cannot hold a NUL, so without the
    check these requests failed with a 500 there."""
    if connection.vendor != "postgresql":
        pytest.skip("only PostgreSQL refuses NUL characters in text; SQLite and MySQL keep them")
    with pytest.raises(DatabaseError, match="NUL"), transaction.atomic():
        list(AuditEvent.objects.filter(actor="x\x00"))
    client = client_as("approver", "bob")
    before = snapshot()
    for name, param in FILTERS:
        assert client.get(reverse(name), {param: "\x00"}).status_code == 400, name
    url = reverse("deployment-decide", args=[waiting.pk])
    assert client.post(url, {"decision": "approve", "comment": "\x00"}).status_code == 400
    assert nothing_written(before)


# --- b. Usernames longer than the lockout's column -----------------------------------------------


def test_an_overlong_username_is_a_failed_sign_in_like_any_other(client, make_user, settings):
    from axes.models import AccessAttempt

    make_user("viewer", "alice", password="correct horse battery")
    name = "a" * 300  # django-axes keeps 255 characters; a username has at most 150
    counted = name[:150]
    bad = client.post(reverse("login"), {"username": name, "password": "guess-123"})
    assert bad.status_code == 200 and "didn't match" in bad.content.decode()
    assert AccessAttempt.objects.get(username=counted).failures_since_start == 1
    assert AuditEvent.objects.filter(action="auth.login_failed", actor=counted).count() == 1
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        last = client.post(reverse("login"), {"username": name, "password": "guess-123"})
    assert last.status_code == 429 and "Sign-in locked" in last.content.decode()
    assert (
        AccessAttempt.objects.get(username=counted).failures_since_start
        == settings.AXES_FAILURE_LIMIT
    )
    assert AuditEvent.objects.filter(action="auth.lockout", actor=counted).count() == 1
    # A username of exactly the longest length still goes through the normal path.
    make_user("viewer", "b" * 150, password="correct horse battery")
    ok = client.post(reverse("login"), {"username": "b" * 150, "password": "correct horse battery"})
    assert ok.status_code == 302


# --- e. Only a superuser hands out privileges in the user admin ----------------------------------


@pytest.fixture
def staff_admin(make_user):
    """An admin-role user with the admin site (is_staff), but not a superuser."""
    user = make_user("admin", "ops-admin")
    user.is_staff = True
    user.save()
    return user


def change_form(user, **changes):
    data = {
        "username": user.username,
        "first_name": "",
        "last_name": "",
        "email": "",
        "is_active": "on",
        "is_staff": "on",
        "is_superuser": "on",
        "groups": [g.pk for g in Group.objects.all()],
        "user_permissions": [p.pk for p in Permission.objects.filter(codename="delete_user")],
        "date_joined_0": "2026-01-01",
        "date_joined_1": "00:00:00",
        "last_login_0": "",
        "last_login_1": "",
        "profile-TOTAL_FORMS": "0",
        "profile-INITIAL_FORMS": "0",
        "profile-MIN_NUM_FORMS": "0",
        "profile-MAX_NUM_FORMS": "1",
    }
    return data | changes


def privileges(user):
    user.refresh_from_db()
    groups = sorted(user.groups.values_list("name", flat=True))
    return user.is_superuser, user.is_staff, groups, list(user.user_permissions.all())


def test_a_staff_admin_cannot_make_themself_or_others_superuser(client, staff_admin, make_user):
    client.force_login(staff_admin)
    url = reverse("admin:auth_user_change", args=[staff_admin.pk])
    page = client.get(url).content.decode()
    assert 'name="is_superuser"' not in page and 'name="groups"' not in page  # read-only
    before = privileges(staff_admin)
    response = client.post(url, change_form(staff_admin, first_name="Ops"))
    assert response.status_code == 302  # the rest of the form is saved
    staff_admin.refresh_from_db()
    assert staff_admin.first_name == "Ops"
    assert privileges(staff_admin) == before == (False, True, ["admin"], [])
    viewer = make_user("viewer", "victor")
    url = reverse("admin:auth_user_change", args=[viewer.pk])
    assert client.post(url, change_form(viewer)).status_code == 302
    assert privileges(viewer) == (False, False, ["viewer"], [])
    new = {"username": "newbie", "usable_password": "true", "is_superuser": "on"}
    new |= {"password1": "a-long-password-1", "password2": "a-long-password-1"}
    assert client.post(reverse("admin:auth_user_add"), new).status_code == 302  # still adds
    assert privileges(User.objects.get(username="newbie")) == (False, False, [], [])


def test_a_staff_admin_cannot_change_a_superuser_or_their_password(client, staff_admin):
    root = User.objects.create_superuser("root", password="root-password-1")
    client.force_login(staff_admin)
    change = client.post(
        reverse("admin:auth_user_change", args=[root.pk]),
        change_form(root, is_superuser="", is_staff="", is_active=""),
    )
    assert change.status_code == 403
    password = client.post(
        reverse("admin:auth_user_password_change", args=[root.pk]),
        {"password1": "taken-over-1", "password2": "taken-over-1", "usable_password": "true"},
    )
    assert password.status_code == 403
    root.refresh_from_db()
    assert root.is_superuser and root.is_active and root.check_password("root-password-1")


def test_a_superuser_still_hands_out_privileges(client, make_user):
    client.force_login(User.objects.create_superuser("root", password="root-password-1"))
    user = make_user("viewer", "promoted")
    url = reverse("admin:auth_user_change", args=[user.pk])
    assert client.post(url, change_form(user)).status_code == 302
    superuser, staff, groups, permissions = privileges(user)
    assert superuser and staff and "admin" in groups and len(permissions) == 1


# --- f. A new API token is shown once, in the page, never in a cookie ----------------------------


def cookie_texts(response):
    """Every cookie the response sets, as sent and, for the messages cookie, decoded (Django
    signs and base64-encodes it, so the token would not show in the raw header)."""
    for morsel in response.cookies.values():
        yield morsel.OutputString()
        decoded = CookieStorage(RequestFactory().get("/"))._decode(morsel.value)
        yield " ".join(str(message) for message in decoded or [])


def test_a_new_api_token_is_shown_in_the_page_and_never_in_a_cookie(client, make_user):
    client.force_login(User.objects.create_superuser("root", password="root-password-1"))
    bot = make_user("ci", "ci-bot")
    response = client.post(
        reverse("admin:portal_apitoken_add"), {"name": "actions", "user": bot.pk}
    )
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    page = response.content.decode()
    raw = re.search(r"gty_[\w-]{43}", page)[0]
    token = ApiToken.objects.get()
    assert (token.name, token.user, token.key_hash) == ("actions", bot, ApiToken.hash(raw))
    assert "not shown again" in page
    assert not any(raw in text for text in cookie_texts(response))
    assert not any(raw in str(s.get_decoded()) for s in Session.objects.all())
    after = client.get(reverse("admin:portal_apitoken_changelist"))
    assert raw not in after.content.decode() and token.key_prefix in after.content.decode()
    assert not any(raw in text for text in cookie_texts(after))
