"""Run the suite on every database in GANTRY_TEST_DATABASES and on SQLite, side by side.

On PostgreSQL and MariaDB only tests that touch the database run again; an unreachable server
is skipped with the reason. SQLite runs everything. The runs go at the same time, each with its
own var/ folder and its own Redis databases, and each writes its log to var/test-logs/; the
logs are printed when all have ended, SQLite's last, so its summary closes the output.
GANTRY_TEST_SERIAL=1 runs them one after another instead, printing as they go.
"""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
LOGS = ROOT / "var" / "test-logs"
DATABASES = {
    "postgres": os.environ.get(
        "GANTRY_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/gantry"
    ),
    "mysql": os.environ.get("GANTRY_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/gantry"),
}
# Redis databases per run, so a test that empties its database never meets another run's keys.
REDIS = os.environ.get("GANTRY_TEST_REDIS_HOST", "redis://127.0.0.1:6379")
REDIS_DBS = {"sqlite": (15, 11), "postgres": (14, 12), "mysql": (13, 10)}


def reachable(url: str) -> str | None:
    """None when a TCP connection to the server opens, else why not."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=2):
            return None
    except OSError as exc:
        return f"{parts.hostname}:{parts.port} unreachable ({exc.strerror or exc})"


def run_env(name: str, url: str) -> dict:
    tests_db, notify_db = REDIS_DBS[name]
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "GANTRY_VAR_DIR": str(ROOT / "var" / f"test-{name}"),
        "GANTRY_TEST_REDIS_URL": f"{REDIS}/{tests_db}",
        "GANTRY_TEST_NOTIFY_REDIS_URL": f"{REDIS}/{notify_db}",
    }
    if name == "sqlite":  # the full run's screenshots are the ones a reviewer looks at
        env.setdefault("GANTRY_SCREENSHOT_DIR", str(ROOT / "var" / "screenshots"))
    else:
        env["GANTRY_TEST_DB_ONLY"] = "1"
    return env


def command(name: str, args: list[str]) -> list[str]:
    """SQLite's full run also lists its slowest tests: where `make test`'s minutes go."""
    quiet = ["-q", "-p", "no:cacheprovider"] if name != "sqlite" else ["--durations=25"]
    return [sys.executable, "-m", "pytest", *quiet, *args]


def main(args: list[str]) -> int:
    runs = {}
    for name in os.environ.get("GANTRY_TEST_DATABASES", "").split():
        if name not in DATABASES:
            print(f"unknown database {name!r} in GANTRY_TEST_DATABASES ({', '.join(DATABASES)})")
            return 2
        if why := reachable(DATABASES[name]):
            print(f"SKIPPED the {name} run: {why}", flush=True)
            continue
        runs[name] = DATABASES[name]
    runs["sqlite"] = ""
    serial = os.environ.get("GANTRY_TEST_SERIAL") == "1"
    return (run_serially if serial else run_side_by_side)(runs, args)


def run_serially(runs: dict, args: list[str]) -> int:
    failed = []
    for name, url in runs.items():
        print(f"=== {name} run ({url or 'embedded'}) ===", flush=True)
        if subprocess.call(command(name, args), cwd=ROOT, env=run_env(name, url)):
            failed.append(name)
    return report(failed)


def run_side_by_side(runs: dict, args: list[str]) -> int:
    LOGS.mkdir(parents=True, exist_ok=True)
    started, running = time.monotonic(), {}
    for name, url in runs.items():
        log = (LOGS / f"{name}.log").open("w")
        process = subprocess.Popen(
            command(name, args), cwd=ROOT, env=run_env(name, url), stdout=log, stderr=log
        )
        running[name] = (process, log, url)
    print(f"running {', '.join(running)} side by side; logs in {LOGS}", flush=True)
    failed = []
    for name, (process, log, _) in running.items():
        if process.wait():
            failed.append(name)
        log.close()
        print(f"  {name} ended after {time.monotonic() - started:.0f} s", flush=True)
    for name, (_, _, url) in running.items():
        print(f"=== {name} run ({url or 'embedded'}) ===", flush=True)
        print((LOGS / f"{name}.log").read_text(), flush=True)
    return report(failed)


def report(failed: list[str]) -> int:
    if failed:
        print(f"FAILED on: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
