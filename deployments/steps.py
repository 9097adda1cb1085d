"""What a step of the engine works with and answers: `Step`, `Outcome`, `StepFailed`.

Strategies, promotion and verification build on this module; the engine imports them, never
the other way round.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings

from gcp.errors import OperationFailed

from . import clock
from .models import Deployment

# Request ids are UUIDv5s in this namespace, named by deployment, intent and attempt.
REQUEST_IDS = uuid.UUID("8c1f1e0e-6a59-4a8e-9d0c-5f2b7c0a6e31")
# The timeline says what a step is waiting for at most this often (seconds).
WAITING_EVERY = 60.0


@dataclass(frozen=True)
class Outcome:
    """What the step asks for: run again after `delay` seconds, or nothing (None)."""

    delay: float | None

    @property
    def finished(self) -> bool:
        return self.delay is None


NOW = Outcome(0.0)
STOP = Outcome(None)


def later(seconds: float | None = None) -> Outcome:
    return Outcome(settings.GANTRY_ENGINE_POLL_SECONDS if seconds is None else seconds)


class StepFailed(Exception):
    """A step cannot go on; the message is for the person reading the deployment page."""


class Step:
    """What a step works with: the deployment, its component and environment, and GCP."""

    def __init__(self, deployment: Deployment, gcp):
        self.deployment = deployment
        self.component = deployment.component
        self.environment = deployment.component.environment
        self.gcp = gcp

    @property
    def project(self) -> str:
        return self.environment.gcp_project

    @property
    def region(self) -> str:
        return self.environment.region

    def option(self, name: str, default):
        """A per-component engine setting from the topology's options, else the default."""
        value = self.component.options.get(name, default)
        return type(default)(value) if default is not None else value

    def now(self) -> datetime:
        return clock.now()

    def seconds_in_state(self) -> float:
        """Seconds the current state's deadlines have counted (a pause stops them)."""
        return (self.now() - self.deployment.clock_started_at).total_seconds()

    def save(self, message: str = "", kind: str = "step", **fields):
        """Record what the step did on the row (and, with a message, in the timeline)."""
        for name, value in fields.items():
            setattr(self.deployment, name, value)
        if fields:
            self.deployment.save(update_fields=list(fields))
        if message:
            self.deployment.log(kind, message)

    def waiting(self, line: str) -> None:
        """Say what the step waits for: kept on the row each time, written to the timeline at
        most once a minute."""
        progress = self.deployment.progress
        last = progress.get("waiting_logged")
        now = self.now()
        due = last is None or (now - datetime.fromisoformat(last)).total_seconds() >= WAITING_EVERY
        update = {**progress, "waiting": line} | (
            {"waiting_logged": now.isoformat()} if due else {}
        )
        self.save(f"waiting: {line}" if due else "", kind="progress", progress=update)

    def request_id(self, what: str) -> str:
        """The `requestId` for the next call made for `what`: the same until that call's
        operation is recorded, so a retried call (timed out, throttled) is one request to GCP."""
        attempt = sum(1 for op in self.deployment.operations if op["what"] == what)
        return str(uuid.uuid5(REQUEST_IDS, f"deployment/{self.deployment.pk}/{what}/{attempt}"))

    def operation(self, ref, what: str):
        """Record a started GCP operation, so a re-run polls it instead of starting another."""
        operations = [
            *self.deployment.operations,
            {"id": str(ref), "what": what, "at": self.now().isoformat()},
        ]
        self.save(f"{what}: operation {ref.name}", operations=operations)

    def pending_operation(self, what: str) -> str | None:
        """The last recorded operation for `what`, if it has not finished yet."""
        for op in reversed(self.deployment.operations):
            if op["what"] == what:
                if op.get("done"):
                    return None
                return op["id"]
        return None

    def started(self, what: str) -> bool:
        """Whether an operation for `what` was ever recorded."""
        return any(op["what"] == what for op in self.deployment.operations)

    def operation_done(self, what: str) -> bool | None:
        """Poll the recorded operation for `what`: True done, False running, None none recorded.
        Raises StepFailed if it ended in error."""
        ref = self.pending_operation(what)
        if ref is None:
            return None
        op = self.gcp.get_operation(ref)
        if not op.done:
            return False
        if op.errors:
            raise StepFailed(str(OperationFailed.of(op)))
        operations = [
            dict(o, done=True) if o["id"] == ref else o for o in self.deployment.operations
        ]
        self.save(operations=operations)
        return True
