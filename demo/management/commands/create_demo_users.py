from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError

from portal.models import Profile
from portal.roles import ROLES, sync_roles

DEMO_PASSWORD = "gantry-demo"
DEMO_USERS = [
    ("viewer", "viewer"),
    ("deployer", "deployer"),
    ("approver", "approver"),
    ("approver2", "approver"),
    ("admin", "admin"),
]


class Command(BaseCommand):
    help = (
        f"Create one demo user per role (password {DEMO_PASSWORD!r}). Idempotent. "
        "Demo and tests only: refused when DEBUG is off."
    )

    def handle(self, *args, **options):
        # Before anything is written: the demo's `admin` is a superuser with a published
        # password, and an existing `admin` would be made one. Never where DEBUG is off.
        if not settings.DEBUG:
            raise CommandError(
                "create_demo_users refused: DEBUG is off. It makes a superuser 'admin' (and takes "
                f"over an existing one) with the published password {DEMO_PASSWORD!r}, so it runs "
                "only for the demo and the tests (DEBUG=1). Create real accounts with "
                "`manage.py createsuperuser` or in the admin. Nothing was changed."
            )
        sync_roles()
        User = get_user_model()
        for username, role in DEMO_USERS:
            assert role in ROLES
            user, created = User.objects.get_or_create(username=username)
            if created:
                user.set_password(DEMO_PASSWORD)
            user.is_staff = user.is_superuser = role == "admin"
            user.save()
            user.groups.set([Group.objects.get(name=role)])
            # As a superuser would set it: without a known GitHub login nobody may approve a
            # build a GitHub run made (deployments/approvals.py).
            profile, _ = Profile.objects.get_or_create(user=user)
            profile.set_github_login(f"demo-{username}", Profile.Source.ADMIN)
            state = "created" if created else "exists"
            self.stdout.write(f"{username:<10} {role:<9} GitHub demo-{username:<10} {state}")
        self.stdout.write(f"demo password for new users: {DEMO_PASSWORD}")
