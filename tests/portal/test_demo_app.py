"""The demo app (`manage.py sandbox`, `create_demo_users`, `demo_build`) stays out of production.

It is installed with GANTRY_DEMO=1 (`make demo`, Procfile.demo) or, by default, when DEBUG is on
(the tests, a developer's checkout); never with DEBUG=0 and no flag. `create_demo_users` makes a
superuser `admin` with a published password, so it refuses whenever DEBUG is off, installed or
not.

Settings are read from the environment when they are imported, so the configurations are tried
in fresh interpreters with a clean environment: nothing of the developer's or the test run's own
variables leaks in.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.apps import apps
from django.contrib.auth.models import Group
from django.core.management import call_command, get_commands
from django.core.management.base import CommandError

from audit.models import AuditEvent
from demo.management.commands.create_demo_users import DEMO_PASSWORD, DEMO_USERS
from portal.models import github_login

ROOT = Path(__file__).resolve().parents[2]
DEMO_COMMANDS = {"sandbox", "create_demo_users", "demo_build"}
PRODUCTION = {"DEBUG": "0", "SECRET_KEY": "p" * 50, "ALLOWED_HOSTS": "gantry.example.com"}


def _run(args: list[str], env: dict, var_dir: Path) -> subprocess.CompletedProcess:
    """`python ARGS` from the checkout with only `env` (plus PATH and a var/ of its own)."""
    clean = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "GANTRY_VAR_DIR": str(var_dir),
        **env,
    }
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60
    )


# One interpreter per configuration: whether the app is installed, then `manage.py help
# --commands` (what an operator would see).
INSPECT = (
    "import django; django.setup(); from django.apps import apps;"
    "print(apps.is_installed('demo'));"
    "from django.core.management import execute_from_command_line;"
    "execute_from_command_line(['manage.py', 'help', '--commands'])"
)


@pytest.mark.parametrize(
    ("env", "installed"),
    [
        pytest.param(PRODUCTION, False, id="production: DEBUG=0, no flag"),
        pytest.param({}, True, id="embedded default: DEBUG on"),
        pytest.param({"GANTRY_DEMO": "0"}, False, id="DEBUG on, GANTRY_DEMO=0"),
        pytest.param({"GANTRY_DEMO": "1"}, True, id="make demo: GANTRY_DEMO=1"),
        pytest.param({**PRODUCTION, "GANTRY_DEMO": "1"}, True, id="DEBUG=0 GANTRY_DEMO=1"),
    ],
)
def test_which_configurations_install_the_demo_app(env, installed, tmp_path):
    done = _run(["-c", INSPECT], env, tmp_path)
    assert done.returncode == 0, done.stderr
    first, *commands = done.stdout.split()
    assert first == str(installed)
    assert "migrate" in commands  # the listing itself worked
    assert set(commands) & DEMO_COMMANDS == (DEMO_COMMANDS if installed else set())


def test_production_does_not_know_create_demo_users(tmp_path):
    done = _run(["manage.py", "create_demo_users"], PRODUCTION, tmp_path)
    assert done.returncode == 1
    assert "Unknown command: 'create_demo_users'" in done.stderr


def test_create_demo_users_refuses_with_debug_off_even_when_installed(tmp_path):
    """DEBUG=0 with GANTRY_DEMO=1: the app is there, the command still says no, before it
    touches the database (none is even set up here)."""
    done = _run(["manage.py", "create_demo_users"], {**PRODUCTION, "GANTRY_DEMO": "1"}, tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "create_demo_users refused: DEBUG is off" in done.stderr
    assert "createsuperuser" in done.stderr
    assert not (tmp_path / "gantry.sqlite3").exists()


def test_the_test_run_has_the_demo_app():
    """tests/matrix.py and `make test` run the suite with DEBUG on: the demo app's tests (and
    tests/sandbox's `manage.py sandbox`) find it."""
    assert apps.is_installed("demo")
    assert set(get_commands()) >= DEMO_COMMANDS


def test_the_demo_sets_the_flag():
    """Every place that runs a demo command sets GANTRY_DEMO=1, so the demo does not depend on
    DEBUG's default."""
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo: export GANTRY_DEMO := 1$", makefile, re.M)
    procfile = (ROOT / "Procfile.demo").read_text().splitlines()
    runs = [
        line
        for line in procfile
        if not line.startswith("#")
        and re.search(rf"manage\.py ({'|'.join(DEMO_COMMANDS)})\b", line)
    ]
    assert runs
    for line in runs:
        assert re.match(r"^\w+: GANTRY_DEMO=1 ", line), line


def _snapshot(django_user_model):
    return {
        "users": django_user_model.objects.count(),
        "groups": Group.objects.count(),
        "memberships": django_user_model.groups.through.objects.count(),
        "rows": sorted(
            django_user_model.objects.values_list(
                "username", "password", "is_staff", "is_superuser"
            )
        ),
    }


@pytest.mark.sqlite_is_enough
def test_create_demo_users_with_debug_off_changes_nothing(django_user_model, settings):
    settings.DEBUG = False
    admin = django_user_model.objects.create_user("admin", password="the-real-admin-pw-1")
    django_user_model.objects.create_user("viewer", password="someone-elses-pw-1")
    before = _snapshot(django_user_model)

    with pytest.raises(CommandError, match=r"refused: DEBUG is off"):
        call_command("create_demo_users", stdout=None)

    assert _snapshot(django_user_model) == before
    admin.refresh_from_db()
    assert admin.check_password("the-real-admin-pw-1")
    assert not admin.check_password(DEMO_PASSWORD)
    assert not admin.is_superuser and not admin.is_staff
    assert not admin.groups.exists()


@pytest.mark.sqlite_is_enough
def test_create_demo_users_with_debug_on_still_works(django_user_model, settings):
    settings.DEBUG = True
    call_command("create_demo_users", stdout=None)
    call_command("create_demo_users", stdout=None)
    users = {u.username: u for u in django_user_model.objects.all()}
    assert set(users) == {username for username, _ in DEMO_USERS}
    for username, role in DEMO_USERS:
        assert users[username].check_password(DEMO_PASSWORD)
        assert [g.name for g in users[username].groups.all()] == [role]
        # Known on GitHub, as a superuser would set it, so the demo's approvers can approve.
        assert github_login(users[username]) == f"demo-{username}"
    assert users["admin"].is_superuser
    assert AuditEvent.objects.filter(action="profile.github_login").count() == len(DEMO_USERS)
