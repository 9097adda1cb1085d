"""GitHub webhook payloads: signature check, and the few fields Gantry needs of `workflow_run`
and `deployment_protection_rule`."""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import parse_qs, urlsplit


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
FORM = "application/x-www-form-urlencoded"


def decode_body(content_type: str, body: bytes):
    """The JSON payload of a delivery, in either content type a GitHub webhook may be set to:
    `application/json`, or GitHub's default `application/x-www-form-urlencoded`, which carries
    the same JSON in a `payload` field. The signature is over the raw body either way."""
    if content_type.split(";")[0].strip().lower() == FORM:
        try:
            fields = parse_qs(body.decode("ascii"), strict_parsing=True, max_num_fields=16)
        except (UnicodeDecodeError, ValueError) as exc:
            raise PayloadError(f"form body is not URL-encoded: {exc}") from None
        if len(fields.get("payload", [])) != 1:
            raise PayloadError("form body must carry one `payload` field")
        body = fields["payload"][0].encode()
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # Recursion: nested too deep
        raise PayloadError(f"body is not JSON: {exc}") from None


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


def _optional(payload, path: str, max_length: int) -> str:
    """A string GitHub may send as null or leave out: "" then."""
    value = payload
    for key in path.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    if value is None:
        return ""
    if not isinstance(value, str):
        raise PayloadError(f"field {path} must be str, not {type(value).__name__}")
    if len(value) > max_length:
        raise PayloadError(f"field {path} is longer than {max_length} characters")
    return value


def _timestamp(value) -> datetime | None:
    """GitHub's ISO 8601 commit time as an aware datetime. A missing or unreadable one is None:
    it only dates lead time, and a release is not refused for it."""
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def installation_id(payload) -> int | None:
    """The GitHub App installation a delivery came through (`installation.id`), if any."""
    value = payload.get("installation") if isinstance(payload, dict) else None
    value = value.get("id") if isinstance(value, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


@dataclass(frozen=True)
class WorkflowRun:
    """What Gantry reads of a `workflow_run` delivery. `branch` and `workflow` may be "" (GitHub
    sends null for some runs); such runs are ignored, not refused."""

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
    event: str = ""
    head_repository: str = ""
    run_id: int | None = None
    triggering_actor: str = ""  # who started this attempt (a re-run's may not be `actor`)
    committed_at: datetime | None = None  # head_commit.timestamp; None when absent or unreadable

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
        run_id = run.get("id")
        return cls(
            action=action,
            repository=_get(payload, "repository.full_name", max_length=140),
            # Some deliveries (GitHub's own examples among them) leave the run's name empty
            # and name the workflow beside it.
            workflow=_optional(payload, "workflow_run.name", 200)
            or _optional(payload, "workflow.name", 200),
            branch=_optional(payload, "workflow_run.head_branch", 255),
            sha=sha,
            conclusion=run.get("conclusion") or "",
            run_url=_get(payload, "workflow_run.html_url", max_length=300),
            # Older deliveries (and one of GitHub's own examples) have no workflow_run.actor.
            actor=_optional(payload, "workflow_run.actor.login", 100)
            or _optional(payload, "workflow_run.triggering_actor.login", 100)
            or _optional(payload, "sender.login", 100),
            run_number=_counter(payload, "workflow_run.run_number"),
            run_attempt=_get(payload, "workflow_run.run_attempt", int),
            title=str(message).splitlines()[0][:200] if message else "",
            event=_optional(payload, "workflow_run.event", 64),
            head_repository=_optional(payload, "workflow_run.head_repository.full_name", 140),
            run_id=run_id
            if isinstance(run_id, int) and not isinstance(run_id, bool) and 0 < run_id < 2**63
            else None,
            triggering_actor=_optional(payload, "workflow_run.triggering_actor.login", 100),
            committed_at=_timestamp(head_commit.get("timestamp")),
        )


_CALLBACK_PATH = re.compile(
    r"/repos/[^/]+/[^/]+/actions/runs/(\d{1,18})/deployment_protection_rule/?$"
)


def _hex_sha(value, field: str) -> str:
    if not isinstance(value, str) or isinstance(value, bool):
        raise PayloadError(f"field {field} must be str, not {type(value).__name__}")
    if len(value) != 40 or any(c not in "0123456789abcdef" for c in value):
        raise PayloadError(f"field {field} must be a 40-character hex SHA")
    return value


def _positive_id(value) -> int | None:
    """A GitHub id (deployment, installation): a positive 64-bit whole number, else None."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**63:
        return value
    return None


def run_id_of(callback_url: str) -> int | None:
    """The workflow run in `…/repos/{owner}/{repo}/actions/runs/{run_id}/deployment_protection_rule`
    (after any API prefix, such as GitHub Enterprise's /api/v3), or None for another shape."""
    found = _CALLBACK_PATH.search(urlsplit(callback_url).path)
    return _positive_id(int(found.group(1))) if found else None


@dataclass(frozen=True)
class ProtectionRuleRequest:
    """A `deployment_protection_rule` delivery: a job in workflow run `run_id` waits to deploy
    `sha` to `environment`.

    GitHub sends the commit as top-level `sha` and `ref`; `deployment` is an object, or null for
    a job that creates no deployment (`environment.deployment: false`). Older payloads carried the
    commit only in `deployment`, so that is where it is read when the top level has none."""

    action: str
    repository: str
    environment: str
    callback_url: str
    sha: str
    ref: str
    deployment_id: int | None
    event: str
    sender: str
    run_id: int | None = None
    installation_id: int | None = None

    @classmethod
    def from_payload(cls, payload) -> ProtectionRuleRequest:
        _check_object(payload)
        deployment = payload.get("deployment")
        if deployment is not None and not isinstance(deployment, dict):
            raise PayloadError(
                f"field deployment must be an object or null, not {type(deployment).__name__}"
            )
        deployment = deployment or {}
        if payload.get("sha") is not None:
            sha = _hex_sha(payload["sha"], "sha")
        elif deployment.get("sha") is not None:
            sha = _hex_sha(deployment["sha"], "deployment.sha")
        else:
            raise PayloadError("missing field sha")
        ref = payload.get("ref") if payload.get("ref") is not None else deployment.get("ref")
        callback_url = _get(payload, "deployment_callback_url", max_length=500)
        if not callback_url.startswith(("https://", "http://")):
            raise PayloadError("field deployment_callback_url must be an http(s) URL")
        sender = payload.get("sender") if isinstance(payload.get("sender"), dict) else {}
        return cls(
            action=_get(payload, "action", max_length=64),
            repository=_get(payload, "repository.full_name", max_length=140),
            environment=_get(payload, "environment", max_length=255),
            callback_url=callback_url,
            sha=sha,
            ref=ref[:255] if isinstance(ref, str) else "",
            deployment_id=_positive_id(deployment.get("id")),
            event=str(payload.get("event") or ""),
            sender=str(sender.get("login") or "")[:100],
            run_id=run_id_of(callback_url),
            installation_id=installation_id(payload),
        )
