"""Benchmark: real Celery workers killed with SIGKILL while deployments run; every deployment must
still end as it should.

N workers (`celery -A portal worker --pool=solo`, as tests/deployments/test_worker_kill.py starts
them) share a real broker (Redis at --redis-url when it answers, else the embedded SQLite broker)
and a real database (--database-url, else a fresh SQLite file in var/bench/worker_kills/). M
seeded deployments (a few with their own fault: new instances never healthy, or a Cloud Build
copy that fails) are enqueued at once; the engine queues those of one component behind each
other. Then, in a bounded loop, a random worker is killed at a random moment and a new one
started in its place, while the loop sends `reconcile_deployments` every second as beat would.
When every deployment has ended, each passes the fault campaign's checks (bench/campaign.py):
expected state and reason, a valid audit path, each operation recorded once, GCP matching the
state, capacity never below the floor, no lease left, within its deadline.

    .venv/bin/python bench/worker_kills.py [--workers 3] [--deployments 24] [--kills 20]
                                           [--seed S] [--database-url URL] [--redis-url URL]

Writes bench/out/worker_kills.json; exits 1 on any violation.
"""

import argparse
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    ROOT,
    database_label,
    reachable,
    setup_django,
    start_sandbox,
    write,
)

DEFAULT_REDIS = "redis://127.0.0.1:6379/9"
# The engine as the workers run it: short leases and grace so a dead worker's deployment is
# picked up within seconds. The timeouts count wall time in a state, including time no worker
# was working on it, so they must outlast a few kills in a row: each costs the lease, the grace,
# a reconcile and a replacement's start (~15 s here, most of it its first import of
# google.cloud.compute_v1), and 10 s turned out too short for verification.
ENGINE = {
    "GANTRY_ENGINE_POLL_SECONDS": "0.2",
    "GANTRY_STEP_LEASE_SECONDS": "2",
    "GANTRY_RECONCILE_GRACE_SECONDS": "1",
    "GANTRY_VERIFY_INTERVAL": "0.1",
    "GANTRY_VERIFY_PASSES": "2",
    "GANTRY_VERIFY_TIMEOUT": "60",
    "GANTRY_ROLLOUT_TIMEOUT": "60",
    "GANTRY_WARM_SECONDS": "0",
    "GANTRY_MAX_RETRIES": "6",
}
# Deployments without a fault are the most, so most kills land in a whole rollout.
FAULTS = ("none", "none", "none", "none", "never_healthy", "build_failure")


class Workers:
    """Celery worker processes started, killed and replaced by name."""

    def __init__(self, env: dict, logs: Path):
        self.env, self.logs = env, logs
        self.running: dict[str, subprocess.Popen] = {}
        self.started = 0

    def start(self) -> str:
        self.started += 1
        name = f"w{self.started}"
        command = [sys.executable, "-m", "celery", "-A", "portal", "worker", "--pool=solo"]
        command += ["--without-heartbeat", "--without-gossip", "--without-mingle"]
        command += ["-n", f"{name}@%h", "-l", "info"]
        with open(self.logs / f"{name}.log", "w") as log:
            self.running[name] = subprocess.Popen(
                command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        return name

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def warm(self) -> list[str]:
        """Workers that have finished a task: they consume, and they hold work a kill loses."""
        return sorted(name for name in self.running if "] succeeded in" in self.log(name))

    def kill(self, name: str) -> int:
        """SIGKILL the worker. Returns how many messages it took and never finished (the task it
        ran and those it held for their countdown): lost until reconcile finds their work."""
        process = self.running.pop(name)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        log = self.log(name)
        return log.count("] received") - log.count("] succeeded in") - log.count("] retry:")

    def stop(self) -> None:
        for process in self.running.values():
            process.terminate()
        for process in self.running.values():
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        self.running.clear()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--deployments", type=int, default=24)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=None, help="default: a random one")
    parser.add_argument("--speed", type=float, default=40.0, help="sandbox clock speed")
    parser.add_argument("--deadline", type=float, default=600.0, help="seconds for all to end")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL", ""),
        help="default: $DATABASE_URL, else a fresh SQLite file in var/bench/worker_kills/",
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("REDIS_URL", DEFAULT_REDIS),
        help=f"broker (emptied first); default $REDIS_URL or {DEFAULT_REDIS}; "
        "unreachable or '': the embedded SQLite broker",
    )
    parser.add_argument("--out", default=str(ROOT / "bench" / "out" / "worker_kills.json"))
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(10**6)
    redis_url = args.redis_url if args.redis_url and reachable(args.redis_url, 6379) else ""

    os.environ.update(ENGINE)
    os.environ["REDIS_URL"] = redis_url  # the bench enqueues on the broker the workers read
    var = setup_django("worker_kills", args.database_url)
    if redis_url:
        import redis

        redis.Redis.from_url(redis_url).flushdb()
    from campaign import (
        OWN_FAULTS,
        check,
        create_deployment,
        deadline,
        inject,
        judge_canaries_on_probes_alone,
        leftover_problems,
        make_plans,
        percentiles,
    )
    from django.db import connection
    from django.utils import timezone

    from deployments.models import Deployment
    from deployments.tasks import advance_deployment, reconcile_deployments

    assert set(FAULTS) <= set(OWN_FAULTS), "a fault on a target's API paths needs a lane"
    box = start_sandbox(speed=args.speed, boot_time=20.0, wait_timeout=0.2)
    judge_canaries_on_probes_alone()
    plans = make_plans(seed, args.deployments, faults=FAULTS)
    broker = redis_url or "embedded SQLite"
    print(f"seed {seed}: {len(plans)} deployments, {args.workers} workers, {args.kills} kills")
    print(f"database {database_label()}, broker {broker}, sandbox at {args.speed:g}x")
    for plan in plans:
        print("  " + plan.describe())
    deployments = {plan.index: create_deployment(box, plan, seed) for plan in plans}
    for plan in plans:  # own faults only: they wait for their deployment, whoever starts it
        inject(box, plan, deployments[plan.index])
    for deployment in deployments.values():
        advance_deployment.delay(deployment.pk)
    connection.close()  # SQLite: let the workers have the file while the loop mostly waits

    env = {**os.environ, **box.urls(), "GANTRY_LOG_FORMAT": "text", "PYTHONUNBUFFERED": "1"}
    workers = Workers(env, var)
    rng = random.Random(f"{seed}-kills")
    kills = []
    began = time.monotonic()
    try:
        for _ in range(args.workers):
            workers.start()
        ids = [d.pk for d in deployments.values()]
        next_kill = began + rng.uniform(1.0, 3.0)
        next_reconcile = began + 1.0
        orphans = []  # (when to look, kill record, leases held as the worker died)
        while (time.monotonic() - began) < args.deadline:
            left = Deployment.objects.filter(pk__in=ids).exclude(state__in=Deployment.FINAL)
            if not left.exists():
                break
            now = time.monotonic()
            if len(kills) < args.kills and now >= next_kill and (warm := workers.warm()):
                victim = rng.choice(warm)
                leases = set(
                    Deployment.objects.filter(lease_until__gt=timezone.now()).values_list(
                        "pk", "lease_owner"
                    )
                )
                lost = workers.kill(victim)
                replacement = workers.start()
                record = {"at_s": round(now - began, 2), "worker": victim, "messages_lost": lost}
                kills.append(record)
                orphans.append((now + 1.0, record, leases))
                print(
                    f"  {now - began:6.1f}s kill -9 {victim} ({lost} messages lost, "
                    f"{left.count()} deployments unfinished); started {replacement}",
                    flush=True,
                )
                next_kill = now + rng.uniform(1.0, 4.0)
            for due, record, leases in [o for o in orphans if o[0] <= now]:
                # A lease still held by the same step a second later: the kill cut that step.
                still = Deployment.objects.filter(
                    pk__in=[pk for pk, _ in leases], lease_until__gt=timezone.now()
                ).values_list("pk", "lease_owner")
                record["steps_cut"] = len(leases & set(still))
                orphans.remove((due, record, leases))
            if now >= next_reconcile:
                reconcile_deployments.delay()  # what beat sends
                next_reconcile = now + 1.0
            time.sleep(0.05)
        wall = time.monotonic() - began
    finally:
        workers.stop()

    def sim(moment):
        """The sandbox's simulated time at a wall-clock moment."""
        return box.world.clock.now() - (timezone.now() - moment).total_seconds() * args.speed

    limit = deadline() + 30.0  # the workers' timeouts, plus a lease, a grace and a reconcile
    last = {(plan.environment, plan.component): plan.index for plan in plans}
    violations = []
    durations, waits = [], []
    for plan in plans:
        deployment = deployments[plan.index]
        deployment.refresh_from_db()
        if not deployment.is_final:
            violations.append(f"#{plan.index} {plan.lane}: not ended, still {deployment.state}")
            continue
        window = (sim(deployment.started_at), sim(deployment.finished_at))
        latest = last[plan.environment, plan.component] == plan.index
        violations += check(box, plan, deployment, window, resources=latest)
        took = (deployment.finished_at - deployment.started_at).total_seconds()
        durations.append(took)
        waits.append((deployment.started_at - deployment.queued_at).total_seconds())
        if took > limit:
            violations.append(f"#{plan.index} {plan.lane}: took {took:.1f}s, over {limit:g}s")
    violations += leftover_problems(list(deployments[p.index].pk for p in plans))
    box.stop()
    if redis_url:
        import redis

        redis.Redis.from_url(redis_url).flushdb()

    outcomes = Counter(deployments[p.index].state for p in plans)
    result = {
        "benchmark": "worker_kills",
        "seed": seed,
        "deployments": len(plans),
        "workers": args.workers,
        "database": database_label(),
        "broker": "redis" if redis_url else "sqlite",
        "sandbox_speed": args.speed,
        "engine": {name: float(value) for name, value in ENGINE.items()},
        "kills": len(kills),
        "kills_cutting_a_step": sum(k.get("steps_cut", 0) > 0 for k in kills),
        "kills_losing_messages": sum(k["messages_lost"] > 0 for k in kills),
        "messages_lost": sum(k["messages_lost"] for k in kills),
        "kill_log": kills,
        "faults": dict(Counter(plan.fault for plan in plans)),
        "expected": dict(Counter(plan.expected for plan in plans)),
        "outcomes": dict(outcomes),
        "duration_s": percentiles(durations),
        "queued_s": percentiles(waits),
        "deadline_s": limit,
        "wall_s": round(wall, 2),
        "violations": violations,
    }
    result["ok"] = not violations
    write(args.out, result)
    if violations:
        sys.exit(1)


if __name__ == "__main__":
    main()
