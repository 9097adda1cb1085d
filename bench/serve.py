"""Gantry as production runs it, for the HTTP benches: gunicorn with the Dockerfile's own command
and production settings (DEBUG=0), on PostgreSQL and Redis, on a loopback port.

Plain HTTP on loopback has no TLS in front, so SECURE_SSL_REDIRECT=0 and SECURE_COOKIES=0: the
only two production settings the benches change.
"""

import json
import os
import platform
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE = "postgres://postgres@127.0.0.1:5432/gantry_bench_load"
DEFAULT_REDIS = "redis://127.0.0.1:6379/8"


def ensure_database(url: str) -> None:
    """Create the PostgreSQL database named in `url` when it is missing."""
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    server = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(server, autocommit=True) as connection:
        exists = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [name]
        ).fetchone()
        if not exists:
            connection.execute(f'CREATE DATABASE "{name}"')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def production_env(var: Path, database_url: str, redis_url: str, **extra) -> dict:
    """The environment of a production web or worker process, for loopback and plain HTTP."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "DEBUG": "0",
        "SECRET_KEY": (var / "secret_key").read_text().strip()
        if (var / "secret_key").exists()
        else _new_secret(var),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECURE_SSL_REDIRECT": "0",
        "SECURE_COOKIES": "0",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "GANTRY_VAR_DIR": str(var),
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("GANTRY_TEST_DB_NAME", None)
    env.update({name: str(value) for name, value in extra.items()})
    return env


def _new_secret(var: Path) -> str:
    key = secrets.token_urlsafe(50)
    (var / "secret_key").write_text(key)
    return key


def dockerfile_command() -> list[str]:
    """The Dockerfile's CMD (gunicorn and its options), so the bench serves as the image does."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    found = re.search(r"^CMD\s+(\[.*?\])\s*$", text, re.MULTILINE)
    return json.loads(found.group(1))


def collectstatic(env: dict) -> None:
    """Production serves hashed static files from STATIC_ROOT's manifest, as the image builds."""
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--no-input", "-v", "0"],
        cwd=ROOT,
        env=env,
        check=True,
    )


class Gunicorn:
    """gunicorn started as the Dockerfile starts it, on a free loopback port."""

    def __init__(
        self, env: dict, log: Path, threads: int | None = None, workers: int | None = None
    ):
        self.env, self.log = env, log
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = dockerfile_command()
        command[command.index("--bind") + 1] = f"127.0.0.1:{self.port}"
        if threads:  # to try another setting; the figures in docs/benchmarks.md use the image's
            command[command.index("--threads") + 1] = str(threads)
        if workers:
            command[command.index("--workers") + 1] = str(workers)
        self.command = [str(Path(sys.executable).parent / command[0]), *command[1:]]
        self.process = None

    def start(self, timeout: float = 60.0) -> "Gunicorn":
        import httpx

        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                self.command, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"gunicorn exited with {self.process.returncode}; see {self.log}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise SystemExit(f"gunicorn did not answer /healthz in {timeout:g} s; see {self.log}")

    def worker_pids(self) -> list[int]:
        out = subprocess.run(
            ["ps", "-o", "pid=", "--ppid", str(self.process.pid)], capture_output=True, text=True
        )
        return [int(pid) for pid in out.stdout.split()]

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def percentiles(seconds: list[float]) -> dict:
    """p50/p95/p99/max in milliseconds (nearest rank)."""
    if not seconds:
        return {}
    ordered = sorted(seconds)

    def rank(p):
        return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]

    return {
        "p50_ms": round(rank(50) * 1000, 1),
        "p95_ms": round(rank(95) * 1000, 1),
        "p99_ms": round(rank(99) * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
    }


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def machine() -> dict:
    """What the figures were measured on."""
    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        found = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.MULTILINE)
        model = found.group(1).strip() if found else ""
    memory = ""
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        found = re.search(r"^MemTotal:\s*(\d+) kB", meminfo.read_text(), re.MULTILINE)
        memory = f"{int(found.group(1)) / 2**20:.0f} GiB" if found else ""
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory": memory,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


class CpuMeter:
    """CPU seconds used while the block runs: by gunicorn and its workers; by the load generator
    (this process and its finished children: Locust, the burst's client); by the PostgreSQL
    backends serving the bench's database; by the whole machine (all cores). Backends come and go
    (CONN_MAX_AGE), so they are sampled twice a second and each counted from when first seen."""

    def __init__(self, server: Gunicorn):
        self.server = server
        self.database = " " + urlsplit(server.env["DATABASE_URL"]).path.lstrip("/") + " "
        self.backends: dict[int, list[float]] = {}  # pid -> [first seen, last seen]
        self.stopping = threading.Event()

    def _sample_backends(self, first=False):
        import psutil

        for process in psutil.process_iter(["name", "cmdline"]):
            if process.info["name"] != "postgres":
                continue
            if self.database not in " ".join(process.info["cmdline"] or []):
                continue
            try:
                times = process.cpu_times()
            except psutil.Error:
                continue
            used = times.user + times.system
            seen = self.backends.setdefault(process.pid, [used if first else 0.0, used])
            seen[1] = used

    def _totals(self) -> dict:
        import resource

        import psutil

        def used(process):
            try:
                times = process.cpu_times()
                return times.user + times.system
            except psutil.Error:
                return 0.0

        master = psutil.Process(self.server.process.pid)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        own = resource.getrusage(resource.RUSAGE_SELF)
        machine = psutil.cpu_times()
        return {
            "gunicorn": sum(used(p) for p in [master, *master.children()]),
            "client": children.ru_utime + children.ru_stime + own.ru_utime + own.ru_stime,
            "machine_busy": sum(machine) - machine.idle - getattr(machine, "iowait", 0.0),
        }

    def __enter__(self):
        self._sample_backends(first=True)
        self.before = self._totals()

        def loop():
            while not self.stopping.wait(0.5):
                self._sample_backends()

        self.thread = threading.Thread(target=loop, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        after = self._totals()
        self.stopping.set()
        self.thread.join()
        self._sample_backends()
        self.used = {k: round(v - self.before[k], 1) for k, v in after.items()}
        self.used["postgres"] = round(
            sum(last - first for first, last in self.backends.values()), 1
        )


class Profile:
    """py-spy sampling the gunicorn workers while the block runs; folded stacks per worker."""

    def __init__(self, server: Gunicorn, folder: Path, name: str, enabled: bool = True):
        self.server, self.folder, self.name, self.enabled = server, folder, name, enabled
        self.processes = []

    def __enter__(self):
        if not self.enabled:
            return self
        py_spy = str(Path(sys.executable).parent / "py-spy")
        for pid in self.server.worker_pids():
            out = self.folder / f"py-spy-{self.name}-{pid}.txt"
            command = [py_spy, "record", "--pid", str(pid), "--format", "raw", "--output", str(out)]
            self.processes.append(
                subprocess.Popen(
                    [*command, "--nonblocking"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        time.sleep(0.5)  # py-spy attaches
        return self

    def __exit__(self, *exc):
        for process in self.processes:
            process.send_signal(signal.SIGINT)
        for process in self.processes:
            process.wait(60)


# Where a sampled stack spends its time, first match wins (leaf frame, then anywhere in the stack).
PROFILE_GROUPS = [
    (
        "idle: gunicorn waiting for requests",
        ("leaf", ("selectors.py", "gthread.py:222", "thread.py:81")),
    ),
    ("gunicorn reading and writing sockets", ("leaf", ("gunicorn/",))),
    ("PostgreSQL round trips (waiting in psycopg)", ("leaf", ("psycopg/",))),
    ("Redis round trips (Celery publish, cache, session)", ("leaf", ("redis/", "kombu/"))),
    ("Django ORM building SQL and model objects", ("any", ("django/db/models/",))),
    ("Django templates", ("any", ("django/template/",))),
    ("Celery task publishing (Python)", ("any", ("celery/", "kombu/"))),
]


def profile_summary(files: list[Path], functions=("environments/", "deployments/")) -> dict:
    """py-spy's folded stacks, as shares of samples by group, and the project functions with
    the most samples in and below them."""
    import collections

    groups, inside, total = collections.Counter(), collections.Counter(), 0
    for file in files:
        for line in file.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            frames, count = stack.split(";"), int(count)
            total += count
            for name, (where, marks) in PROFILE_GROUPS:
                look = frames[-1:] if where == "leaf" else frames
                if any(mark in frame for frame in look for mark in marks):
                    groups[name] += count
                    break
            else:
                groups["other Python (middleware, views, logging, JSON)"] += count
            for frame in {f for f in frames if any(f"({p}" in f for p in functions)}:
                inside[frame] += count
    if not total:
        return {}
    return {
        "samples": total,
        "share_by_group": {k: round(v / total, 3) for k, v in groups.most_common()},
        "top_project_functions": {k: round(v / total, 3) for k, v in inside.most_common(12)},
    }
