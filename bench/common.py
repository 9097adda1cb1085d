"""Set-up the deployment benches share: a fresh database with the topology loaded, the sandbox,
and the JSON they leave in bench/out/."""

import json
import logging
import os
import shutil
import socket
import sys
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port or default_port), timeout=1):
            return True
    except OSError:
        return False


def setup_django(name: str, database_url: str) -> Path:
    """Django on a fresh database: `database_url`, or a new SQLite file in var/bench/<name>/.

    A server database is emptied first, so its name must say it is for benches (contain
    "bench"): the bench never wipes a database someone works in. Returns the var folder (cache,
    SQLite broker, SQLite file, worker logs)."""
    var = ROOT / "var" / "bench" / name
    shutil.rmtree(var, ignore_errors=True)
    var.mkdir(parents=True)
    if database_url and "bench" not in urlsplit(database_url).path:
        raise SystemExit(
            f"{database_url.split('@')[-1]}: the bench empties its database first; "
            "give one whose name contains 'bench' (e.g. gantry_bench)"
        )
    os.environ.update(
        {
            "GANTRY_VAR_DIR": str(var),
            "DATABASE_URL": database_url,
            "DJANGO_SETTINGS_MODULE": "portal.settings",
        }
    )
    import django

    django.setup()
    logging.disable(logging.INFO)
    from django.conf import settings
    from django.core.management import call_command

    from environments.models import FreezeWindow
    from environments.topology import sync_topology

    call_command("migrate", verbosity=0)
    if database_url:
        call_command("flush", interactive=False, verbosity=0)
    sync_topology(settings.GANTRY_TOPOLOGY_FILE)
    FreezeWindow.objects.update(enabled=False)  # a bench must not depend on the weekday
    return var


def database_label() -> str:
    from django.db import connection

    return f"{connection.vendor} {connection.settings_dict['NAME']}"


def start_sandbox(**options):
    """A sandbox on a free loopback port, with Django's GCP endpoints pointed at it."""
    from django.conf import settings

    from sandbox.server import Sandbox

    box = Sandbox(host="127.0.0.1", port=0, **options).start()
    for name, value in box.urls().items():
        setattr(settings, name, value)
    return box


def write(path: str, result: dict) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
