"""Gantry's roles, as Django groups with permissions.

The groups are kept in line with ROLES after every `migrate`, so a permission added to a role here
reaches every installation without a data migration.
"""

from django.contrib.auth.models import Group, Permission

VIEW = [
    "environments.view_environment",
    "environments.view_network",
    "environments.view_component",
    "audit.view_auditevent",
    "deployments.view_release",
    "deployments.view_deployment",
    "deployments.view_approval",
    "github.view_webhookdelivery",
    "notifications.view_notification",
]
DEPLOY = [
    "deployments.start_deployment",
    "deployments.cancel_deployment",
    "github.retry_webhookdelivery",
]
APPROVE = ["deployments.approve_deployment"]
RELEASE = ["deployments.add_release"]

ROLES = {
    "viewer": VIEW,
    # Service accounts (GitHub Actions) that post releases with an API token.
    "ci": [*VIEW, *RELEASE],
    "deployer": [*VIEW, *DEPLOY],
    "approver": [*VIEW, *APPROVE],
    "admin": [
        *VIEW,
        *DEPLOY,
        *APPROVE,
        *RELEASE,
        "deployments.override_freeze",
        "environments.view_freezewindow",
        "environments.add_freezewindow",
        "environments.change_freezewindow",
        "environments.delete_freezewindow",
        "environments.add_environment",
        "environments.change_environment",
        "environments.delete_environment",
        "environments.add_network",
        "environments.change_network",
        "environments.delete_network",
        "environments.add_component",
        "environments.change_component",
        "environments.delete_component",
        "auth.view_user",
        "auth.add_user",
        "auth.change_user",
        "notifications.view_channel",
        "notifications.add_channel",
        "notifications.change_channel",
        "notifications.delete_channel",
    ],
}


def _permissions(names):
    found = {}
    for name in names:
        app_label, codename = name.split(".")
        found[name] = Permission.objects.filter(
            content_type__app_label=app_label, codename=codename
        ).first()
    return found


def sync_roles():
    """Create the role groups and set their permissions to exactly ROLES. Returns missing ones."""
    missing = []
    for role, names in ROLES.items():
        group, _ = Group.objects.get_or_create(name=role)
        found = _permissions(names)
        missing += [f"{role}: {name}" for name, perm in found.items() if perm is None]
        group.permissions.set([perm for perm in found.values() if perm is not None])
    return missing


def sync_roles_after_migrate(sender, **kwargs):
    """post_migrate runs once per app; permissions of later apps arrive on their own pass."""
    sync_roles()
