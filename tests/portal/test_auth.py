import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.urls import reverse

from portal.roles import ROLES, sync_roles

pytestmark = pytest.mark.django_db

# Who may reach which URL is tested by the table in test_permissions.py.


@pytest.mark.parametrize("role", list(ROLES))
def test_every_role_sees_the_environments(client_as, seed_topology, role):
    response = client_as(role).get(reverse("home"))
    assert response.status_code == 200
    page = response.content.decode()
    assert page.count('class="card environment-summary"') == 2
    assert page.count('<span class="dot"></span>') == 12
    for text in (
        "Service VPC (VPC1)",
        "AI VPC (VPC2)",
        "2 zones",
        "Service tier",
        "AI tier",
        "deploys need 1 approval",
        "deploys automatically",
        "Spring Boot API",
        "unknown",
    ):
        assert text in page


def test_home_query_count_does_not_grow_with_components(
    client_as, seed_topology, django_assert_num_queries
):
    from django.core.cache import cache
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from environments.models import Component

    client = client_as("viewer")
    client.get(reverse("home"))
    cache.clear()  # measure the page drawn, not served from what the last one drew
    with CaptureQueriesContext(connection) as with_12:
        client.get(reverse("home"))
    template = Component.objects.get(environment__name="prod", name="mysql")
    for n in range(48):
        template.pk, template.name, template.port = None, f"extra-{n}", 10000 + n
        template.save()
    # New components are a new version: the next page draws them without being told to.
    with django_assert_num_queries(len(with_12)):
        page = client.get(reverse("home")).content.decode()
    assert page.count('<span class="dot"></span>') == 60


def test_environment_and_component_pages(client_as, seed_topology):
    client = client_as("viewer")
    page = client.get(reverse("environment", args=["prod"])).content.decode()
    assert "peered with" in page and "nemo-ai-vpc" in page
    page = client.get(reverse("component", args=["prod", "ai-server"])).content.decode()
    assert "nemo-ai-blue-mig" in page and "nemo-ai-bes" in page
    assert client.get(reverse("component", args=["prod", "nope"])).status_code == 404
    assert client.get(reverse("environment", args=["staging"])).status_code == 404


def test_sign_in_and_out(client, make_user):
    make_user("viewer", "alice", password="correct horse battery")
    bad = client.post(reverse("login"), {"username": "alice", "password": "wrong"})
    assert bad.status_code == 200 and "didn't match" in bad.content.decode()
    good = client.post(reverse("login"), {"username": "alice", "password": "correct horse battery"})
    assert good.status_code == 302 and good["Location"] == reverse("home")
    assert client.get(reverse("home")).status_code == 200
    assert client.get(reverse("logout")).status_code == 405  # sign-out is a POST (CSRF-protected)
    client.post(reverse("logout"))
    assert client.get(reverse("home")).status_code == 302


def test_roles_exist_with_every_permission_they_name():
    assert sync_roles() == []
    admin_perms = set(
        Group.objects.get(name="admin").permissions.values_list("codename", flat=True)
    )
    viewer_perms = set(
        Group.objects.get(name="viewer").permissions.values_list("codename", flat=True)
    )
    assert "change_component" in admin_perms and "change_component" not in viewer_perms
    assert viewer_perms == {
        "view_environment",
        "view_network",
        "view_component",
        "view_auditevent",
        "view_release",
        "view_deployment",
        "view_approval",
        "view_webhookdelivery",
        "view_notification",
    }
    deployer = set(
        Group.objects.get(name="deployer").permissions.values_list("codename", flat=True)
    )
    approver = set(
        Group.objects.get(name="approver").permissions.values_list("codename", flat=True)
    )
    assert "start_deployment" in deployer and "approve_deployment" not in deployer
    assert "approve_deployment" in approver and "start_deployment" not in approver


def test_create_demo_users_is_idempotent(django_user_model, settings):
    settings.DEBUG = True  # the demo command refuses to run with DEBUG off
    call_command("create_demo_users", stdout=None)
    call_command("create_demo_users", stdout=None)
    users = django_user_model.objects.order_by("username")
    assert [(u.username, [g.name for g in u.groups.all()]) for u in users] == [
        ("admin", ["admin"]),
        ("approver", ["approver"]),
        ("approver2", ["approver"]),
        ("deployer", ["deployer"]),
        ("viewer", ["viewer"]),
    ]
    assert users.get(username="admin").is_superuser
    assert not users.get(username="approver").is_staff
