"""GitHub webhook payloads: signature check and the few fields of `workflow_run` Gantry needs."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass


class PayloadError(ValueError):
    """A payload that cannot be used; the message names the missing or bad field."""


def signature_ok(secret: str, body: bytes, header: str | None) -> bool:
    """Check X-Hub-Signature-256 (HMAC-SHA256 of the raw body), in constant time."""
    if not secret or not header or not header.startswith("sha256="):
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header.removeprefix("sha256="))


def sign(secret: str, body: bytes) -> str:
    """The header value GitHub would send for this body (used by tests and benchmarks)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _get(payload, path: str, kind=str):
    value = payload
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            raise PayloadError(f"missing field {path}")
        value = value[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise PayloadError(f"field {path} must be {kind.__name__}, not {type(value).__name__}")
    return value


@dataclass(frozen=True)
class WorkflowRun:
    action: str
    repository: str
    workflow: str
    branch: str
    sha: str
    conclusion: str
    run_url: str
    actor: str
    run_number: int
    run_attempt: int
    title: str

    @property
    def version(self) -> str:
        return f"v{self.run_number}"

    @classmethod
    def from_payload(cls, payload) -> WorkflowRun:
        if not isinstance(payload, dict):
            raise PayloadError("payload must be a JSON object")
        action = _get(payload, "action")
        run = _get(payload, "workflow_run", dict)
        sha = _get(payload, "workflow_run.head_sha")
        if len(sha) != 40 or any(c not in "0123456789abcdef" for c in sha):
            raise PayloadError("field workflow_run.head_sha must be a 40-character hex SHA")
        head_commit = run.get("head_commit") if isinstance(run.get("head_commit"), dict) else {}
        message = head_commit.get("message") or run.get("display_title") or ""
        return cls(
            action=action,
            repository=_get(payload, "repository.full_name"),
            workflow=_get(payload, "workflow_run.name"),
            branch=_get(payload, "workflow_run.head_branch"),
            sha=sha,
            conclusion=run.get("conclusion") or "",
            run_url=_get(payload, "workflow_run.html_url"),
            actor=_get(payload, "workflow_run.actor.login"),
            run_number=_get(payload, "workflow_run.run_number", int),
            run_attempt=_get(payload, "workflow_run.run_attempt", int),
            title=str(message).splitlines()[0][:200] if message else "",
        )
