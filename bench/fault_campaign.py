"""Benchmark: a fault campaign of N deployments against the sandbox, each with a seeded fault.

For each deployment a seeded random.Random picks a target (prod frontend: rolling; prod backend:
canary; prod ai-server: blue-green; a dev component on the shared dev VM) and a fault or none:
a 429 or 503 burst under the retry budget, 503s beyond it, an operation that ends in error, one
that never finishes, new instances that never turn healthy, a health endpoint that is down, a
Cloud Build copy that fails. The engine drives them (one lane per target, the lanes interleaved)
with short timeouts and the sandbox's clock at 2000x. Every deployment must end in the state its
fault calls for, within its deadline, with a valid audit path, its capacity never below the floor
and GCP matching its state (see bench/campaign.py for each check).

    .venv/bin/python bench/fault_campaign.py [--deployments 100] [--seed S] [--only K]
                                             [--database-url URL]

The plan is printed first; a failure replays with `--seed S --only K` (K alone, on a fresh
sandbox). Writes bench/out/fault_campaign.json; exits 1 on any violation.
"""

import argparse
import os
import random
import sys
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, database_label, setup_django, start_sandbox, write


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deployments", type=int, default=100)
    parser.add_argument("--seed", type=int, default=None, help="default: a random one")
    parser.add_argument("--only", type=int, default=None, metavar="K", help="replay plan K only")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL", ""),
        help="default: $DATABASE_URL, else a fresh SQLite file in var/bench/fault_campaign/",
    )
    parser.add_argument("--out", default=str(ROOT / "bench" / "out" / "fault_campaign.json"))
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(10**6)
    if args.only is not None and not 0 <= args.only < args.deployments:
        parser.error(f"--only must name a plan from 0 to {args.deployments - 1}")

    os.environ.pop("REDIS_URL", None)  # tasks the engine enqueues stay in this process
    setup_django("fault_campaign", args.database_url)
    from django.conf import settings

    from portal.celery import app

    app.conf.broker_url = "memory://"  # nobody consumes: the campaign calls advance() itself

    from campaign import (
        FAULTS,
        SANDBOX,
        TIMINGS,
        deadline,
        floor_of,
        judge_canaries_on_probes_alone,
        lanes,
        make_plans,
        percentiles,
        run_campaign,
    )

    for name, value in TIMINGS.items():
        setattr(settings, name, value)
    judge_canaries_on_probes_alone()
    plans = make_plans(seed, args.deployments)
    if args.only is not None:
        plans = [plans[args.only]]
    print(f"seed {seed}: {len(plans)} deployments on {database_label()}")
    for plan in plans:
        print("  " + plan.describe())
    print(flush=True)

    box = start_sandbox(**SANDBOX)
    try:
        result = run_campaign(box, plans, seed, say=lambda line: print("  " + line, flush=True))
    finally:
        box.stop()

    by_fault = defaultdict(Counter)
    for run in result.runs:
        by_fault[run.plan.fault][run.state] += 1
    floors = {
        f"{component.environment.name}/{component.name}": floor_of(component)
        for members in lanes().values()
        for component in members
        if component.deploy_kind != "single_vm"
    }
    durations = [run.seconds for run in result.runs]
    output = {
        "benchmark": "fault_campaign",
        "seed": seed,
        "only": args.only,
        "deployments": len(plans),
        "database": database_label(),
        "sandbox": SANDBOX,
        "engine": TIMINGS,
        "deadline_s": deadline(),
        "capacity_floor": floors,
        "faults": {
            name: {
                "what": FAULTS[name],
                "planned": sum(plan.fault == name for plan in plans),
                "expected": sorted({plan.expected for plan in plans if plan.fault == name}),
                "outcomes": dict(by_fault[name]),
                "duration_s": percentiles([r.seconds for r in result.runs if r.plan.fault == name]),
            }
            for name in FAULTS
        },
        "outcomes": dict(result.outcomes()),
        "strategies": dict(Counter(plan.strategy for plan in plans)),
        "duration_s": percentiles(durations),
        "steps": sum(run.steps for run in result.runs),
        "wall_s": round(result.seconds, 2),
        "skipped": result.skipped,
        "violations": result.violations,
    }
    output["ok"] = not result.violations and not result.skipped
    write(args.out, output)
    if not output["ok"]:
        indexes = sorted({int(v.split()[0][1:]) for v in result.violations if v.startswith("#")})
        for index in indexes:
            print(f"replay: {sys.executable} bench/fault_campaign.py --seed {seed} --only {index}")
        sys.exit(1)


if __name__ == "__main__":
    main()
