"""The GitHub models moved from `deployments` to `github` without losing a row, a link or a
permission: rows written at the old place are read through the new models after `migrate`."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

BEFORE = [
    ("deployments", "0005_freeze_override"),
    ("environments", "0006_freeze_windows"),
    ("contenttypes", "0002_remove_content_type_name"),
    ("auth", "0012_alter_user_first_name_max_length"),
]


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state([t for t in targets if t[1]]).apps


@pytest.fixture
def back_to_latest():
    """Whatever the test does to the schema, the suite after it gets every migration applied."""
    yield
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True)
def test_rows_links_and_permissions_survive_the_move(back_to_latest):
    old = _migrate([("github", None), *BEFORE])
    ContentType = old.get_model("contenttypes", "ContentType")
    Permission = old.get_model("auth", "Permission")
    Group = old.get_model("auth", "Group")
    # Migrating back moved the content types back; an old installation has them here too.
    delivery_type, _ = ContentType.objects.get_or_create(
        app_label="deployments", model="webhookdelivery"
    )
    viewing, _ = Permission.objects.get_or_create(
        content_type=delivery_type, codename="view_webhookdelivery", defaults={"name": "Can view"}
    )
    Group.objects.create(name="viewers-before").permissions.add(viewing)

    Environment = old.get_model("environments", "Environment")
    Component = old.get_model("environments", "Component")
    Release = old.get_model("deployments", "Release")
    Deployment = old.get_model("deployments", "Deployment")
    OldDelivery = old.get_model("deployments", "WebhookDelivery")
    environment = Environment.objects.create(name="prod", display_name="Production")
    network = old.get_model("environments", "Network").objects.create(
        environment=environment, name="service", vpc="nemo-service"
    )
    component = Component.objects.create(
        environment=environment, network=network, name="backend", port=8080
    )
    release = Release.objects.create(
        component=component, repository="o/r", branch="main", sha="a" * 40, digest="sha256:1"
    )
    deployment = Deployment.objects.create(release=release, component=component)
    delivery = OldDelivery.objects.create(guid="g-1", event="workflow_run", outcome="released")
    delivery.releases.add(release)
    rule = old.get_model("deployments", "ProtectionRule").objects.create(
        delivery=delivery,
        repository="o/r",
        sha="a" * 40,
        environment=environment,
        github_environment="prod",
        callback_url="https://api.github.test/repos/o/r/actions/runs/1/deployment_protection_rule",
        deployment=deployment,
    )
    link = old.get_model("deployments", "GitHubDeployment").objects.create(
        deployment=deployment, repository="o/r", environment="prod", github_id=77
    )
    link.statuses.create(state="success", gantry_state="succeeded", posted_at=timezone.now())

    new = _migrate(
        [("github", "0001_moved_from_deployments"), ("deployments", "0007_github_models_moved")]
    )
    moved = new.get_model("github", "WebhookDelivery").objects.get()
    assert (moved.guid, moved.outcome) == ("g-1", "released")
    assert list(moved.releases.values_list("pk", flat=True)) == [release.pk]
    moved_rule = new.get_model("github", "ProtectionRule").objects.get()
    assert (moved_rule.pk, moved_rule.delivery_id, moved_rule.deployment_id) == (
        rule.pk,
        moved.pk,
        deployment.pk,
    )
    moved_link = new.get_model("github", "GitHubDeployment").objects.get()
    assert (moved_link.github_id, moved_link.statuses.count()) == (77, 1)
    NewContentType = new.get_model("contenttypes", "ContentType")
    assert NewContentType.objects.get(pk=delivery_type.pk).app_label == "github"
    group = new.get_model("auth", "Group").objects.get(name="viewers-before")
    assert list(group.permissions.values_list("content_type__app_label", "codename")) == [
        ("github", "view_webhookdelivery")
    ]
    tables = connection.introspection.table_names()
    assert "github_webhookdelivery_releases" in tables
    assert not [t for t in tables if t.startswith("deployments_") and "github" in t]
    assert "deployments_webhookdelivery" not in tables
