"""Shared set-up for engine tests: a sandbox-backed release of one component, driven to the end,
on time the test controls.

The engine's clock (deployments/clock.py) follows the sandbox's simulated clock, and that clock is
frozen: it moves only when the test moves it. `drive` moves it by each step's delay instead of
sleeping, so a 900 s rollout deadline is 900 simulated seconds, reached after the same steps on a
fast machine and on a loaded one. Tests whose engine runs elsewhere (Celery worker threads or
processes) move it with `keep_time`: a fixed amount of simulated time per step the engine has
taken, never per real second.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from datetime import datetime, timedelta

from django.utils import timezone

from deployments import clock
from deployments.engine import advance, run_to_end
from deployments.models import Deployment, Release
from environments.models import Component

CI_REGISTRY = "asia-northeast3-docker.pkg.dev/nemo-dev/registry"
# What one engine step is worth in simulated seconds when the test cannot see its delay (a worker
# thread or process ran it): the default poll.
STEP_SECONDS = 2.0
# Real seconds a test waits on work it cannot drive itself (a worker) before it gives up: a guard
# against a hang, far beyond what the work takes on any machine, never a deadline it races.
PATIENCE = 600.0

_lock = threading.Lock()
_current: SimTime | None = None


class SimTime:
    """The sandbox's clock, frozen, as the engine's clock. `sleep(s)` moves it `s` seconds (the
    sandbox replays what happens meanwhile); `now()` is it as an aware datetime, the wall clock's
    time when it was frozen plus the simulated seconds moved since. (So it stays near what the
    wall clock stamps on rows, leases and `created_at`: the engine's clock only runs ahead by
    what the test moved it.)

        with SimTime(sandbox) as sim:   # the `sim_time` fixture in tests/conftest.py
            drive(deployment)
    """

    def __init__(self, sandbox):
        self.sandbox = sandbox
        self.clock = sandbox.world.clock
        self.epoch = timezone.now()
        self._stack = ExitStack()

    def seconds(self) -> float:
        """Simulated seconds since the sandbox started."""
        return self.clock.now()

    def now(self) -> datetime:
        return self.epoch + timedelta(seconds=self.clock.now())

    def sleep(self, seconds: float | None) -> None:
        if seconds and seconds > 0:
            self.sandbox.advance(seconds)

    # `monotonic` and `sleep` together stand in for the `time` module of code that paces itself
    # on real time (bench/campaign.py's run_campaign).
    monotonic = seconds

    def __enter__(self) -> SimTime:
        global _current
        self.clock.set_speed(0)
        self.epoch = timezone.now() - timedelta(seconds=self.clock.now())
        # One time line: the sandbox stamps its timestamps and Cloud Monitoring points on the
        # engine's clock, so a window the engine asks Monitoring for holds what it observed.
        self.sandbox.set_wall_epoch(self.epoch.timestamp())
        self._stack.enter_context(clock.driven_by(self.now))
        with _lock:
            self._previous, _current = _current, self
        return self

    def __exit__(self, *exc) -> None:
        global _current
        with _lock:
            _current = self._previous
        self._stack.close()


def sim_time() -> SimTime:
    """The SimTime in force (the `engine` or `sim_time` fixture)."""
    if _current is None:
        raise RuntimeError("no simulated time: use the `engine` or `sim_time` fixture")
    return _current


def new_release(sandbox, environment, component, n=1, branch=None):
    """Push a fresh image as CI would, and record its release with a queued deployment."""
    target = Component.objects.select_related("environment").get(
        environment__name=environment, name=component
    )
    sha = f"{n:040x}"
    image = f"{CI_REGISTRY}/{target.image}:{sha}"
    digest = sandbox.world.registry.push_new(image)
    release = Release.objects.create(
        component=target,
        repository="nemo-team/nemo-x",
        branch=branch or ("main" if environment == "prod" else "develop"),
        sha=sha,
        version=f"v{100 + n}",
        author="dev-alice",
        image=image,
        digest=digest,
    )
    return Deployment.objects.create(
        release=release,
        component=target,
        state="queued",
        strategy=target.strategy,
        queued_at=release.created_at,
    )


def drive(deployment, **kwargs) -> Deployment:
    """Run the engine synchronously to the end; each step's delay passes in simulated time."""
    return run_to_end(deployment.pk, sleep=sim_time().sleep, **kwargs)


def step_until(deployment, done: Callable[[Deployment], bool], max_steps: int = 500) -> Deployment:
    """Advance the deployment step by step (each delay passing in simulated time) until
    `done(deployment)`; fails if it never is."""
    sim = sim_time()
    for _ in range(max_steps):
        deployment.refresh_from_db()
        if done(deployment):
            return deployment
        outcome = advance(deployment.pk)
        if outcome.finished:
            deployment.refresh_from_db()
            assert done(deployment), f"ended {deployment.state} first: {deployment.reason}"
            return deployment
        sim.sleep(outcome.delay)
    raise AssertionError(f"not there after {max_steps} steps: {deployment.state}")


def keep_time(
    sandbox,
    deployment_id: int,
    done: Callable[[], object],
    step: float = STEP_SECONDS,
    every: tuple[float, Callable[[], None]] | None = None,
    patience: float = PATIENCE,
):
    """While an engine we do not drive (a worker) runs the deployment, move the frozen sandbox
    clock `step` simulated seconds each time the deployment's row shows a finished step (a new
    `next_check_at` or state), until `done()` returns something truthy, which is returned.

    Simulated time thus passes with the engine's work, not with real time: a loaded machine
    makes the worker slower, and time slower with it. `every=(seconds, call)` calls `call`
    every `seconds` real seconds (what beat would send). `patience` guards against a hang."""
    rows = Deployment.objects.filter(pk=deployment_id).values_list("state", "next_check_at")
    seen = rows.first()
    started = last_call = time.monotonic()
    while not (value := done()):
        now = time.monotonic()
        assert now - started < patience, f"nothing after {patience:g}s: {rows.first()}"
        if every and now - last_call >= every[0]:
            every[1]()
            last_call = now
        if (current := rows.first()) != seen:
            seen = current
            sandbox.advance(step)
        time.sleep(0.01)
    return value


def available_over_time(sandbox, project, mig):
    """Total available instances of the MIG at each state it passed through."""
    return [
        sum(cell["available"] for zone in state.values() for cell in zone.values())
        for _, state in sandbox.history(project, mig)
    ]
