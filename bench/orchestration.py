"""Benchmark: Gantry's own orchestration overhead for rolling deployments of 4 components.

The sandbox runs with zero simulated latency (instant boots, operations and builds), so what is
left is Gantry: the engine's steps, its database writes, the client libraries' HTTP round trips
to a loopback server, and the probes of verification. Deployments are driven back to back with
`run_to_end`, never sleeping between steps.

    .venv/bin/python bench/orchestration.py [--runs 5]

Prints (and writes bench/out/orchestration.json) the median wall time for all four and the
per-step overhead, after one warm-up run that is not counted. Target: under 2 s for the four
on this 2-core machine.

Then it counts the Compute calls one rollout makes at realistic timings (90 s boots, 5 s
operations, the engine's default 2 s poll), one deployment per strategy of the shipped
topology. The sandbox stands still and each step's delay moves its clock on, which the engine
reads too, so the counts are the same on any machine.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
COMPONENTS = ["frontend", "backend", "admin-web", "batch-api"]


def bench_topology(folder: Path) -> Path:
    """The shipped topology with four rolling-MIG components in prod."""
    data = yaml.safe_load((ROOT / "topology" / "nemo.yaml").read_text())
    prod = data["environments"]["prod"]["components"]
    prod["backend"]["deploy"]["strategy"] = "rolling"
    for name in COMPONENTS[2:]:
        copy = json.loads(json.dumps(prod["frontend"]))
        copy["deploy"].update(
            mig=f"nemo-{name}-mig", backend_service=f"nemo-{name}-bes", image=name
        )
        copy["host"] = f"{name}.nemo-prod.internal"
        prod[name] = copy
    path = folder / "topology.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", default=str(ROOT / "bench" / "out" / "orchestration.json"))
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="gantry-bench-"))
    topology = bench_topology(folder)
    os.environ.update(
        {
            "GANTRY_VAR_DIR": str(folder),
            "DATABASE_URL": "",
            "DJANGO_SETTINGS_MODULE": "portal.settings",
            "GANTRY_TOPOLOGY_FILE": str(topology),
        }
    )
    import logging

    import django

    django.setup()
    logging.disable(logging.INFO)
    from django.conf import settings
    from django.core.management import call_command

    from deployments.engine import advance
    from deployments.models import Deployment, DeploymentEvent
    from environments.models import FreezeWindow
    from environments.topology import sync_topology
    from sandbox.server import Sandbox

    call_command("migrate", verbosity=0)
    sync_topology(topology)
    FreezeWindow.objects.update(enabled=False)  # measure the engine, not the calendar
    for name, value in {
        "GANTRY_ENGINE_POLL_SECONDS": 0.0,
        "GANTRY_VERIFY_INTERVAL": 0.0,
        "GANTRY_WARM_SECONDS": 0.0,
    }.items():
        setattr(settings, name, value)

    timings, steps = [], []
    for run in range(args.runs + 1):  # run 0 warms up: imports and clients, as a worker has
        box = Sandbox(
            port=0,
            topology=topology,
            speed=1.0,
            boot_time=0.0,
            operation_time=0.0,
            delete_time=0.0,
            build_queue_time=0.0,
            build_step_time=0.0,
            wait_timeout=0.0,
        ).start()
        for name, value in box.urls().items():
            setattr(settings, name, value)
        deployments = [
            queued(box, "prod", name, f"{run:04x}", f"b{run}", "rolling") for name in COMPONENTS
        ]
        calls = 0
        started = time.perf_counter()
        for deployment in deployments:
            while True:
                calls += 1
                if advance(deployment.pk).finished:
                    break
        elapsed = time.perf_counter() - started
        box.stop()
        ended = set(
            Deployment.objects.filter(pk__in=[d.pk for d in deployments]).values_list(
                "state", flat=True
            )
        )
        if ended != {"succeeded"}:
            reasons = list(Deployment.objects.values_list("state", "reason"))
            raise SystemExit(f"run {run}: deployments did not all succeed: {reasons}")
        if run:
            timings.append(elapsed)
            steps.append(calls)
    events = DeploymentEvent.objects.count() // (args.runs + 1)
    calls = calls_per_rollout(topology)
    result = {
        "benchmark": "orchestration",
        "components": len(COMPONENTS),
        "strategy": "rolling (4 instances over 2 zones each)",
        "runs": args.runs,
        "median_s": round(statistics.median(timings), 3),
        "min_s": round(min(timings), 3),
        "max_s": round(max(timings), 3),
        "steps_per_run": statistics.median(steps),
        "per_step_ms": round(
            1000 * statistics.median(t / s for t, s in zip(timings, steps, strict=True)), 1
        ),
        "timeline_events_per_run": events,
        "target_s": 2.0,
        "compute_calls_per_rollout": calls,
    }
    result["meets_target"] = result["median_s"] < result["target_s"]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


def queued(box, environment: str, name: str, prefix: str, version: str, strategy: str):
    """A release of a freshly pushed image of the component, with its deployment queued."""
    from deployments.models import Deployment, Release
    from environments.models import Component

    component = Component.objects.get(environment__name=environment, name=name)
    sha = f"{prefix}{name.encode().hex()}".ljust(40, "0")[:40]
    image = f"asia-northeast3-docker.pkg.dev/nemo-dev/registry/{component.image}:{sha}"
    release = Release.objects.create(
        component=component,
        repository="nemo-team/x",
        branch="main",
        sha=sha,
        image=image,
        digest=box.world.registry.push_new(image),
        version=version,
    )
    return Deployment.objects.create(
        release=release,
        component=component,
        state="queued",
        strategy=strategy,
        queued_at=release.created_at,
    )


REALISTIC = {"boot_time": 90.0, "operation_time": 5.0, "delete_time": 30.0}
PER_STRATEGY = [
    ("dev", "backend", "recreate"),
    ("prod", "frontend", "rolling"),
    ("prod", "backend", "canary"),
    ("prod", "ai-server", "blue_green"),
]


def calls_per_rollout(topology: Path) -> dict:
    """Compute calls per deployment, by strategy and by kind of call, at realistic timings."""
    from collections import Counter
    from datetime import timedelta

    from django.conf import settings
    from django.utils import timezone

    from deployments import clock
    from deployments.engine import run_to_end
    from sandbox.server import Sandbox

    settings.GANTRY_ENGINE_POLL_SECONDS, settings.GANTRY_VERIFY_INTERVAL = 2.0, 5.0
    found = {}
    for environment, name, strategy in PER_STRATEGY:
        box = Sandbox(port=0, topology=topology, speed=0, **REALISTIC).start()
        for key, value in box.urls().items():
            setattr(settings, key, value)
        deployment = queued(box, environment, name, "c0de", "calls", strategy)
        start = timezone.now()
        sim = box.world.clock
        with clock.driven_by(lambda: start + timedelta(seconds=sim.now())):  # noqa: B023
            ended = run_to_end(deployment.pk, max_steps=5000, sleep=box.world.clock.advance)
        box.stop()
        if ended.state != "succeeded":
            raise SystemExit(f"{name}: {ended.state}: {ended.reason}")
        compute = [c for c in box.gcp_calls if c["path"].startswith("/compute/")]
        kinds = Counter(call_kind(c["method"], c["path"]) for c in compute)
        found[f"{environment}/{name} ({strategy})"] = {
            "calls": len(compute),
            "simulated_s": round(box.world.clock.now(), 1),
            "by_kind": dict(kinds.most_common()),
        }
    return found


COLLECTIONS = (
    "instanceGroupManagers",
    "instanceTemplates",
    "backendServices",
    "operations",
    "instances",
    "autoscalers",
)


def call_kind(method: str, path: str) -> str:
    """'GET instanceGroupManagers', 'POST instanceGroupManagers/listManagedInstances', …"""
    parts = path.split("/")
    at = max(i for i, part in enumerate(parts) if part in COLLECTIONS)
    verb = parts[at + 2] if len(parts) > at + 2 else ""
    return f"{method} {parts[at]}" + (f"/{verb}" if verb else "")


if __name__ == "__main__":
    main()
