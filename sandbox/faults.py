"""Injected faults: what the sandbox should get wrong on purpose, and how often.

Kinds (POST /_sandbox/faults with a JSON object):
  {"kind": "unhealthy", "template": NAME} or {"kind": "unhealthy", "image": SUBSTRING}
      instances of that template (or whose template/VM metadata names that image) never pass
      their health check, for the MIG's autohealing and the load balancer alike; the stack
      reports the component down while they serve.
  {"kind": "lb_unhealthy", "template": NAME} or "image": SUBSTRING or "mig": NAME
      the load balancer (backendServices.getHealth) reports those instances UNHEALTHY, while
      the MIG's own autohealing check (instanceHealth) may still say HEALTHY.
  {"kind": "instance_error", "template": NAME or "image": SUBSTRING or "mig": NAME,
   "code": "QUOTA_EXCEEDED" | "ZONE_RESOURCE_POOL_EXHAUSTED" | …, "message": "…"}
      instances the group creates from then on for that template never come up: the group's
      operation still ends DONE, listManagedInstances shows them CREATING with no
      instanceStatus and `lastAttempt.errors`, and the group never turns stable. The group
      retries each creation every `create_retry_time` simulated seconds; once the fault is
      removed the next try succeeds. `message` defaults to GCP's own for that code.
  {"kind": "http_error", "path": GLOB, "method": "GET", "status": 429|503, "count": N,
   "reason": "rateLimitExceeded"}
      the next N matching requests answer that status in the API's error shape; `reason` is
      the error's reason as Google sends it (Compute throttles with 403 `rateLimitExceeded` or
      `userRateLimitExceeded`, and refuses with 403 `quotaExceeded`). With `"every": K`
      instead of `count`, every K-th matching request fails, until the fault is removed.
  {"kind": "operation_error", "target": GLOB, "operationType": "patch", "count": 1,
   "code": "…", "message": "…"}
      the next matching Compute operation ends DONE with that error, and changes nothing.
  {"kind": "operation_stuck", "target": GLOB, "operationType": …, "count": 1}
      the next matching operation never finishes.
  {"kind": "down", "environment": ENV, "component": NAME}
      that stack endpoint answers 503 whatever the instances do; a MySQL component's stand-in
      (sandbox/mysql.py) answers ERR 1040 "Too many connections" instead of its greeting.
  {"kind": "slow", "template": NAME or "image": SUBSTRING or "mig": NAME, "factor": 1.3}
      the app on those instances answers `factor` (a number > 0) times slower: every latency
      quantile of its Cloud Monitoring series (sandbox/monitoring_data.py) is multiplied by it;
      several `slow` faults on one instance multiply.
  {"kind": "errors", "template": … or "image": … or "mig": …, "rate": 0.05}
      the share of its requests answered SERVER_ERROR is `rate` (0..1; otherwise 0.1 %); the
      newest such fault wins.
  {"kind": "no_metrics", "template": … or "image": … or "mig": …}
      the app exports no Prometheus series at all (no metrics endpoint); the VM's own series
      (CPU, memory, network, disk) are unaffected.
  {"kind": "db_connections", "environment": ENV, "component": NAME, "connections": 3900,
   "max": 4000}
      the Cloud SQL instance of that MySQL component holds about `connections` connections
      (an integer >= 0, never above `max`, the connection limit: an integer > 0, default 4000)
      and its CPU and memory rise with connections / max; the newest such fault wins.
  Series are computed when read, so these four shape every sample of what they select, past
  ones too. "template" and "mig" select MIG members only; "image" also selects a
  standalone VM whose metadata names the image.
`target` globs match the operation's target path (e.g. "*/instanceGroupManagers/nemo-backend-mig");
`operationType` matches the full type ("compute.regionInstanceGroupManagers.patch") or its verb
("patch").
"""

from __future__ import annotations

import math
from fnmatch import fnmatchcase

from .compute import verb
from .http import ApiError

KINDS = {
    "unhealthy",
    "lb_unhealthy",
    "instance_error",
    "http_error",
    "operation_error",
    "operation_stuck",
    "down",
    "slow",
    "errors",
    "no_metrics",
    "db_connections",
}
SELECTORS = ("template", "image", "mig")  # what lb_unhealthy, instance_error and app faults pick by
APP_KINDS = ("slow", "errors", "no_metrics")  # how the app behaves, seen in its metrics
MAX_CONNECTIONS = 4000  # a `db_connections` fault's connection limit when it names none
# GCP's messages for the usual reasons a MIG cannot create a VM.
INSTANCE_ERRORS = {
    "QUOTA_EXCEEDED": "Quota 'CPUS' exceeded.  Limit: 24.0 in region {region}.",
    "ZONE_RESOURCE_POOL_EXHAUSTED": (
        "The zone 'projects/{project}/zones/{zone}' does not have enough resources available "
        "to fulfill the request.  Try a different zone, or try again later."
    ),
}


class Faults:
    def __init__(self, items: list[dict] | None = None, next_id: int = 1):
        self.items: list[dict] = items or []
        self.next_id = next_id

    def add(self, spec: dict) -> dict:
        kind = spec.get("kind")
        if kind not in KINDS:
            raise ApiError(400, f"Unknown fault kind {kind!r}; expected one of {sorted(KINDS)}")
        fault = dict(spec)
        if kind == "unhealthy" and not (fault.get("template") or fault.get("image")):
            raise ApiError(400, "An 'unhealthy' fault needs 'template' or 'image'")
        if kind in ("lb_unhealthy", "instance_error") and not any(map(fault.get, SELECTORS)):
            raise ApiError(400, f"An {kind!r} fault needs 'template', 'image' or 'mig'")
        if kind == "instance_error":
            fault.setdefault("code", "QUOTA_EXCEEDED")
        if kind in APP_KINDS:
            check_app_fault(fault)
        if kind == "http_error":
            if not fault.get("path"):
                raise ApiError(400, "An 'http_error' fault needs 'path' (a glob)")
            fault.setdefault("status", 503)
            if "every" in fault:
                every = fault["every"]
                if not isinstance(every, int) or isinstance(every, bool) or every < 1:
                    raise ApiError(400, "'every' must be a positive integer")
                fault.setdefault("seen", 0)
            else:
                fault.setdefault("count", 1)
        if kind in ("operation_error", "operation_stuck"):
            fault.setdefault("target", "*")
            fault.setdefault("count", 1)
        if kind == "down" and not (fault.get("environment") and fault.get("component")):
            raise ApiError(400, "A 'down' fault needs 'environment' and 'component'")
        if kind == "db_connections":
            check_db_connections(fault)
        fault["id"] = str(self.next_id)
        self.next_id += 1
        self.items.append(fault)
        return fault

    def remove(self, fault_id: str) -> bool:
        before = len(self.items)
        self.items = [f for f in self.items if f["id"] != fault_id]
        return len(self.items) < before

    def clear(self) -> None:
        self.items = []

    def _consume(self, fault: dict) -> None:
        fault["count"] = int(fault.get("count", 1)) - 1
        if fault["count"] <= 0:
            self.items.remove(fault)

    def http_fault(self, method: str, path: str) -> dict | None:
        """The `http_error` fault the next matching request answers with: a `count` fault is
        consumed once; an `every` fault counts matching requests and fires on each K-th."""
        for fault in self.items:
            if (
                fault["kind"] == "http_error"
                and fnmatchcase(path, fault["path"])
                and fault.get("method", method).upper() == method
            ):
                if "every" in fault:
                    fault["seen"] = int(fault.get("seen", 0)) + 1
                    if fault["seen"] % int(fault["every"]):
                        continue
                else:
                    self._consume(fault)
                return fault
        return None

    def http_error(self, method: str, path: str) -> int | None:
        fault = self.http_fault(method, path)
        return int(fault["status"]) if fault else None

    def operation_fault(self, operation_type: str, target: str) -> dict | None:
        for fault in self.items:
            wanted = fault.get("operationType")
            if (
                fault["kind"] in ("operation_error", "operation_stuck")
                and fnmatchcase(target, fault["target"])
                and wanted in (None, operation_type, verb(operation_type))
            ):
                self._consume(fault)
                return fault
        return None

    def unhealthy(self, template: str, images: list[str]) -> bool:
        """`template` is a template path or name; `images` the image refs an instance runs."""
        return any(
            f["kind"] == "unhealthy" and selects(f, template, images, mig="") for f in self.items
        )

    def lb_unhealthy(self, template: str, images: list[str], mig: str) -> bool:
        """The load balancer fails the instance's health check (not the MIG's autohealing)."""
        return any(
            f["kind"] == "lb_unhealthy" and selects(f, template, images, mig) for f in self.items
        )

    def instance_error(self, template: str, images: list[str], mig: str) -> dict | None:
        """The `instance_error` fault a new instance of `template` in group `mig` hits, if any."""
        return next(
            (
                f
                for f in self.items
                if f["kind"] == "instance_error" and selects(f, template, images, mig)
            ),
            None,
        )

    def _app_faults(self, kind: str, template: str, images: list[str], mig: str) -> list[dict]:
        return [f for f in self.items if f["kind"] == kind and selects(f, template, images, mig)]

    def slow(self, template: str, images: list[str], mig: str) -> float:
        """How many times slower the instance's app answers (1.0: no `slow` fault selects it)."""
        return math.prod(
            float(f["factor"]) for f in self._app_faults("slow", template, images, mig)
        )

    def error_rate(self, template: str, images: list[str], mig: str) -> float | None:
        """The SERVER_ERROR share the newest `errors` fault selecting the instance sets."""
        rates = [float(f["rate"]) for f in self._app_faults("errors", template, images, mig)]
        return rates[-1] if rates else None

    def no_metrics(self, template: str, images: list[str], mig: str) -> bool:
        """The instance's app exports no Prometheus metrics."""
        return bool(self._app_faults("no_metrics", template, images, mig))

    def down(self, environment: str, component: str) -> bool:
        return any(
            f["kind"] == "down" and f["environment"] == environment and f["component"] == component
            for f in self.items
        )

    def db_connections(self, environment: str, component: str) -> tuple[int, int] | None:
        """(connections, max) the newest `db_connections` fault on the component holds."""
        found = [
            (int(f["connections"]), int(f["max"]))
            for f in self.items
            if f["kind"] == "db_connections"
            and f["environment"] == environment
            and f["component"] == component
        ]
        return found[-1] if found else None

    def to_dict(self) -> dict:
        return {"items": self.items, "next_id": self.next_id}


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_app_fault(fault: dict) -> None:
    """A `slow`, `errors` or `no_metrics` fault names whom it selects and, for the first two,
    a usable value; else the 400 that says what is missing."""
    kind = fault["kind"]
    chosen = [fault[k] for k in SELECTORS if k in fault]
    if not chosen or not all(isinstance(v, str) and v for v in chosen):
        raise ApiError(400, f"A {kind!r} fault needs 'template', 'image' or 'mig' (a string)")
    if kind == "slow" and not (_number(fault.get("factor")) and fault["factor"] > 0):
        raise ApiError(400, "A 'slow' fault needs 'factor', a number above 0 (e.g. 1.3)")
    if kind == "errors" and not (_number(fault.get("rate")) and 0 <= fault["rate"] <= 1):
        raise ApiError(400, "An 'errors' fault needs 'rate', a number from 0 to 1 (e.g. 0.05)")


def _count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_db_connections(fault: dict) -> None:
    """A `db_connections` fault names its component and a count within its limit; else the
    400 that says what is wrong."""
    where = [fault.get(k) for k in ("environment", "component")]
    if not all(isinstance(v, str) and v for v in where):
        raise ApiError(400, "A 'db_connections' fault needs 'environment' and 'component'")
    limit = fault.setdefault("max", MAX_CONNECTIONS)
    if not (_count(limit) and limit > 0):
        raise ApiError(400, "A 'db_connections' fault's 'max' must be an integer above 0")
    count = fault.get("connections")
    if not (_count(count) and 0 <= count <= limit):
        raise ApiError(
            400,
            "A 'db_connections' fault needs 'connections', an integer from 0 to 'max' "
            f"({limit}), e.g. 3900",
        )


def selects(fault: dict, template: str, images: list[str], mig: str) -> bool:
    """Whether `fault` picks an instance of `template` (path or name) running `images` in `mig`."""
    if fault.get("template") and fault["template"] in (template, template.rsplit("/", 1)[-1]):
        return True
    if fault.get("image") and any(fault["image"] in image for image in images):
        return True
    return bool(fault.get("mig")) and fault["mig"] == mig


def instance_error_message(fault: dict, project: str, region: str, zone: str) -> dict:
    """The {code, message} GCP reports for the failed creation (`fault` may set both)."""
    code = fault.get("code", "QUOTA_EXCEEDED")
    default = INSTANCE_ERRORS.get(code, "The instance could not be created ({code}).")
    message = fault.get("message") or default.format(
        code=code, project=project, region=region, zone=zone
    )
    return {"code": code, "message": message}
