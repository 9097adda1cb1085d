"""Seeded fault plans for deployments against the sandbox, and the checks every deployment's end
must pass.

A plan picks, from `random.Random(seed)`, a target (a prod MIG, the blue-green pair or the dev VM)
and a fault for each deployment, and says how that deployment must end. `run_campaign` drives
the plans with the engine, one lane per target and the lanes interleaved, injecting each fault
when its deployment starts and removing it when it ends. `check` holds each end to account:
the expected state and reason, the retries the fault caused, an audit trail that is a valid path
through `Deployment.TRANSITIONS` ending at the row's state, every step's GCP change recorded once,
the resources in GCP matching the state, no capacity below the floor, no lease left behind.

Shared by bench/fault_campaign.py, bench/worker_kills.py and tests/deployments/
test_fault_campaign.py. It imports Django models: import it after Django is set up.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import random
import time
from collections import Counter, deque
from dataclasses import dataclass, field

import httpx
from django.conf import settings

from audit.models import AuditEvent
from deployments.engine import advance
from deployments.models import Deployment, Release
from environments.models import Component
from gcp.names import short

S = Deployment.State
CI_REGISTRY = "asia-northeast3-docker.pkg.dev/nemo-dev/registry"

# Engine timings for a sandbox at SANDBOX speed: timeouts are real seconds, the simulated ones
# (a 20 s boot) pass 2000 times faster. Short timeouts keep a stuck or never-healthy rollout to
# a few seconds before it rolls back; a healthy one needs under a third of them (0.75 s rolling
# out and 0.37 s verifying at most, in 100 deployments on SQLite).
SANDBOX = {"speed": 2000.0, "boot_time": 20.0, "wait_timeout": 0.2}
TIMINGS = {
    "GANTRY_ENGINE_POLL_SECONDS": 0.005,
    "GANTRY_VERIFY_INTERVAL": 0.005,
    "GANTRY_VERIFY_PASSES": 2,
    "GANTRY_VERIFY_TIMEOUT": 1.5,
    "GANTRY_ROLLOUT_TIMEOUT": 3.0,
    "GANTRY_WARM_SECONDS": 0.0,
    "GANTRY_PROBE_TIMEOUT": 1.0,
    "GANTRY_MAX_RETRIES": 6,
}
BURST_MAX = 4  # a 429/503 burst is 1..BURST_MAX answers: under the retry budget, so it succeeds

# What can go wrong, and how the deployment must end. `bursts` are transient, `endless_503`
# outlasts the retry budget of the rollout and of the rollback alike.
FAULTS = {
    "none": "no fault",
    "throttle_429": "the next N calls to one API path answer 429",
    "outage_503": "the next N calls to one API path answer 503",
    "endless_503": "the rollout's write call answers 503 beyond the retry budget",
    "operation_error": "the rollout's first operation ends DONE with QUOTA_EXCEEDED",
    "operation_stuck": "the rollout's first operation never finishes",
    "never_healthy": "instances (or the VM container) of the new image never pass health checks",
    "probe_down": "the component's health endpoint answers 503 whatever runs",
    "build_failure": "Cloud Build cannot copy the image (its digest is not in the registry)",
    "slow_app": "the new version answers 30 % slower, healthy all the same",
    "app_errors": "the new version fails 5 % of its requests, healthy all the same",
    "no_metrics": "the new version exports no Prometheus metrics",
}
# Faults only a canary's metric analysis can see: other strategies succeed through them.
APP_FAULTS = {"slow_app": "latency: high", "app_errors": "errors: high", "no_metrics": "no data"}
BURSTS = ("throttle_429", "outage_503")
# Which call a burst hits: the rollout's write (PATCH the MIG, setMetadata on the VM), a read it
# polls (GET the MIG or VM), or the registry lookups of promotion (HEAD a manifest).
CALLS = ("write", "read", "registry")
# Faults that belong to one deployment rather than to a target's API paths: they can be set up
# before anything runs, so the worker-kill bench (where workers start deployments) uses these.
OWN_FAULTS = ("none", "never_healthy", "build_failure")


# --- targets and plans --------------------------------------------------------------------------


def lanes() -> dict[str, list[Component]]:
    """Deployable components by what their rollouts change: each prod MIG (or blue-green pair)
    on its own, and one lane for the dev VM every dev component shares. Deployments in one lane
    run one after another, so a fault on a lane's API paths meets only its own deployment."""
    out: dict[str, list[Component]] = {}
    components = (
        Component.objects.exclude(deploy_kind=Component.DeployKind.NONE)
        .select_related("environment")
        .order_by("environment__name", "position", "name")
    )
    for component in components:
        where = component.instance if component.deploy_kind == "single_vm" else component.name
        out.setdefault(f"{component.environment.name}/{where}", []).append(component)
    return out


def judge_canaries_on_probes_alone() -> None:
    """For a campaign on the wall clock against a sandbox at SANDBOX speed: its Cloud Monitoring
    series are stamped in simulated minutes, 2000 of them a real minute, so a canary analysis
    window in the engine's (real) seconds would neither wait its simulated minutes nor find
    them where it looks. Such runs judge canaries by their probes, and plans made afterwards
    expect the app faults to pass. The suite's campaign runs on simulated time and judges them
    (tests/deployments/test_fault_campaign.py)."""
    for component in Component.objects.filter(strategy="canary"):
        component.options = {**component.options, "analysis": False}
        component.save(update_fields=["options"])


@dataclass(frozen=True)
class Plan:
    index: int
    lane: str
    environment: str
    component: str
    strategy: str
    fault: str
    params: dict = field(default_factory=dict)
    analysed: bool = False  # a canary judged by its metrics (the component's options.analysis)

    @property
    def expected(self) -> str:
        if self.fault in ("none", *BURSTS):
            return S.SUCCEEDED
        if self.fault in APP_FAULTS:
            return S.ROLLED_BACK if self.analysed else S.SUCCEEDED
        if self.fault == "build_failure":
            return S.FAILED
        if self.fault == "endless_503":
            # Blue-green changed nothing traffic sees before the write failed: rolling back is
            # only forgetting the idle colour, which needs no API call.
            return S.ROLLED_BACK if self.strategy == "blue_green" else S.FAILED
        return S.ROLLED_BACK

    @property
    def reason_says(self) -> tuple[str, ...]:
        """Any of these must appear in the final reason."""
        if self.fault in APP_FAULTS:
            return (APP_FAULTS[self.fault],) if self.analysed else ("",)
        return {
            "endless_503": ("gave up after",),
            "operation_error": ("QUOTA_EXCEEDED",),
            "operation_stuck": ("not done after",),
            "never_healthy": ("stayed UNHEALTHY", "not done after", "verification failed"),
            "probe_down": ("verification failed",),
            "build_failure": ("promotion failed: Cloud Build",),
        }.get(self.fault, ("",))

    @property
    def retries(self) -> int:
        """Retry lines the fault must leave on the timeline."""
        if self.fault in BURSTS:
            return self.params["count"]
        if self.fault == "endless_503":
            states = 1 if self.strategy == "blue_green" else 2  # rolling out, then rolling back
            return states * settings.GANTRY_MAX_RETRIES
        return 0

    def describe(self) -> str:
        params = " ".join(f"{k}={v}" for k, v in self.params.items())
        return (
            f"#{self.index:<3} {self.environment}/{self.component:<9} {self.strategy:<10} "
            f"{self.fault:<15} {params:<20} -> {self.expected}"
        )


def make_plans(seed: int, count: int, faults=tuple(FAULTS)) -> list[Plan]:
    """`count` plans from `seed`. Faults are dealt from a shuffled deck, so every kind shows up
    once per len(faults) deployments; the lane is drawn at random, then a component in it."""
    if settings.GANTRY_MAX_RETRIES <= BURST_MAX:
        raise ValueError(f"GANTRY_MAX_RETRIES must exceed the longest burst ({BURST_MAX})")
    rng = random.Random(seed)
    targets = lanes()
    names = sorted(targets)
    deck: list[str] = []
    plans = []
    for index in range(count):
        if not deck:
            deck = list(faults)
            rng.shuffle(deck)
        fault = deck.pop()
        lane = rng.choice(names)
        component = rng.choice(targets[lane])
        params = {}
        if fault in BURSTS:
            params = {"count": rng.randint(1, BURST_MAX), "call": rng.choice(CALLS)}
        plans.append(
            Plan(
                index=index,
                lane=lane,
                environment=component.environment.name,
                component=component.name,
                strategy=component.strategy,
                fault=fault,
                params=params,
                analysed=component.strategy == "canary" and component.analysis.enabled,
            )
        )
    return plans


# --- deployments and faults ---------------------------------------------------------------------


def create_deployment(box, plan: Plan, seed: int) -> Deployment:
    """A release of a fresh image, pushed as CI would, with its queued deployment. A planned
    build failure gets a digest the registry has never seen, so Cloud Build's copy fails."""
    component = Component.objects.select_related("environment").get(
        environment__name=plan.environment, name=plan.component
    )
    sha = hashlib.sha1(f"campaign-{seed}-{plan.index}".encode()).hexdigest()
    image = f"{CI_REGISTRY}/{component.image}:{sha}"
    if plan.fault == "build_failure":
        digest = "sha256:" + hashlib.sha256(sha.encode()).hexdigest()
    else:
        digest = box.world.registry.push_new(image)
    release = Release.objects.create(
        component=component,
        repository="nemo-team/campaign",
        branch="main" if plan.environment == "prod" else "develop",
        sha=sha,
        version=f"c{seed % 10_000}-{plan.index}",
        author="campaign",
        image=image,
        digest=digest,
    )
    return Deployment.objects.create(
        release=release,
        component=component,
        state=S.QUEUED,
        strategy=component.strategy,
        queued_at=release.created_at,
        requested_by="campaign",
    )


def _idle_mig(box, component: Component) -> str:
    serving = box.state()["projects"][component.environment.gcp_project]["backendServices"]
    live = serving[component.backend_service]
    return component.green_mig if component.blue_mig in live else component.blue_mig


def _paths(box, component: Component) -> dict:
    """Where the rollout's calls go: API path globs by call, and its first operation."""
    if component.deploy_kind == "single_vm":
        vm = f"*/zones/*/instances/{component.instance}"
        return {
            "write": (f"{vm}/setMetadata", "POST"),
            "read": (vm, "GET"),
            "operation": (f"*/instances/{component.instance}", "setMetadata"),
        }
    mig = _idle_mig(box, component) if component.deploy_kind == "blue_green" else component.mig
    path = f"*/instanceGroupManagers/{mig}"
    return {"write": (path, "PATCH"), "read": (path, "GET"), "operation": (path, "patch")}


def fault_specs(box, plan: Plan, deployment: Deployment) -> list[dict]:
    """The sandbox faults that make `plan.fault` happen to this deployment, right now."""
    component = deployment.component
    fault = plan.fault
    if fault in ("none", "build_failure"):
        return []
    if fault == "never_healthy":
        return [{"kind": "unhealthy", "image": deployment.release.digest[7:23]}]
    if fault == "probe_down":
        return [{"kind": "down", "environment": plan.environment, "component": plan.component}]
    if fault in APP_FAULTS:
        image = deployment.release.digest[7:23]
        shape = {"slow_app": ("slow", {"factor": 1.3}), "app_errors": ("errors", {"rate": 0.05})}
        kind, extra = shape.get(fault, ("no_metrics", {}))
        return [{"kind": kind, "image": image, **extra}]
    paths = _paths(box, component)
    if fault in BURSTS:
        status = 429 if fault == "throttle_429" else 503
        if plan.params["call"] == "registry":
            repository = component.image_repository.split("/", 1)[1]
            path, method = f"/v2/{repository}/manifests/*", "HEAD"
        else:
            path, method = paths[plan.params["call"]]
        return [
            {
                "kind": "http_error",
                "path": path,
                "method": method,
                "status": status,
                "count": plan.params["count"],
            }
        ]
    if fault == "endless_503":
        path, method = paths["write"]
        count = 2 * settings.GANTRY_MAX_RETRIES + 3
        return [
            {"kind": "http_error", "path": path, "method": method, "status": 503, "count": count}
        ]
    target, operation_type = paths["operation"]
    spec = {"kind": fault, "target": target, "operationType": operation_type, "count": 1}
    if fault == "operation_error":
        spec |= {"code": "QUOTA_EXCEEDED", "message": "Quota 'CPUS' exceeded (injected)"}
    return [spec]


def inject(box, plan: Plan, deployment: Deployment) -> list[str]:
    specs = fault_specs(box, plan, deployment)
    return [box.inject_fault(spec.pop("kind"), **spec)["id"] for spec in specs]


def remove(box, fault_ids: list[str]) -> None:
    """Take a deployment's faults away through the control API (a spent one is already gone)."""
    for fault_id in fault_ids:
        response = httpx.delete(f"{box.url}/_sandbox/faults/{fault_id}", timeout=5)
        if response.status_code not in (200, 404):
            response.raise_for_status()


# --- checks -------------------------------------------------------------------------------------


def audit_problems(deployment: Deployment, start: str = S.QUEUED) -> list[str]:
    """The deployment.* audit rows must be a valid path through TRANSITIONS from `start` to the
    state the row is in."""
    problems = []
    state = start
    rows = AuditEvent.objects.filter(
        object_type="deployments.deployment",
        object_id=str(deployment.pk),
        action__startswith="deployment.",
    ).order_by("pk")
    for row in rows:
        if "to" not in row.data:
            continue  # not a state change (e.g. a freeze override)
        before, to = row.data.get("from"), row.data["to"]
        if before != state:
            problems.append(f"audit row {row.pk} goes from {before}, but the path was at {state}")
        if to not in Deployment.TRANSITIONS[S(state)]:
            problems.append(f"audit row {row.pk}: {state} → {to} is not a valid transition")
        if row.action != f"deployment.{to}":
            problems.append(f"audit row {row.pk} is {row.action} but records a move to {to}")
        state = to
    if state != deployment.state:
        problems.append(f"the audit path ends at {state}, the row says {deployment.state}")
    return problems


def operation_problems(deployment: Deployment) -> list[str]:
    """Each step records its GCP operation once: a re-run must find it, not start another."""
    counts = Counter(op["what"] for op in deployment.operations)
    return [f"operation {what!r} recorded {n} times" for what, n in counts.items() if n > 1]


def floor_of(component: Component) -> int:
    """Fewest available instances a rollout may leave serving: the target size minus the
    update policy's maxUnavailable (0 unless the topology's options say otherwise)."""
    return component.size - int(component.options.get("max_unavailable", 0))


def capacity_timeline(box, component: Component) -> list[tuple[float, int]]:
    """(simulated time, available instances) at every change, summed over the component's MIGs
    (both colours of a blue-green pair: whichever serves, the pair must hold the floor)."""
    project = component.environment.gcp_project
    migs = [component.mig] if component.mig else [component.blue_mig, component.green_mig]
    events = sorted(
        (t, mig, sum(cell["available"] for zone in state.values() for cell in zone.values()))
        for mig in migs
        for t, state in box.history(project, mig)
    )
    now: dict[str, int] = {}
    timeline: list[tuple[float, int]] = []
    for t, mig, available in events:
        now[mig] = available
        if len(now) == len(migs):
            timeline.append((t, sum(now.values())))
    return timeline


def capacity_problems(box, component: Component, since=None, until=None) -> list[str]:
    """Available instances below the floor at any moment in [since, until] (simulated time).
    The dev VM has no floor: changing one container's image restarts it, by design."""
    if component.deploy_kind == "single_vm":
        return []
    floor = floor_of(component)
    timeline = capacity_timeline(box, component)
    if since is not None:  # the state the window opens in, then every change inside it
        before = [row for row in timeline if row[0] <= since][-1:]
        timeline = before + [row for row in timeline if row[0] > since]
    if until is not None:
        timeline = [row for row in timeline if row[0] <= until]
    low = [(t, n) for t, n in timeline if n < floor]
    if not low:
        return []
    t, n = min(low, key=lambda row: row[1])
    return [f"only {n} instances available at t={t:.1f}s, below the floor of {floor}"]


def resource_problems(box, deployment: Deployment) -> list[str]:
    """What runs in GCP must match how the deployment ended."""
    component, state = deployment.component, deployment.state
    previous = deployment.previous
    if state == S.FAILED and deployment.reason.startswith("promotion failed"):
        if deployment.template or deployment.operations:
            return ["a failed promotion went on to change GCP"]
        return []
    project = component.environment.gcp_project
    if component.deploy_kind == "single_vm":
        from gcp.adapter import GcpAdapter

        vm = GcpAdapter.from_settings().get_instance(
            project, component.instance_zone, component.instance
        )
        image = vm.metadata.get(component.image_metadata_key, "")
        wanted = deployment.target_image if state == S.SUCCEEDED else previous.get("image")
        if wanted and image != wanted:
            return [f"the VM's {component.image_metadata_key} is {image}, not {wanted}"]
        return []

    def templates(mig: str) -> list[str]:
        return sorted(short(i.template) for i in box.mig(project, mig).live())

    if component.deploy_kind == "blue_green":
        if "live" not in previous:
            return []
        serving = box.state()["projects"][project]["backendServices"][component.backend_service]
        colour = previous["idle_mig"] if state == S.SUCCEEDED else previous["live_mig"]
        other = previous["live_mig"] if state == S.SUCCEEDED else previous["idle_mig"]
        problems = []
        if serving != [colour]:
            problems.append(f"the backend service sends traffic to {serving}, not [{colour}]")
        if state == S.SUCCEEDED and templates(colour) != [deployment.template] * component.size:
            problems.append(f"{colour} runs {templates(colour)}, not the new template")
        if templates(other):
            problems.append(f"{other} still runs {templates(other)} after the deployment")
        return problems
    running = templates(component.mig)
    if state == S.SUCCEEDED:
        wanted = deployment.template
    elif previous.get("template"):
        wanted = short(previous["template"])
    else:
        return []
    if running != [wanted] * component.size:
        return [f"{component.mig} runs {running}, not {component.size} x {wanted}"]
    return []


def check(box, plan: Plan, deployment: Deployment, window=None, resources=True) -> list[str]:
    """Everything wrong with how this deployment ended, as lines naming it. `window` bounds the
    capacity check (simulated time); `resources` compares GCP with the end state, which holds
    only until the next deployment of the component changes it."""
    deployment.refresh_from_db()
    problems = []
    if deployment.state != plan.expected:
        problems.append(f"ended {deployment.state} ({deployment.reason}), expected {plan.expected}")
    elif not any(text in deployment.reason for text in plan.reason_says):
        problems.append(f"reason {deployment.reason!r} says none of {plan.reason_says}")
    retries = deployment.events.filter(kind="retry").count()
    if retries != plan.retries:
        problems.append(f"{retries} retries on the timeline, expected {plan.retries}")
    if deployment.lease_owner or deployment.lease_until:
        problems.append(
            f"still leased by {deployment.lease_owner!r} until {deployment.lease_until}"
        )
    problems += audit_problems(deployment)
    problems += operation_problems(deployment)
    if resources:
        problems += resource_problems(box, deployment)
    problems += capacity_problems(box, deployment.component, *(window or (None, None)))
    return [f"#{plan.index} {plan.lane} {plan.fault}: {problem}" for problem in problems]


def leftover_problems(ids) -> list[str]:
    """Deployments of a finished run still waiting, active or holding a lease."""
    left = Deployment.objects.filter(pk__in=ids).exclude(state__in=Deployment.FINAL)
    leased = Deployment.objects.filter(pk__in=ids).exclude(lease_owner="", lease_until=None)
    return [f"deployment {d.pk} left {d.state}: {d.reason}" for d in left] + [
        f"deployment {d.pk} left holding a lease ({d.lease_owner})" for d in leased
    ]


# --- the campaign -------------------------------------------------------------------------------


def deadline() -> float:
    """Real seconds a deployment may take once started: every state that waits is bounded by a
    timeout (a canary rolls out twice, verifies twice, and may roll back), plus slack for
    retries and a loaded machine."""
    rollout = settings.GANTRY_ROLLOUT_TIMEOUT
    return 3 * rollout + 2 * settings.GANTRY_VERIFY_TIMEOUT + 10.0


@dataclass
class Run:
    plan: Plan
    deployment: Deployment
    fault_ids: list[str] = field(default_factory=list)
    started: float = 0.0
    sim_started: float = 0.0
    seconds: float = 0.0
    steps: int = 0
    state: str = ""


@dataclass
class Result:
    runs: list[Run]
    violations: list[str]
    skipped: list[int]
    seconds: float

    def outcomes(self) -> Counter:
        return Counter(run.state for run in self.runs)


def run_campaign(box, plans: list[Plan], seed: int, say=None) -> Result:
    """Create every plan's deployment (queued, in plan order), then drive each lane's deployments
    one after another with `advance`, the lanes interleaved on one thread, honouring each step's
    delay. A deployment past its deadline is a violation, and its lane stops there."""
    say = say or (lambda line: None)
    began = time.monotonic()
    limit = deadline()
    queues: dict[str, deque[Run]] = {}
    for plan in plans:
        run = Run(plan, create_deployment(box, plan, seed))
        queues.setdefault(plan.lane, deque()).append(run)
    heap = [(began, n, lane) for n, lane in enumerate(sorted(queues))]
    current: dict[str, Run | None] = dict.fromkeys(queues)
    runs, violations, skipped = [], [], []
    tick = len(heap)
    while heap:
        due, _, lane = heapq.heappop(heap)
        if (pause := due - time.monotonic()) > 0:
            time.sleep(pause)
        run = current[lane]
        if run is None:
            if not queues[lane]:
                continue
            run = current[lane] = queues[lane].popleft()
            run.fault_ids = inject(box, run.plan, run.deployment)
            run.started, run.sim_started = time.monotonic(), box.world.clock.now()
        outcome = advance(run.deployment.pk)
        run.steps += 1
        now = time.monotonic()
        if outcome.finished or now - run.started > limit:
            remove(box, run.fault_ids)
            run.deployment.refresh_from_db()
            run.seconds, run.state = now - run.started, run.deployment.state
            if not run.deployment.is_final:
                why = "stopped" if outcome.finished else f"not ended after {limit:g}s, still"
                violations.append(f"#{run.plan.index} {lane} {run.plan.fault}: {why} {run.state}")
                skipped += [r.plan.index for r in queues[lane]]
                queues[lane].clear()
            else:
                window = (run.sim_started, box.world.clock.now())
                violations += check(box, run.plan, run.deployment, window)
                if run.seconds > limit:
                    violations.append(
                        f"#{run.plan.index} {lane} {run.plan.fault}: took {run.seconds:.1f}s, "
                        f"over its deadline of {limit:g}s"
                    )
            runs.append(run)
            say(
                f"#{run.plan.index:<3} {lane:<16} {run.plan.fault:<15} {run.state:<12} "
                f"{run.seconds:6.2f}s {run.steps:4d} steps"
            )
            current[lane] = None
            due = now
        else:
            due = now + outcome.delay
        tick += 1
        heapq.heappush(heap, (due, tick, lane))
    violations += leftover_problems([run.deployment.pk for run in runs])
    return Result(
        sorted(runs, key=lambda r: r.plan.index), violations, skipped, time.monotonic() - began
    )


def percentiles(values: list[float]) -> dict:
    """p50, p95 (nearest rank) and max, rounded to milliseconds."""
    if not values:
        return {"p50": None, "p95": None, "max": None}
    ordered = sorted(values)

    def rank(p):
        return ordered[max(math.ceil(p * len(ordered)) - 1, 0)]

    return {"p50": round(rank(0.5), 3), "p95": round(rank(0.95), 3), "max": round(ordered[-1], 3)}
