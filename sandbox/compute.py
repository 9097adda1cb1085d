"""Compute Engine state: instances as timelines, MIGs, operations, and how GCP renders them.

Nothing here changes by itself: an instance's status at time t is a function of its timestamps,
so any request at any moment sees the state the real service would show at that moment.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import asdict, dataclass, field

CREATING, RECREATING, RESTARTING, REFRESHING = "CREATING", "RECREATING", "RESTARTING", "REFRESHING"


@dataclass
class Instance:
    """A VM. Its boot is a timeline: started → RUNNING at running_at → healthy at ready_at."""

    name: str
    zone: str
    id: str
    created_at: float
    started_at: float
    running_at: float
    ready_at: float | None  # None: never passes its health check
    template: str = ""  # project-relative template path, for MIG members
    action: str = CREATING  # what the current boot is for
    delete_at: float | None = None
    gone_at: float | None = None
    body: dict = field(default_factory=dict)  # a standalone VM's own fields (metadata, …)
    services: dict[str, float] = field(default_factory=dict)  # component → back up at (VM only)
    error: dict | None = None  # {"code", "message"}: the group's last try to create it failed
    retry_at: float | None = None  # when the group tries to create it again

    @property
    def deleting(self) -> bool:
        return self.delete_at is not None

    @property
    def failed(self) -> bool:
        """The VM was never created: the group keeps the slot and retries (lastAttempt.errors)."""
        return self.error is not None

    def running(self, t: float) -> bool:
        return not self.failed and not self.deleting and t >= self.running_at

    def available(self, t: float) -> bool:
        return self.running(t) and self.ready_at is not None and t >= self.ready_at

    def never_healthy(self) -> bool:
        return self.ready_at is None

    def status(self, t: float) -> str:
        """Empty for a VM that does not exist (a failed creation): no instanceStatus on GCP."""
        if self.failed:
            return ""
        if self.deleting:
            return "STOPPING"
        if t >= self.running_at:
            return "RUNNING"
        halfway = self.started_at + (self.running_at - self.started_at) / 2
        if self.action == RESTARTING:
            return "STOPPING" if t < halfway else "STAGING"
        return "PROVISIONING" if t < halfway else "STAGING"

    def current_action(self, t: float) -> str:
        if self.deleting:
            return "DELETING"
        if self.failed:
            return CREATING
        if t < self.running_at:
            return self.action
        if self.ready_at is None or t < self.ready_at:
            return "VERIFYING"
        return "NONE"

    def health(self, t: float) -> str:
        if self.deleting:
            return "DRAINING"
        if t < self.running_at:
            return "UNKNOWN"
        if self.ready_at is None:
            return (
                "UNHEALTHY"
                if t >= self.running_at + (self.running_at - self.started_at)
                else "UNKNOWN"
            )
        return "HEALTHY" if t >= self.ready_at else "UNKNOWN"

    def boot(self, t: float, boot_time: float, healthy: bool, action: str) -> None:
        self.started_at = t
        self.running_at = t + boot_time / 2
        self.ready_at = t + boot_time if healthy else None
        self.action = action

    def event_times(self) -> list[float]:
        return [x for x in (self.running_at, self.ready_at, self.gone_at) if x is not None]


@dataclass
class Mig:
    """A regional managed instance group: the settings a user controls, plus its instances."""

    name: str
    project: str
    region: str
    id: str
    created_at: float
    zones: list[str]
    config: dict  # baseInstanceName, versions, targetSize, updatePolicy, autoHealingPolicies, …
    instances: list[Instance] = field(default_factory=list)
    generation: int = 0

    @property
    def path(self) -> str:
        return f"regions/{self.region}/instanceGroupManagers/{self.name}"

    @property
    def group_path(self) -> str:
        return f"regions/{self.region}/instanceGroups/{self.name}"

    def live(self) -> list[Instance]:
        return [i for i in self.instances if not i.deleting]

    def fingerprint(self) -> str:
        return fingerprint({"config": self.config, "generation": self.generation})


@dataclass
class Operation:
    """A Compute operation; what it changes (`effect`) happens when it is DONE without error."""

    name: str
    scope: str  # "global", "regions/<r>" or "zones/<z>"
    id: str
    operation_type: str
    target: str  # project-relative path of the resource it acts on
    target_id: str
    insert_at: float
    done_at: float | None  # None: never finishes
    effect: dict | None = None
    error: dict | None = None  # {"code", "message", "httpStatus"}
    applied: bool = False
    request_id: str = ""

    @property
    def path(self) -> str:
        return f"{self.scope}/operations/{self.name}"

    def status(self, t: float) -> str:
        if self.done_at is not None and t >= self.done_at:
            return "DONE"
        return "RUNNING" if t >= self.insert_at + 0.1 else "PENDING"


@dataclass
class Project:
    templates: dict[str, dict] = field(default_factory=dict)  # path → API body
    migs: dict[str, Mig] = field(default_factory=dict)
    vms: dict[str, Instance] = field(default_factory=dict)  # standalone zonal instances
    backend_services: dict[str, dict] = field(default_factory=dict)
    operations: dict[str, Operation] = field(default_factory=dict)
    autoscalers: dict[str, dict] = field(default_factory=dict)  # path → name, target, policy

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Project:
        def instance(d):
            return Instance(**d)

        def mig(d):
            d = dict(d)
            d["instances"] = [instance(i) for i in d["instances"]]
            return Mig(**d)

        return cls(
            templates=data["templates"],
            migs={k: mig(v) for k, v in data["migs"].items()},
            vms={k: instance(v) for k, v in data["vms"].items()},
            backend_services=data["backend_services"],
            operations={k: Operation(**v) for k, v in data["operations"].items()},
            autoscalers=data.get("autoscalers", {}),
        )


def verb(operation_type: str) -> str:
    """'compute.regionInstanceGroupManagers.patch' → 'patch'; a short type is its own verb."""
    return operation_type.rsplit(".", 1)[-1]


def fingerprint(data) -> str:
    digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).digest()
    return base64.b64encode(digest[:8]).decode()


def metadata_items(body: dict) -> dict[str, str]:
    return {i["key"]: i.get("value", "") for i in body.get("metadata", {}).get("items", [])}


def metadata_images(body: dict) -> list[str]:
    """The image references a VM's (or a template's properties') metadata names: the values
    of its keys with "image" in them, as the deploy steps write them."""
    return [v for k, v in metadata_items(body).items() if "image" in k]


def merge_patch(target: dict, patch: dict) -> dict:
    """JSON merge patch (RFC 7396), except FixedOrPercent values, which are replaced whole."""
    merged = dict(target)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        elif (
            isinstance(value, dict)
            and isinstance(merged.get(key), dict)
            and key not in ("maxSurge", "maxUnavailable", "targetSize")
        ):
            merged[key] = merge_patch(merged[key], value)
        else:
            merged[key] = value
    return merged
