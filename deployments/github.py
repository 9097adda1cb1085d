"""GitHub webhook payloads: signature check, and the few fields Gantry needs of `workflow_run`
and `deployment_protection_rule`."""

from __future__ import annotations

import hashlib
import hmac
import math
from dataclasses import dataclass


class PayloadError(ValueError):
    """A payload that cannot be used; the message names the missing or bad field."""


def signature_ok(secret: str, body: bytes, header: str | None) -> bool:
    """Check X-Hub-Signature-256 (HMAC-SHA256 of the raw body), in constant time."""
    if not secret or not header or not header.startswith("sha256=") or not header.isascii():
        return False  # compare_digest refuses non-ASCII text: such a header is simply wrong
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header.removeprefix("sha256="))


def sign(secret: str, body: bytes) -> str:
    """The header value GitHub would send for this body (used by tests and benchmarks)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


MAX_DEPTH = 32


def _check_object(payload) -> None:
    """A JSON object fit to store: no deeper than GitHub's payloads (json.dumps recurses, and one
    nested hundreds of levels deep overflows the stack), with no NUL character or NaN (which
    PostgreSQL's jsonb refuses)."""
    if not isinstance(payload, dict):
        raise PayloadError("payload must be a JSON object")
    level = [payload]
    for _ in range(MAX_DEPTH):
        children = []
        for node in level:
            for item in [*node, *node.values()] if isinstance(node, dict) else node:
                if isinstance(item, dict | list):
                    children.append(item)
                elif isinstance(item, str) and "\x00" in item:
                    raise PayloadError("payload holds a NUL character (\\u0000)")
                elif isinstance(item, float) and not math.isfinite(item):
                    raise PayloadError("payload holds NaN or Infinity, which JSON does not allow")
        if not children:
            return
        level = children
    raise PayloadError(f"payload is nested more than {MAX_DEPTH} levels deep")


def _get(payload, path: str, kind=str, max_length=None):
    """The field at `path`, of type `kind`; a string no longer than the column that keeps it."""
    value = payload
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            raise PayloadError(f"missing field {path}")
        value = value[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise PayloadError(f"field {path} must be {kind.__name__}, not {type(value).__name__}")
    if max_length and len(value) > max_length:
        raise PayloadError(f"field {path} is longer than {max_length} characters")
    return value


def _counter(payload, path: str) -> int:
    """A run number: a whole number that fits the release's version column as v<number>."""
    value = _get(payload, path, int)
    if not 0 <= value < 10**15:
        raise PayloadError(f"field {path} must be between 0 and 10^15, not {value}")
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
        _check_object(payload)
        action = _get(payload, "action", max_length=64)
        run = _get(payload, "workflow_run", dict)
        sha = _get(payload, "workflow_run.head_sha")
        if len(sha) != 40 or any(c not in "0123456789abcdef" for c in sha):
            raise PayloadError("field workflow_run.head_sha must be a 40-character hex SHA")
        head_commit = run.get("head_commit") if isinstance(run.get("head_commit"), dict) else {}
        message = head_commit.get("message") or run.get("display_title") or ""
        return cls(
            action=action,
            repository=_get(payload, "repository.full_name", max_length=140),
            workflow=_get(payload, "workflow_run.name"),
            branch=_get(payload, "workflow_run.head_branch"),
            sha=sha,
            conclusion=run.get("conclusion") or "",
            run_url=_get(payload, "workflow_run.html_url", max_length=300),
            actor=_get(payload, "workflow_run.actor.login", max_length=100),
            run_number=_counter(payload, "workflow_run.run_number"),
            run_attempt=_get(payload, "workflow_run.run_attempt", int),
            title=str(message).splitlines()[0][:200] if message else "",
        )


@dataclass(frozen=True)
class ProtectionRuleRequest:
    """A `deployment_protection_rule` delivery: a job waits to deploy `sha` to `environment`."""

    action: str
    repository: str
    environment: str
    callback_url: str
    sha: str
    ref: str
    deployment_id: int | None
    event: str
    sender: str

    @classmethod
    def from_payload(cls, payload) -> ProtectionRuleRequest:
        _check_object(payload)
        sha = _get(payload, "deployment.sha")
        if len(sha) != 40 or any(c not in "0123456789abcdef" for c in sha):
            raise PayloadError("field deployment.sha must be a 40-character hex SHA")
        callback_url = _get(payload, "deployment_callback_url", max_length=500)
        if not callback_url.startswith(("https://", "http://")):
            raise PayloadError("field deployment_callback_url must be an http(s) URL")
        deployment = payload["deployment"]
        sender = payload.get("sender") if isinstance(payload.get("sender"), dict) else {}
        deployment_id = deployment.get("id")
        return cls(
            action=_get(payload, "action", max_length=64),
            repository=_get(payload, "repository.full_name", max_length=140),
            environment=_get(payload, "environment", max_length=255),
            callback_url=callback_url,
            sha=sha,
            ref=str(deployment.get("ref") or "")[:255],
            deployment_id=deployment_id
            if isinstance(deployment_id, int) and 0 < deployment_id < 2**63
            else None,
            event=str(payload.get("event") or ""),
            sender=str(sender.get("login") or "")[:100],
        )
