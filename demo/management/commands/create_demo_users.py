from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand

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
    help = f"Create one demo user per role (password {DEMO_PASSWORD!r}). Idempotent."

    def handle(self, *args, **options):
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
            state = "created" if created else "exists"
            self.stdout.write(f"{username:<10} {role:<9} {state}")
        self.stdout.write(f"demo password for new users: {DEMO_PASSWORD}")
