"""Benchmark: a burst of signed GitHub `workflow_run` deliveries at the webhook, as fast as 50
connections can send them, against Gantry served as in production.

gunicorn runs with the Dockerfile's command (4 workers, 2 threads each) and production settings
(DEBUG=0) on PostgreSQL and Redis; SECURE_SSL_REDIRECT=0 and SECURE_COOKIES=0 because the bench
speaks plain HTTP on loopback. The plan (tests/github/burst.py, seeded): 10% re-sent copies
(same X-GitHub-Delivery id), 5% wrong signatures (half replay a real delivery's id and body), 5%
signed bodies that are not JSON, the rest distinct successful builds of the topology's
repositories on `main` (prod) and `develop` (dev), whose images are pushed to the sandbox
registry first. Bodies and signatures are made before the clock starts; aiohttp sends them.

Two phases, measured apart:
1. Intake: the burst itself. The web answers after checking, recording and enqueueing (Redis);
   no worker runs, so the queue must then hold exactly one `resolve_delivery` per real delivery.
2. Resolution: then a real Celery worker (Procfile.demo's options) starts against the sandbox
   registry and drains the queue; dev releases also queue deployments, whose steps the same
   worker runs against the sandbox as they come. Timed until no delivery is left unresolved.
After each phase the database must hold exactly what the plan says (see burst.check_database).

    .venv/bin/python bench/webhook_burst.py [--deliveries 2000] [--connections 50] [--runs 2]
        [--seed S] [--settle LOAD] [--database-url postgres://…/gantry_bench_load]
        [--redis-url redis://…/8]

Beside each burst, in the same run and on the same server, the floor: the same deliveries sent
the same way to a bare Django view that checks the same HMAC and makes one INSERT in one
transaction (bench/floor_urls.py; the server runs bench/floor_settings.py, production settings
plus that one URL). gunicorn's CPU per delivery is measured for both.

Writes bench/out/webhook_burst.json; exits 1 if any check fails. Targets (issue 17): Gantry's
intake at least half the floor's deliveries/s, and its p99 within 3x the floor's, with nothing
lost or doubled; the old absolute figure (300 deliveries/s) is reported beside them.
"""

import argparse
import asyncio
import os
import random
import secrets
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, database_label, reachable, setup_django, start_sandbox, write
from serve import (
    DEFAULT_DATABASE,
    DEFAULT_REDIS,
    CpuMeter,
    Gunicorn,
    Profile,
    ensure_database,
    load_average,
    machine,
    percentiles,
    production_env,
    profile_summary,
)

TARGET_PER_S = 300
WORKER_OPTIONS = ["-Q", "celery,notifications", "--concurrency=2", "--pool=threads"]


async def send_burst(url: str, deliveries, connections: int):
    """Each delivery once, `connections` at a time: [(status, outcome)], [seconds], wall time."""
    import aiohttp

    answers = [None] * len(deliveries)
    latencies = [0.0] * len(deliveries)
    queue = asyncio.Queue()
    for index in range(len(deliveries)):
        queue.put_nowait(index)
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def sender():
            while not queue.empty():
                index = queue.get_nowait()
                delivery = deliveries[index]
                started = time.perf_counter()
                async with session.post(url, data=delivery.body, headers=delivery.headers()) as r:
                    body = await r.json(content_type=None)
                latencies[index] = time.perf_counter() - started
                answers[index] = (r.status, body.get("outcome"))

        started = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(connections)))
        wall = time.perf_counter() - started
    return answers, latencies, wall


def reset_database() -> None:
    from django.conf import settings
    from django.core.management import call_command

    from environments.models import FreezeWindow
    from environments.topology import sync_topology

    call_command("flush", interactive=False, verbosity=0)
    sync_topology(settings.GANTRY_TOPOLOGY_FILE)
    FreezeWindow.objects.update(enabled=False)


def warm_up(url: str, secret: str) -> None:
    """A few pings through every worker, so the burst does not pay for first imports."""
    import httpx

    from github.payloads import sign

    body = b'{"zen": "Keep it logically awesome.", "hook_id": 1}'
    headers = {"X-GitHub-Event": "ping", "X-Hub-Signature-256": sign(secret, body)}
    with httpx.Client() as client:
        for n in range(40):
            headers["X-GitHub-Delivery"] = f"warm-up-{n}"
            response = client.post(url, content=body, headers=headers)
            if response.status_code != 200:
                raise SystemExit(f"warm-up ping answered {response.status_code}: {response.text}")


def queued_messages(redis_url: str) -> int:
    import redis

    return redis.Redis.from_url(redis_url).llen("celery")


def resolve_with_worker(env: dict, log: Path, timeout: float) -> dict:
    """Start a Celery worker, wait until no delivery is left accepted, stop it."""
    from deployments.models import Release
    from github.models import WebhookDelivery

    command = [sys.executable, "-m", "celery", "-A", "portal", "worker", *WORKER_OPTIONS]
    command += ["--without-heartbeat", "--without-gossip", "--without-mingle", "-l", "info"]
    started = time.monotonic()
    with open(log, "w") as out:
        worker = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        pending = WebhookDelivery.objects.filter(outcome=WebhookDelivery.Outcome.ACCEPTED)
        while pending.exists() and time.monotonic() - started < timeout:
            if worker.poll() is not None:
                raise SystemExit(f"the worker exited with {worker.returncode}; see {log}")
            time.sleep(0.2)
        wall = time.monotonic() - started
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
    first = Release.objects.order_by("created_at").values_list("created_at", flat=True).first()
    last = Release.objects.order_by("-created_at").values_list("created_at", flat=True).first()
    span = (last - first).total_seconds() if first and last else 0.0
    text = log.read_text(errors="replace")
    return {
        "wall_s_with_worker_start": round(wall, 2),
        "first_to_last_release_s": round(span, 2),
        "releases_per_s": round((Release.objects.count() - 1) / span, 1) if span else None,
        "tasks_succeeded": {
            name.rsplit(".", 1)[1]: sum(
                f"Task {name}[" in line and "succeeded" in line for line in text.splitlines()
            )
            for name in (
                "github.tasks.resolve_delivery",
                "deployments.tasks.advance_deployment",
            )
        },
        "unresolved": pending.count(),
    }


def settle(limit: float, timeout: float = 300.0) -> None:
    """Wait (up to `timeout` s) until the 1-minute load average is below `limit`: the previous
    run's worker, or anyone else on the machine, is done."""
    deadline = time.monotonic() + timeout
    while load_average()[0] >= limit and time.monotonic() < deadline:
        time.sleep(5)


def bare_burst(server, deliveries, connections: int) -> dict:
    """The same deliveries at the floor view, timed as the burst is; its rows dropped after."""
    from django.db import connection

    from bench.floor_urls import CREATE, TABLE

    with connection.cursor() as cursor:
        cursor.execute(CREATE)
        cursor.execute(f"TRUNCATE {TABLE}")
    url = f"{server.url}/bench/bare-webhook/"
    asyncio.run(send_burst(url, deliveries[:80], connections))  # every worker has served it
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {TABLE}")
    with CpuMeter(server) as cpu:
        answers, latencies, wall = asyncio.run(send_burst(url, deliveries, connections))
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {TABLE}")
        stored = cursor.fetchone()[0]
        cursor.execute(f"TRUNCATE {TABLE}")
    accepted = sum(1 for status, _ in answers if status == 202)
    if stored != accepted:
        raise SystemExit(f"the floor view answered 202 to {accepted} but stored {stored}")
    return {
        "wall_s": round(wall, 3),
        "deliveries_per_s": round(len(deliveries) / wall, 1),
        **percentiles(latencies),
        "accepted": accepted,
        "gunicorn_cpu_ms_per_delivery": round(1000 * cpu.used["gunicorn"] / len(deliveries), 2),
    }


def one_run(number, args, server, worker_env, box) -> dict:
    from collections import Counter

    import redis

    from deployments.models import Deployment
    from tests.github import burst

    redis.Redis.from_url(args.redis_url).flushdb()
    reset_database()
    url = f"{server.url}/webhooks/github/"
    warm_up(url, worker_env["GANTRY_GITHUB_WEBHOOK_SECRET"])
    reset_database()
    seed = args.seed + number
    deliveries = burst.plan(args.deliveries, worker_env["GANTRY_GITHUB_WEBHOOK_SECRET"], seed)
    for delivery in deliveries:
        if delivery.kind == burst.VALID:
            box.world.registry.push_new(delivery.image)

    if args.settle:
        settle(args.settle)
    floor = bare_burst(server, deliveries, args.connections)
    before = load_average()
    with (
        Profile(server, server.log.parent, f"burst{number + 1}", enabled=args.profile),
        CpuMeter(server) as cpu,
    ):
        answers, latencies, wall = asyncio.run(send_burst(url, deliveries, args.connections))
    violations = burst.check_answers(deliveries, answers)
    violations += [f"after intake: {p}" for p in burst.check_database(deliveries, resolved=False)]
    queued = queued_messages(args.redis_url)
    if queued != burst.count(deliveries)[burst.VALID]:
        violations.append(
            f"{queued} resolve tasks queued, expected {burst.count(deliveries)[burst.VALID]}"
        )

    resolution = resolve_with_worker(
        worker_env, server.log.parent / f"worker{number}.log", args.resolve_timeout
    )
    violations += [
        f"after resolution: {p}" for p in burst.check_database(deliveries, resolved=True)
    ]
    redis.Redis.from_url(args.redis_url).flushdb()
    intake = {
        "deliveries": len(deliveries),
        "wall_s": round(wall, 3),
        "deliveries_per_s": round(len(deliveries) / wall, 1),
        **percentiles(latencies),
        "answers": {str(k): v for k, v in sorted(Counter(s for s, _ in answers).items())},
        "queued_resolve_tasks": queued,
        "cpu_s": cpu.used,
        "gunicorn_cpu_ms_per_delivery": round(1000 * cpu.used["gunicorn"] / len(deliveries), 2),
    }
    if args.profile:
        intake["profile"] = profile_summary(
            sorted(server.log.parent.glob(f"py-spy-burst{number + 1}-*.txt"))
        )
    return {
        "seed": seed,
        "planned": dict(burst.count(deliveries)),
        "load_average_before": before,
        "intake": intake,
        "floor": floor,
        "resolution": resolution,
        "deployments_by_state": dict(Counter(Deployment.objects.values_list("state", flat=True))),
        "violations": violations,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=None, help="default: a random one")
    parser.add_argument(
        "--profile", action="store_true", help="py-spy the gunicorn workers during each burst"
    )
    parser.add_argument("--resolve-timeout", type=float, default=600.0)
    parser.add_argument(
        "--settle",
        type=float,
        metavar="LOAD",
        help="before each burst, wait until the 1-minute load average is below LOAD",
    )
    parser.add_argument("--threads", type=int, help="gunicorn threads (default: the Dockerfile's)")
    parser.add_argument("--workers", type=int, help="gunicorn workers (default: the Dockerfile's)")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS)
    parser.add_argument("--out", default=str(ROOT / "bench" / "out" / "webhook_burst.json"))
    args = parser.parse_args()
    args.seed = args.seed if args.seed is not None else random.SystemRandom().randrange(10**6)
    if not args.database_url.startswith("postgres"):
        parser.error("the burst runs on PostgreSQL (--database-url postgres://…)")
    if not reachable(args.redis_url, 6379):
        raise SystemExit(f"Redis at {args.redis_url} is unreachable")
    ensure_database(args.database_url)

    os.environ.pop("REDIS_URL", None)  # this process only checks rows; it enqueues nothing
    var = setup_django("webhook_burst", args.database_url)
    from portal.celery import app

    app.conf.broker_url = "memory://"
    box = start_sandbox(
        boot_time=0.0,
        operation_time=0.0,
        delete_time=0.0,
        build_queue_time=0.0,
        build_step_time=0.0,
    )
    secret = secrets.token_urlsafe(32)
    env = production_env(
        var,
        args.database_url,
        args.redis_url,
        GANTRY_GITHUB_WEBHOOK_SECRET=secret,
        DJANGO_SETTINGS_MODULE="bench.floor_settings",
        **box.urls(),
    )
    server = Gunicorn(env, var / "gunicorn.log", threads=args.threads, workers=args.workers).start()
    runs = []
    try:
        for number in range(args.runs):
            runs.append(one_run(number, args, server, env, box))
            run = runs[-1]
            print(
                f"run {number + 1}/{args.runs} (seed {run['seed']}, load average before "
                f"{run['load_average_before']}): {run['intake']['deliveries_per_s']} deliveries/s, "
                f"p50 {run['intake']['p50_ms']} ms, p99 {run['intake']['p99_ms']} ms; resolved in "
                f"{run['resolution']['wall_s_with_worker_start']} s; "
                f"{len(run['violations'])} violations",
                flush=True,
            )
    finally:
        server.stop()
        box.stop()

    def median(phase, key):
        values = [run[phase][key] for run in runs if run[phase][key] is not None]
        return round(statistics.median(values), 1) if values else None

    result = {
        "benchmark": "webhook_burst",
        "machine": machine(),
        "command": " ".join([os.path.relpath(sys.executable, ROOT), *sys.argv]),
        "database": database_label(),
        "redis": args.redis_url,
        "server": "gunicorn "
        + " ".join(server.command[1:])
        + " (DEBUG=0; SECURE_SSL_REDIRECT=0, SECURE_COOKIES=0)",
        "worker": "celery -A portal worker " + " ".join(WORKER_OPTIONS),
        "deliveries": args.deliveries,
        "connections": args.connections,
        "runs": runs,
        "median": {
            "deliveries_per_s": median("intake", "deliveries_per_s"),
            "p50_ms": median("intake", "p50_ms"),
            "p95_ms": median("intake", "p95_ms"),
            "p99_ms": median("intake", "p99_ms"),
            "gunicorn_cpu_ms_per_delivery": median("intake", "gunicorn_cpu_ms_per_delivery"),
            "floor_deliveries_per_s": median("floor", "deliveries_per_s"),
            "floor_p99_ms": median("floor", "p99_ms"),
            "floor_cpu_ms_per_delivery": median("floor", "gunicorn_cpu_ms_per_delivery"),
            "resolution_s": median("resolution", "wall_s_with_worker_start"),
            "releases_per_s": median("resolution", "releases_per_s"),
        },
        "target_deliveries_per_s": TARGET_PER_S,
        "violations": [v for run in runs for v in run["violations"]],
    }
    result["ok"] = not result["violations"]
    m = result["median"]
    result["throughput_ratio"] = round(m["deliveries_per_s"] / m["floor_deliveries_per_s"], 2)
    result["p99_ratio"] = round(m["p99_ms"] / m["floor_p99_ms"], 2)
    result["target"] = (
        "deliveries/s >= 0.5x the floor view's; p99 <= 3x the floor's; nothing lost or doubled"
    )
    result["meets_target"] = (
        result["ok"] and result["throughput_ratio"] >= 0.5 and result["p99_ratio"] <= 3.0
    )
    write(args.out, result)
    print(
        f"\nfloor (bare view, same server): {m['floor_deliveries_per_s']} deliveries/s, "
        f"p99 {m['floor_p99_ms']} ms, {m['floor_cpu_ms_per_delivery']} ms gunicorn CPU each"
    )
    print(
        f"Gantry / floor: throughput {result['throughput_ratio']} (target >= 0.5), "
        f"p99 {result['p99_ratio']} (target <= 3), gunicorn CPU per delivery "
        f"{m['gunicorn_cpu_ms_per_delivery']} ms"
    )
    print(
        f"median of {args.runs}: {m['deliveries_per_s']} deliveries/s "
        f"({'meets' if m['deliveries_per_s'] >= TARGET_PER_S else 'below'} the old "
        f"{TARGET_PER_S}/s), webhook intake: {'met' if result['meets_target'] else 'MISSED'}, "
        f"p50 {m['p50_ms']} ms, "
        f"p99 {m['p99_ms']} ms; resolution {m['resolution_s']} s "
        f"({m['releases_per_s']} releases/s); "
        f"checks {'passed' if result['ok'] else 'FAILED'}"
    )
    if not result["ok"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
