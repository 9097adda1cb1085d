"""Injected faults: what the sandbox should get wrong on purpose, and how often.

Kinds (POST /_sandbox/faults with a JSON object):
  {"kind": "unhealthy", "template": NAME} or {"kind": "unhealthy", "image": SUBSTRING}
      instances of that template (or whose template/VM metadata names that image) never pass
      their health check; the stack reports the component down while they serve.
  {"kind": "http_error", "path": GLOB, "method": "GET", "status": 429|503, "count": N,
   "reason": "rateLimitExceeded"}
      the next N matching requests answer that status in the API's error shape; `reason` is
      the error's reason as Google sends it (Compute throttles with 403 `rateLimitExceeded` or
      `userRateLimitExceeded`, and refuses with 403 `quotaExceeded`).
  {"kind": "operation_error", "target": GLOB, "operationType": "patch", "count": 1,
   "code": "…", "message": "…"}
      the next matching Compute operation ends DONE with that error, and changes nothing.
  {"kind": "operation_stuck", "target": GLOB, "operationType": …, "count": 1}
      the next matching operation never finishes.
  {"kind": "down", "environment": ENV, "component": NAME}
      that stack endpoint answers 503 whatever the instances do.
`target` globs match the operation's target path (e.g. "*/instanceGroupManagers/nemo-backend-mig").
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from .http import ApiError

KINDS = {"unhealthy", "http_error", "operation_error", "operation_stuck", "down"}


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
        if kind == "http_error":
            if not fault.get("path"):
                raise ApiError(400, "An 'http_error' fault needs 'path' (a glob)")
            fault.setdefault("status", 503)
            fault.setdefault("count", 1)
        if kind in ("operation_error", "operation_stuck"):
            fault.setdefault("target", "*")
            fault.setdefault("count", 1)
        if kind == "down" and not (fault.get("environment") and fault.get("component")):
            raise ApiError(400, "A 'down' fault needs 'environment' and 'component'")
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
        """The `http_error` fault the next matching request answers with, consumed once."""
        for fault in self.items:
            if (
                fault["kind"] == "http_error"
                and fnmatchcase(path, fault["path"])
                and fault.get("method", method).upper() == method
            ):
                self._consume(fault)
                return fault
        return None

    def http_error(self, method: str, path: str) -> int | None:
        fault = self.http_fault(method, path)
        return int(fault["status"]) if fault else None

    def operation_fault(self, operation_type: str, target: str) -> dict | None:
        for fault in self.items:
            if (
                fault["kind"] in ("operation_error", "operation_stuck")
                and fnmatchcase(target, fault["target"])
                and fault.get("operationType", operation_type) == operation_type
            ):
                self._consume(fault)
                return fault
        return None

    def unhealthy(self, template: str, images: list[str]) -> bool:
        """`template` is a template path or name; `images` the image refs an instance runs."""
        for fault in self.items:
            if fault["kind"] != "unhealthy":
                continue
            if fault.get("template") and fault["template"] in (
                template,
                template.rsplit("/", 1)[-1],
            ):
                return True
            if fault.get("image") and any(fault["image"] in image for image in images):
                return True
        return False

    def down(self, environment: str, component: str) -> bool:
        return any(
            f["kind"] == "down" and f["environment"] == environment and f["component"] == component
            for f in self.items
        )

    def to_dict(self) -> dict:
        return {"items": self.items, "next_id": self.next_id}
