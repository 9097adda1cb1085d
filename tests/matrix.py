"""Run the suite on every database in GANTRY_TEST_DATABASES, then on SQLite.

On PostgreSQL and MariaDB only tests that touch the database run again; an unreachable server
is skipped with the reason. SQLite runs last and runs everything, so its summary closes the log.
"""

import os
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
DATABASES = {
    "postgres": os.environ.get(
        "GANTRY_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/gantry"
    ),
    "mysql": os.environ.get("GANTRY_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/gantry"),
}


def reachable(url: str) -> str | None:
    """None when a TCP connection to the server opens, else why not."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=2):
            return None
    except OSError as exc:
        return f"{parts.hostname}:{parts.port} unreachable ({exc.strerror or exc})"


def pytest(extra_env: dict, args: list[str]) -> int:
    env = {**os.environ, **extra_env}
    command = [sys.executable, "-m", "pytest", *args]
    return subprocess.call(command, cwd=ROOT, env=env)


def main(args: list[str]) -> int:
    failed = []
    for name in os.environ.get("GANTRY_TEST_DATABASES", "").split():
        if name not in DATABASES:
            print(f"unknown database {name!r} in GANTRY_TEST_DATABASES ({', '.join(DATABASES)})")
            return 2
        url = DATABASES[name]
        if why := reachable(url):
            print(f"SKIPPED the {name} run: {why}", flush=True)
            continue
        print(f"=== database run: {name} ({url}) ===", flush=True)
        if pytest({"DATABASE_URL": url, "GANTRY_TEST_DB_ONLY": "1"}, ["-q", *args]):
            failed.append(name)
    print("=== full run: sqlite ===", flush=True)
    env = {"DATABASE_URL": ""}
    if pytest(env, args):
        failed.append("sqlite")
    if failed:
        print(f"FAILED on: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
