"""Benchmark: 150 signed-in people polling the dashboards of Gantry served as in production.

gunicorn runs with the Dockerfile's command (4 workers, 2 threads each) and production settings
(DEBUG=0, hashed static files), on PostgreSQL and Redis; SECURE_SSL_REDIRECT=0 and
SECURE_COOKIES=0 because the bench speaks plain HTTP on loopback. The database holds what a day
of running leaves: 24 h of probe samples per component at each environment's probe interval, an
hour of Redis, LLM and instance-group figures (the latest few from real sweeps against the
sandbox and the local Redis, the rest copied from them with jitter), one outage with its status
events, and a prod release waiting for approval.

Locust (headless, bench/dashboard_users.py) then runs N users for --duration seconds, each
signed in by a session cookie made the way `login()` makes one, visiting in turn the overview
page and three polls of its HTMX fragment, one environment's page and three polls of its tiles
(HX-Request: true, with the If-None-Match a browser sends), one component's page, the DORA
insights and the deployments and releases lists, waiting --wait seconds on average between
requests (0: back to back). Meanwhile bench/sweeper.py, in its own process with the same
settings, stamps each environment's readings new at its probe interval by the call the workers'
sweeps make, so the fragments someone looks at are drawn ahead there, as in a worker. Then the
same users, at the same pace, ask for the floor:
GET /login/ when signed in, which passes the whole middleware stack with the session and the
user and answers a redirect without rendering (/healthz would also measure the database and
the broker round trips it checks).

    .venv/bin/python bench/dashboard_load.py [--users 150] [--duration 60] [--wait 5] [--runs 2]
        [--database-url postgres://…/gantry_bench_load] [--redis-url redis://…/8] [--profile]

Writes bench/out/dashboard_load.json (each run, the medians, the load average before each run)
and prints a table. Targets: no errors; dashboard p95 within 3x the floor's p95; Gantry's CPU
(gunicorn's and the sweeper's drawing ahead) per dashboard request within 3x per floor request
(CPU over the whole Locust run, ramp-up included, over the requests counted after it, for both).
"""

import argparse
import csv
import json
import math
import os
import random
import statistics
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, database_label, reachable, setup_django, start_sandbox, write
from serve import (
    DEFAULT_DATABASE,
    DEFAULT_REDIS,
    CpuMeter,
    Gunicorn,
    Profile,
    collectstatic,
    ensure_database,
    load_average,
    machine,
    production_env,
    profile_summary,
)

USERS_FILE = Path(__file__).resolve().parent / "dashboard_users.py"
SCENARIOS = {"dashboard": "DashboardUser", "floor": "FloorUser"}
REAL_SWEEPS = 3


def seed_monitoring(box) -> dict:
    """Real sweeps against the sandbox's stack and the local Redis and MySQL, then 24 h of
    history before them, copied from what the sweeps saw."""
    from django.conf import settings
    from django.db import connection
    from django.utils import timezone

    from environments import cloud, mig, monitoring, stats
    from environments.models import (
        Component,
        Environment,
        HealthEvent,
        ProbeSample,
        StatSample,
        Status,
    )

    settings.GANTRY_PROBE_TARGETS = ",".join(
        f"{env}/{name}=127.0.0.1:{port}"
        for env in ("prod", "dev")
        for name, port in (("redis", 6379), ("mysql", 3306))
    )
    for sweep in range(REAL_SWEEPS):
        for environment in Environment.objects.all():
            monitoring.sweep(environment.pk)
            stats.collect(environment.pk)
            mig.collect(environment.pk)
        if sweep < REAL_SWEEPS - 1:
            time.sleep(1.0)  # the LLM and Redis rates are differences between two readings
    box.advance(3600)  # an hour of Cloud Monitoring, ending now
    box.set_wall_epoch()
    for environment in Environment.objects.all():
        cloud.collect(environment.pk)

    rng = random.Random(7)
    now = timezone.now()
    samples, figures = [], []
    for environment in Environment.objects.all():
        step = timedelta(seconds=environment.probe_interval)
        first = ProbeSample.objects.filter(component__environment=environment).order_by("at")[0].at
        components = list(environment.components.all())
        latest = {c.pk: c.samples.order_by("-at", "-id").first() for c in components}
        outage = next((c for c in components if c.name == "ai-server"), components[0])
        down_from, down_to = now - timedelta(hours=6), now - timedelta(hours=5, minutes=50)
        for i in range(int(24 * 3600 / environment.probe_interval), 0, -1):
            at = first - i * step
            for component in components:
                seen = latest[component.pk]
                if component == outage and down_from <= at < down_to:
                    samples.append(
                        ProbeSample(
                            component=component,
                            at=at,
                            status=Status.DOWN,
                            detail=f"timed out after {settings.GANTRY_PROBE_TIMEOUT:g}s",
                        )
                    )
                    continue
                latency = seen.latency_ms * rng.uniform(0.6, 1.8) if seen.latency_ms else None
                samples.append(
                    ProbeSample(
                        component=component,
                        at=at,
                        status=seen.status,
                        latency_ms=latency,
                        detail=seen.detail,
                    )
                )
        HealthEvent.objects.bulk_create(
            [
                HealthEvent(
                    component=outage,
                    at=down_from + 2 * step,
                    previous=Status.UP,
                    status=Status.DOWN,
                    detail="timed out",
                ),
                HealthEvent(
                    component=outage, at=down_to + 2 * step, previous=Status.DOWN, status=Status.UP
                ),
            ]
        )
        readings = StatSample.objects.filter(component__in=components).order_by("at", "id")
        latest_stats = {(s.component_id, s.kind): s for s in readings}
        first_stat = readings[0].at if readings else first
        for stat in latest_stats.values():
            for i in range(int(3600 / environment.probe_interval), 0, -1):
                data = json.loads(json.dumps(stat.data))
                for name, value in (data.get("figures") or {}).items():
                    if isinstance(value, float):
                        data["figures"][name] = round(value * rng.uniform(0.85, 1.15), 2)
                figures.append(
                    StatSample(
                        component=stat.component,
                        kind=stat.kind,
                        at=first_stat - i * step,
                        ok=stat.ok,
                        data=data,
                        problems=stat.problems,
                    )
                )
    ProbeSample.objects.bulk_create(samples, batch_size=5000)
    StatSample.objects.bulk_create(figures, batch_size=2000)
    with connection.cursor() as cursor:  # as autovacuum would have by now: fresh planner stats
        cursor.execute("ANALYZE")
    return {
        "probe_samples": ProbeSample.objects.count(),
        "stat_samples": StatSample.objects.count(),
        "health_events": HealthEvent.objects.count(),
        "components": Component.objects.count(),
        "statuses_now": {
            f"{env}/{name}": status
            for env, name, status in Component.objects.values_list(
                "environment__name", "name", "health__status"
            )
        },
    }


def seed_release(box) -> None:
    """A prod build waiting for approval, so the dashboards show something deploying."""
    from deployments.releases import create_release
    from environments.models import Component

    component = Component.objects.get(environment__name="prod", name="backend")
    sha = "ab" * 20
    image = f"asia-northeast3-docker.pkg.dev/nemo-dev/registry/{component.image}:{sha}"
    create_release(
        component,
        repository="nemo-team/nemo-api",
        sha=sha,
        branch="main",
        version="b1",
        title="Bench build",
        author="dev-alice",
        image=image,
        digest=box.world.registry.push_new(image),
        source="webhook",
    )


def signed_in_sessions(count: int) -> list[str]:
    """`count` viewers, each with a session made by `login()`, as the sign-in form would leave.
    Their passwords are unusable: no password hashing anywhere in the bench."""
    from django.contrib.auth.models import Group, User
    from django.test import Client

    from portal.roles import sync_roles

    sync_roles()
    viewers = Group.objects.get(name="viewer")
    keys = []
    for n in range(count):
        user = User(username=f"viewer-{n:03d}")
        user.set_unusable_password()
        user.save()
        user.groups.add(viewers)
        client = Client()
        client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
        keys.append(client.cookies["sessionid"].value)
    return keys


def targets() -> dict:
    from environments.models import Environment

    return {
        env.name: sorted(env.components.values_list("name", flat=True))
        for env in Environment.objects.all()
    }


def warm_up(server: Gunicorn, session: str, environments: dict) -> None:
    """Every page the users visit, a few times: each worker has imported and compiled what it
    serves, and what is drawn once per version is drawn, as on a portal people have open."""
    import httpx

    paths = ["/", "/login/", "/insights/", "/deployments/", "/releases/"]
    for env, components in environments.items():
        paths.append(f"/environments/{env}/")
        paths += [f"/environments/{env}/components/{name}/" for name in components]
    with httpx.Client(base_url=server.url, cookies={"sessionid": session}) as client:
        for _ in range(3):
            for path in paths:
                for headers in ({}, {"HX-Request": "true"}):
                    response = client.get(path, headers=headers)
                    if response.status_code not in (200, 302):
                        raise SystemExit(f"warm-up: {path} answered {response.status_code}")


def run_locust(scenario, server, args, folder: Path, env: dict, session: str, pages: dict) -> dict:
    """One headless Locust run; its figures from Locust's CSV after the ramp-up is reset."""
    prefix = folder / scenario
    ramp = math.ceil(args.users / args.spawn_rate)
    command = [
        str(Path(sys.executable).parent / "locust"),
        "-f",
        str(USERS_FILE),
        SCENARIOS[scenario],
        "--headless",
        "--host",
        server.url,
        "--users",
        str(args.users),
        "--spawn-rate",
        str(args.spawn_rate),
        "--run-time",
        f"{args.duration + ramp}s",
        "--reset-stats",
        "--stop-timeout",
        "5",
        "--csv",
        str(prefix),
        "--only-summary",
        "--loglevel",
        "WARNING",
    ]
    import redis

    redis.Redis.from_url(args.redis_url).flushdb()  # nothing drawn or watched from the last run
    if scenario == "dashboard":
        warm_up(server, session, pages)
    before = load_average()
    started = time.monotonic()
    with (
        Profile(server, folder, scenario, enabled=args.profile),
        Sweeps(server.env) as sweeps,
        CpuMeter(server) as cpu,
        open(f"{prefix}.log", "w") as log,
    ):
        subprocess.run(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    wall = time.monotonic() - started
    cpu.used["sweeps"] = round(sweeps.cpu_s, 2)
    rows = list(csv.DictReader(Path(f"{prefix}_stats.csv").read_text().splitlines()))
    log_text = Path(f"{prefix}.log").read_text(errors="replace")
    failures = list(csv.DictReader(Path(f"{prefix}_failures.csv").read_text().splitlines()))

    def figures(row):
        return {
            "requests": int(row["Request Count"]),
            "errors": int(row["Failure Count"]),
            "rps": round(float(row["Requests/s"]), 1),
            "p50_ms": float(row["50%"]),
            "p95_ms": float(row["95%"]),
            "p99_ms": float(row["99%"]),
            "max_ms": round(float(row["Max Response Time"]), 1),
        }

    total = figures(next(row for row in rows if row["Name"] == "Aggregated"))
    profile = profile_summary(sorted(folder.glob(f"py-spy-{scenario}-*.txt")))
    return {
        **total,
        "gantry_cpu_ms_per_request": cpu_ms_per_request({**total, "cpu_s": cpu.used}),
        "load_average_before": before,
        "wall_s": round(wall, 1),
        "by_request": {row["Name"]: figures(row) for row in rows if row["Name"] != "Aggregated"},
        "failures": [
            {"name": f["Name"], "error": f["Error"], "count": int(f["Occurrences"])}
            for f in failures
        ],
        "locust_cpu_warning": "CPU usage above" in log_text,
        "cpu_s": cpu.used,
        **({"profile": profile} if profile else {}),
    }


class Sweeps:
    """While a scenario runs, bench/sweeper.py stamps each environment's readings as new at its
    probe interval in its own process, as the workers' sweeps do: the dashboards' versions move
    on, and they are drawn ahead there for whoever looks. `cpu_s` is what that process used
    (Gantry's CPU too, so it counts with gunicorn's)."""

    def __init__(self, env: dict):
        self.env = env
        self.cpu_s = 0.0

    def __enter__(self):
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve().parent / "sweeper.py")],
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        if self.process.stdout.readline().strip() != "ready":
            raise SystemExit("bench/sweeper.py did not start")
        return self

    def __exit__(self, *exc):
        out, _ = self.process.communicate(timeout=60)
        self.cpu_s = float(out.split()[-1])


def cpu_ms_per_request(figures: dict) -> float | None:
    """Gantry's CPU per request: gunicorn's, and the drawing ahead of the sweeps'."""
    used = figures["cpu_s"]["gunicorn"] + figures["cpu_s"].get("sweeps", 0.0)
    return round(1000 * used / figures["requests"], 2) if figures["requests"] else None


def medians(runs: list[dict], scenario: str) -> dict:
    keys = ("rps", "p50_ms", "p95_ms", "p99_ms", "gantry_cpu_ms_per_request")
    result = {key: round(statistics.median(run[scenario][key] for run in runs), 2) for key in keys}
    result["errors"] = sum(run[scenario]["errors"] for run in runs)
    result["requests"] = sum(run[scenario]["requests"] for run in runs)
    return result


def table(result: dict) -> str:
    lines = [
        f"{'':34} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'errors':>7}",
    ]
    for scenario in SCENARIOS:
        m = result["median"][scenario]
        lines.append(
            f"{scenario + ' (median of runs)':34} {m['rps']:>8} {m['p50_ms']:>8} "
            f"{m['p95_ms']:>8} {m['p99_ms']:>8} {m['errors']:>7}"
        )
    last = result["runs"][-1]["dashboard"]["by_request"]
    for name, f in last.items():
        lines.append(
            f"  {name + ' (last run)':32} {f['rps']:>8} {f['p50_ms']:>8} {f['p95_ms']:>8} "
            f"{f['p99_ms']:>8} {f['errors']:>7}"
        )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=150)
    parser.add_argument(
        "--spawn-rate",
        type=float,
        default=15,
        help="users started per second (people arrive over ~10 s, not all at once); the "
        "figures count from when the last has started",
    )
    parser.add_argument("--duration", type=int, default=60, help="seconds measured per scenario")
    parser.add_argument(
        "--wait",
        type=float,
        default=5.0,
        help="mean seconds between one user's requests (5: the pages' HTMX polling interval)",
    )
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--threads", type=int, help="gunicorn threads (default: the Dockerfile's)")
    parser.add_argument("--workers", type=int, help="gunicorn workers (default: the Dockerfile's)")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS)
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy the gunicorn workers (bench/out/…/py-spy-*.txt, folded stacks)",
    )
    parser.add_argument("--out", default=str(ROOT / "bench" / "out" / "dashboard_load.json"))
    args = parser.parse_args()
    if not args.database_url.startswith("postgres"):
        parser.error("the load bench runs on PostgreSQL (--database-url postgres://…)")
    if not reachable(args.redis_url, 6379):
        raise SystemExit(f"Redis at {args.redis_url} is unreachable")
    ensure_database(args.database_url)

    import redis

    redis.Redis.from_url(args.redis_url).flushdb()
    os.environ.pop("REDIS_URL", None)  # the seeding enqueues nothing anyone should run
    var = setup_django("dashboard_load", args.database_url)
    from portal.celery import app

    app.conf.broker_url = "memory://"

    box = start_sandbox()
    try:
        seeded = seed_monitoring(box)
        seed_release(box)
    finally:
        box.stop()
    sessions = signed_in_sessions(args.users)
    environments = targets()
    (var / "sessions.json").write_text(json.dumps(sessions))
    print(f"seeded {database_label()}: {json.dumps(seeded)}", flush=True)

    # The access log says when each request came and how long the server took (µs), so the
    # slow ones can be placed in time.
    access = "--access-logformat '%(t)s \"%(r)s\" %(s)s %(D)sus %(p)s'"
    env = production_env(var, args.database_url, args.redis_url, GUNICORN_CMD_ARGS=access)
    collectstatic(env)
    server = Gunicorn(env, var / "gunicorn.log", threads=args.threads, workers=args.workers).start()
    locust_env = {
        **os.environ,
        "BENCH_SESSIONS": str(var / "sessions.json"),
        "BENCH_TARGETS": json.dumps(environments),
        "BENCH_WAIT": str(args.wait),
    }
    runs = []
    try:
        for run in range(args.runs):
            folder = var / f"run{run + 1}"
            folder.mkdir()
            runs.append(
                {
                    scenario: run_locust(
                        scenario, server, args, folder, locust_env, sessions[0], environments
                    )
                    for scenario in SCENARIOS
                }
            )
            for scenario, figures in runs[-1].items():
                print(
                    f"run {run + 1}/{args.runs} {scenario}: {figures['rps']} req/s, "
                    f"p50 {figures['p50_ms']} ms, p95 {figures['p95_ms']} ms, "
                    f"p99 {figures['p99_ms']} ms, {figures['errors']} errors "
                    f"(load average before {figures['load_average_before']})",
                    flush=True,
                )
    finally:
        server.stop()

    result = {
        "benchmark": "dashboard_load",
        "machine": machine(),
        "command": " ".join([os.path.relpath(sys.executable, ROOT), *sys.argv]),
        "database": database_label(),
        "redis": args.redis_url,
        "server": "gunicorn "
        + " ".join(server.command[1:])
        + " (DEBUG=0; SECURE_SSL_REDIRECT=0, SECURE_COOKIES=0)",
        "users": args.users,
        "duration_s": args.duration,
        "wait_s": args.wait,
        "floor_view": "GET /login/ signed in (302 to /)",
        "seeded": seeded,
        "runs": runs,
        "median": {scenario: medians(runs, scenario) for scenario in SCENARIOS},
    }
    dashboard, floor = result["median"]["dashboard"], result["median"]["floor"]
    result["p95_ratio"] = (
        round(dashboard["p95_ms"] / floor["p95_ms"], 2) if floor["p95_ms"] else None
    )
    cpu, floor_cpu = dashboard["gantry_cpu_ms_per_request"], floor["gantry_cpu_ms_per_request"]
    result["cpu_ratio"] = round(cpu / floor_cpu, 2) if cpu and floor_cpu else None
    result["target"] = (
        "no errors; dashboard p95 <= 3x the floor's p95; Gantry CPU (gunicorn + drawing ahead) "
        "per dashboard request <= 3x per floor request"
    )
    result["meets_target"] = (
        dashboard["errors"] == 0
        and floor["errors"] == 0
        and result["p95_ratio"] is not None
        and result["p95_ratio"] <= 3.0
        and result["cpu_ratio"] is not None
        and result["cpu_ratio"] <= 3.0
    )
    write(args.out, result)
    print()
    print(table(result))
    print(f"dashboard p95 / floor p95 = {result['p95_ratio']} (target <= 3)")
    print(
        "Gantry CPU per request (gunicorn + drawing ahead): "
        f"dashboard {cpu} ms / floor {floor_cpu} ms = {result['cpu_ratio']} (target <= 3)"
    )
    print(f"dashboards: {'met' if result['meets_target'] else 'MISSED'}")


if __name__ == "__main__":
    main()
