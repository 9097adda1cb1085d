"""Who an approver is on GitHub comes from the admin, never from their username (issue 13, item
4): the topology's `people:` section or a superuser in the admin. Without a known GitHub login
nobody approves a GitHub-triggered build; logins compare after Unicode normalisation, against
the run's actor and its triggering actor."""

from pathlib import Path

import pytest
import yaml
from django.conf import settings
from django.contrib.auth.models import Group, Permission, User
from django.urls import reverse

from audit.models import AuditEvent
from deployments.approvals import ApprovalError, decide
from deployments.models import Approval, Deployment, Release
from environments.topology import sync_topology
from portal.models import Profile

pytestmark = pytest.mark.django_db

S = Deployment.State
REFUSED = "deployment.approval_refused"
SEED = yaml.safe_load(Path(settings.GANTRY_TOPOLOGY_FILE).read_text())


@pytest.fixture
def person(make_user):
    """person("approver", "bob", login="bob-gh") -> a user in that role; login None: none known."""

    def make(role, username, login=None):
        user = make_user(role, username)
        Profile.objects.filter(user=user).delete()
        if login is not None:
            Profile.objects.create(user=user, github_login=login)
        return user

    return make


@pytest.fixture
def waiting(make_deployment):
    def make(author="dev-alice", **fields):
        deployment = make_deployment(state=S.PENDING_APPROVAL)
        Release.objects.filter(pk=deployment.release_id).update(author=author, **fields)
        deployment.refresh_from_db()
        return deployment

    return make


def load_people(people: dict):
    sync_topology(text=yaml.safe_dump({**SEED, "people": people}, sort_keys=False))


def still_waiting(deployment) -> bool:
    deployment.refresh_from_db()
    return deployment.state == S.PENDING_APPROVAL and not Approval.objects.exists()


def test_an_iap_user_named_by_email_cannot_approve_the_build_of_their_github_self(waiting, person):
    deployment = waiting(author="alice")
    alice = person("approver", "alice@example.com")
    load_people({"alice@example.com": "alice"})
    with pytest.raises(ApprovalError, match=r"You triggered this build \(GitHub user alice\)"):
        decide(deployment.pk, alice, "approve")
    assert still_waiting(deployment)


def test_the_username_no_longer_counts_as_a_github_login(waiting, person):
    deployment = waiting(author="alice")
    alice = person("approver", "alice@example.com")  # no login known: "alice@example.com" != alice
    before = AuditEvent.objects.count()
    with pytest.raises(ApprovalError) as refused:
        decide(deployment.pk, alice, "approve", "lgtm")
    message = str(refused.value)
    assert "Gantry does not know your GitHub login" in message
    assert "people:" in message and "superuser" in message
    assert still_waiting(deployment)
    assert AuditEvent.objects.count() == before + 1
    event = AuditEvent.objects.get(action=REFUSED)
    assert (event.actor, event.object_id, event.message) == (
        "alice@example.com",
        str(deployment.pk),
        message,
    )
    assert event.data == {
        "reason": "no-github-login",
        "author": "alice",
        "triggering_actor": "",
        "comment": "lgtm",
    }


def test_a_webhook_release_without_an_author_needs_a_known_login_too(waiting, person):
    deployment = waiting(author="", source=Release.Source.WEBHOOK)
    with pytest.raises(ApprovalError, match="does not know your GitHub login"):
        decide(deployment.pk, person("approver", "bob"), "approve")
    decide(deployment.pk, person("approver", "carol", login="carol-gh"), "approve")
    deployment.refresh_from_db()
    assert deployment.state == S.QUEUED


def test_a_release_no_github_run_made_is_approved_without_a_login(waiting, person):
    deployment = waiting(author="")  # a manual release: no GitHub actor to tell apart
    decide(deployment.pk, person("approver", "bob"), "approve")
    deployment.refresh_from_db()
    assert deployment.state == S.QUEUED


@pytest.mark.parametrize(
    "author",
    [
        "Dev-Alice",
        " dev-alice",
        "dev-alice ",
        "dev-alice\u200b",
        "\ufeffdev-alice",
        "\uff44\uff45\uff56-alice",
    ],
)
def test_logins_compare_after_normalisation(waiting, person, author):
    deployment = waiting(author=author)
    alice = person("approver", "alice", login="DEV-ALICE")
    with pytest.raises(ApprovalError, match="You triggered this build"):
        decide(deployment.pk, alice, "approve")
    assert still_waiting(deployment)


def test_a_profile_login_with_invisible_characters_still_matches(waiting, person):
    deployment = waiting(author="dev-alice")
    alice = person("approver", "alice", login="dev-al\u200bice")
    with pytest.raises(ApprovalError, match="You triggered this build"):
        decide(deployment.pk, alice, "approve")


def test_the_triggering_actor_cannot_approve_a_run_someone_else_started(waiting, person):
    deployment = waiting(author="release-bot", triggering_actor="dev-alice")
    alice = person("approver", "alice", login="dev-alice")
    with pytest.raises(ApprovalError, match=r"GitHub user dev-alice"):
        decide(deployment.pk, alice, "approve")
    event = AuditEvent.objects.get(action=REFUSED)
    assert (event.data["reason"], event.data["triggering_actor"]) == ("self-approval", "dev-alice")
    decide(deployment.pk, person("approver", "bob", login="bob-gh"), "approve")
    deployment.refresh_from_db()
    assert deployment.state == S.QUEUED


def test_rejecting_needs_no_login(waiting, person):
    deployment = waiting()
    decide(deployment.pk, person("approver", "bob"), "reject", "not now")
    deployment.refresh_from_db()
    assert deployment.state == S.REJECTED
    assert not AuditEvent.objects.filter(action=REFUSED).exists()


def test_an_account_made_after_the_load_gets_its_login_from_the_people_section(waiting):
    load_people({"Alice@Example.com": "dev-alice"})
    alice = User.objects.create_user("alice@example.com")  # as IAP makes it at first sign-in
    alice.groups.add(Group.objects.get_or_create(name="approver")[0])
    profile = Profile.objects.get(user=alice)
    assert (profile.github_login, profile.github_login_source) == ("dev-alice", "topology")
    event = AuditEvent.objects.get(action="profile.github_login")
    assert event.data == {
        "user": "alice@example.com",
        "from": "",
        "to": "dev-alice",
        "source": "topology",
    }
    with pytest.raises(ApprovalError, match="You triggered this build"):
        decide(waiting().pk, User.objects.get(pk=alice.pk), "approve")


# --- the admin ----------------------------------------------------------------------------------


@pytest.fixture
def staff_admin(make_user):
    """A member of the admin role, staff and not a superuser, even granted the profile
    permissions: only a superuser sets GitHub logins, whatever a role grows to hold."""
    user = make_user("admin", "ops")
    user.is_staff = True
    user.save()
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="portal", codename__in=["add_profile", "change_profile"]
        )
    )
    return user


def change_form(client, user, **fields):
    page = client.get(reverse("admin:auth_user_change", args=[user.pk]))
    form = page.context["adminform"].form
    data = {name: form[name].value() for name in form.fields if form[name].value() is not None}
    data.pop("password", None)
    data.update(
        {
            "date_joined_0": user.date_joined.strftime("%Y-%m-%d"),
            "date_joined_1": user.date_joined.strftime("%H:%M:%S"),
            "profile-TOTAL_FORMS": "1",
            "profile-INITIAL_FORMS": str(Profile.objects.filter(user=user).count()),
            "profile-MIN_NUM_FORMS": "0",
            "profile-MAX_NUM_FORMS": "1",
            "profile-0-user": str(user.pk),
            **fields,
        }
    )
    data.pop("last_login", None)
    if profile := Profile.objects.filter(user=user).first():
        data["profile-0-id"] = str(profile.pk)
    return client.post(reverse("admin:auth_user_change", args=[user.pk]), data)


def test_an_admin_role_user_cannot_set_a_github_login_in_the_admin(client, staff_admin, person):
    target = person("approver", "mallory")
    client.force_login(staff_admin)
    page = client.get(reverse("admin:auth_user_change", args=[target.pk]))
    assert page.status_code == 200
    assert "profile-0-github_login" not in page.content.decode()  # shown, not editable
    change_form(client, target, **{"profile-0-github_login": "someone-else"})
    assert not Profile.objects.filter(user=target).exclude(github_login="").exists()
    assert not AuditEvent.objects.filter(action="profile.github_login").exists()


def test_a_superuser_sets_a_github_login_in_the_admin_and_it_is_audited(client, person):
    root = User.objects.create_superuser("root", password="pw-for-tests-1")
    target = person("approver", "alice@example.com")
    client.force_login(root)
    response = change_form(client, target, **{"profile-0-github_login": " Dev-Alice\u200b"})
    assert response.status_code == 302, response.context and response.context["errors"]
    profile = Profile.objects.get(user=target)
    assert (profile.github_login, profile.github_login_source) == ("dev-alice", "admin")
    event = AuditEvent.objects.get(action="profile.github_login")
    assert event.actor == "root"
    assert event.data == {
        "user": "alice@example.com",
        "from": "",
        "to": "dev-alice",
        "source": "admin",
    }


def test_a_superuser_gets_a_clear_error_for_a_login_github_would_refuse(client, person):
    root = User.objects.create_superuser("root", password="pw-for-tests-1")
    target = person("approver", "bob")
    client.force_login(root)
    response = change_form(client, target, **{"profile-0-github_login": "bob smith"})
    assert response.status_code == 200
    assert "is not a GitHub login" in response.content.decode()
    assert not Profile.objects.filter(user=target).exists()
    assert not AuditEvent.objects.filter(action="profile.github_login").exists()
