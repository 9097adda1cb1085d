"""The sandbox's whole state, one lock around it, and the event loop that moves it in time.

Nothing runs in the background. Each request first calls `sync()`, which replays every event
(an operation finishing, an instance booting or turning healthy, a build step) due since the
last request, in time order, running the MIG updater after each. The state a request sees is
therefore the same whether the sandbox was polled every millisecond or not at all.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from . import links
from .clock import SimClock
from .cloudbuild import Builds
from .compute import REFRESHING, Instance, Mig, Project, metadata_images
from .faults import Faults, instance_error_message
from .github import GitHub
from .registry import Registry
from .rollout import reconcile, summary

DEFAULT_TOPOLOGY = Path(__file__).resolve().parent.parent / "topology" / "nemo.yaml"
HISTORY_LIMIT = 10_000  # states kept per MIG for tests and /_sandbox/state


class World:
    def __init__(
        self,
        topology: str | Path | None = None,
        speed: float = 1.0,
        boot_time: float = 20.0,
        operation_time: float = 1.0,
        delete_time: float = 5.0,
        build_queue_time: float = 1.0,
        build_step_time: float = 3.0,
        wait_timeout: float = 10.0,
        create_retry_time: float = 10.0,
    ):
        self.lock = threading.RLock()
        self.clock = SimClock(speed)
        self.topology_path = Path(topology) if topology else DEFAULT_TOPOLOGY
        self.boot_time = boot_time
        self.operation_time = operation_time
        self.delete_time = delete_time
        self.build_queue_time = build_queue_time
        self.build_step_time = build_step_time
        self.wait_timeout = wait_timeout  # real seconds an operations.wait call may block
        self.create_retry_time = create_retry_time  # a MIG retries a failed VM creation so often
        # Simulated seconds to a second of Cloud Monitoring's time line (monitoring_time): 1 in
        # tests, which move the clock themselves; the clock's speed for a sandbox that runs on
        # the wall clock (the demo), so its points land where a wall-clock reader looks.
        self.monitoring_scale = 1.0
        self.reset()

    def reset(self) -> None:
        """Forget everything and seed again from the topology, keeping the clock running."""
        from .seed import load_topology, seed

        with self.lock:
            self.t = self.clock.now()
            self.started_at = self.t
            self.wall_epoch = time.time() - self.t
            self.counter = 0
            self.projects: dict[str, Project] = {}
            self.registry = Registry()
            self.builds = Builds(self)
            self.faults = Faults()
            self.github = GitHub()
            self.environments: dict[str, dict] = {}
            self.history: dict[tuple[str, str], list] = defaultdict(list)
            seed(self, load_topology(self.topology_path))
            self._record(self.t)

    # --- time -------------------------------------------------------------------------------

    def sync(self) -> float:
        """Replay every event due up to the clock's now; returns the simulated time."""
        now = self.clock.now()
        while (t := self._next_event()) is not None and t <= now:
            self.t = max(self.t, t)
            self._step(self.t)
        self.t = max(self.t, now)
        return self.t

    def settle(self) -> None:
        """Apply what a request just made due at the current time (e.g. a zero-time operation)."""
        self._step(self.t)

    def _next_event(self) -> float | None:
        times = []
        for project in self.projects.values():
            for op in project.operations.values():
                if not op.applied and op.done_at is not None:
                    times.append(op.done_at)
            for mig in project.migs.values():
                for i in mig.instances:
                    if i.gone_at is not None:
                        times.append(i.gone_at)
                    times += [
                        x
                        for x in (i.running_at, i.ready_at, i.retry_at)
                        if x is not None and x > self.t
                    ]
        if (build_time := self.builds.next_event()) is not None:
            times.append(build_time)
        return min(times, default=None)

    def _step(self, t: float) -> None:
        from .compute_api import apply_effect

        due = [
            (op.done_at, op.id, name, op)
            for name, project in self.projects.items()
            for op in project.operations.values()
            if not op.applied and op.done_at is not None and op.done_at <= t
        ]
        for _, _, name, op in sorted(due, key=lambda row: row[:2]):
            op.applied = True
            if op.effect and not op.error:
                apply_effect(self, name, op, t)
        for name, project in self.projects.items():
            for mig in project.migs.values():
                mig.instances = [i for i in mig.instances if i.gone_at is None or i.gone_at > t]
                for i in mig.instances:
                    if i.retry_at is not None and i.retry_at <= t:
                        self._try_create(mig, i, t)
                reconcile(mig, self.version_templates(name, mig), self, t)
        self.builds.advance(t)
        self._record(t)

    def _record(self, t: float) -> None:
        for name, project in self.projects.items():
            for mig in project.migs.values():
                rows = self.history[(name, mig.name)]
                state = summary(mig, t)
                if not rows or rows[-1][1] != state:
                    rows.append((t, state))
                    del rows[:-HISTORY_LIMIT]

    def monitoring_time(self) -> tuple[Callable[[float], float], Callable[[float], float]]:
        """Cloud Monitoring's time line as it stands (read under the lock): simulated time →
        timestamp (seconds since 1970), and back."""
        base, origin, scale = (
            self.wall_epoch + self.started_at,
            self.started_at,
            self.monitoring_scale,
        )
        return (
            lambda t: base + (t - origin) / scale,
            lambda wall: origin + (wall - base) * scale,
        )

    def rfc3339(self, t: float) -> str:
        moment = datetime.fromtimestamp(self.wall_epoch + t, UTC)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    # --- ids and names ------------------------------------------------------------------------

    def new_id(self) -> str:
        self.counter += 1
        digest = hashlib.sha256(f"id-{self.counter}".encode()).digest()
        return str(int.from_bytes(digest[:7], "big") + 10**18)

    def suffix(self, length: int = 4) -> str:
        self.counter += 1
        digest = hashlib.sha256(f"name-{self.counter}".encode()).digest()
        alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
        return "".join(alphabet[b % 36] for b in digest[:length])

    # --- what the MIG updater asks for (rollout.Fleet) ---------------------------------------

    def version_templates(self, project: str, mig: Mig) -> list[str]:
        return [links.key(project, v["instanceTemplate"])[1] for v in mig.config["versions"]]

    def template_images(self, project: str, template: str) -> list[str]:
        body = self.projects[project].templates.get(template, {})
        return metadata_images(body.get("properties", {}))

    def template_healthy(self, project: str, template: str) -> bool:
        return not self.faults.unhealthy(template, self.template_images(project, template))

    def lb_healthy(self, mig: Mig, instance: Instance, t: float) -> bool:
        """The load balancer's health check passes: the VM is available and no fault says no."""
        images = self.template_images(mig.project, instance.template)
        lb_fault = self.faults.lb_unhealthy(instance.template, images, mig.name)
        return instance.available(t) and not lb_fault

    def create_instance(self, mig: Mig, zone: str, template: str, t: float) -> Instance:
        name = f"{mig.config.get('baseInstanceName', mig.name)}-{self.suffix()}"
        instance = Instance(name, zone, self.new_id(), t, t, t, t, template=template)
        mig.instances.append(instance)
        self._try_create(mig, instance, t)
        return instance

    def _try_create(self, mig: Mig, instance: Instance, t: float) -> None:
        """One attempt at creating the VM: it boots, or an `instance_error` fault stops it and
        the group tries again `create_retry_time` later."""
        images = self.template_images(mig.project, instance.template)
        fault = self.faults.instance_error(instance.template, images, mig.name)
        if fault:
            instance.error = instance_error_message(fault, mig.project, mig.region, instance.zone)
            instance.retry_at = t + self.create_retry_time
            return
        instance.error = instance.retry_at = None
        instance.created_at = t
        healthy = self.template_healthy(mig.project, instance.template)
        instance.boot(t, self.boot_time, healthy, "CREATING")

    def delete_instance(self, instance: Instance, t: float) -> None:
        instance.delete_at, instance.retry_at = t, None
        instance.gone_at = t + self.delete_time

    def update_in_place(self, mig: Mig, instance: Instance, template: str, action: str, t: float):
        instance.template = template
        boot = 0.0 if action == REFRESHING else self.boot_time
        instance.boot(t, boot, self.template_healthy(mig.project, template), action)

    def apply_unhealthy_fault(self) -> None:
        """Instances not yet healthy on a template now marked bad will never be."""
        for name, project in self.projects.items():
            for mig in project.migs.values():
                for i in mig.instances:
                    pending = i.ready_at is not None and i.ready_at > self.t
                    if pending and not self.template_healthy(name, i.template):
                        i.ready_at = None

    def heal(self) -> None:
        """Faults cleared: instances stuck unhealthy pass their next health check."""
        for project in self.projects.values():
            for mig in project.migs.values():
                for i in mig.instances:
                    if i.ready_at is None:
                        i.ready_at = max(self.t, i.running_at)

    # --- snapshots ----------------------------------------------------------------------------

    def to_dict(self) -> dict:
        return {
            "t": self.t,
            "started_at": self.started_at,
            "wall_epoch": self.wall_epoch,
            "counter": self.counter,
            "projects": {k: p.to_dict() for k, p in self.projects.items()},
            "registry": self.registry.repositories,
            "builds": self.builds.to_dict(),
            "faults": self.faults.to_dict(),
            "github": self.github.to_dict(),
            "environments": self.environments,
        }

    def save(self, path: str | Path) -> None:
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        with self.lock:
            tmp.write_text(json.dumps(self.to_dict()))
        os.replace(tmp, path)

    def load(self, path: str | Path) -> None:
        data = json.loads(Path(path).read_text())
        with self.lock:
            self.clock.set(data["t"])
            self.t = data["t"]
            self.started_at = data["started_at"]
            self.wall_epoch = data["wall_epoch"]
            self.counter = data["counter"]
            self.projects = {k: Project.from_dict(v) for k, v in data["projects"].items()}
            self.registry = Registry(data["registry"])
            self.builds = Builds.from_dict(self, data["builds"])
            self.faults = Faults(**data["faults"])
            self.github = GitHub(data.get("github"))
            self.environments = data["environments"]
            self.history = defaultdict(list)
            self._record(self.t)
