"""GitHub's published artifacts, fetched by `make github-artifacts` at the versions the Makefile
pins, and validators any test may call:

    webhook_examples(event)                    @octokit/webhooks-examples' payloads (deep copies)
    validate_request(method, path, body)       a REST request body against @octokit/openapi
    validate_response(method, path, status, body)   a REST answer against its documented schema
    validate_webhook(name, payload)            a webhook payload against @octokit/openapi-webhooks
    operation(method, path)                    the OpenAPI operation a path falls under

Validators raise AssertionError naming the operation and each failing field; a path GitHub does
not have is an error too ("unknown operation"). When the artifacts were not fetched, each of
these skips the calling test with a reason naming the make target (`available()` tells without
skipping).

@octokit/openapi is OpenAPI 3.0 (`nullable`); its schemas are rewritten once into JSON Schema
2020-12 (`nullable` becomes a "null" type), which @octokit/openapi-webhooks (OpenAPI 3.1) already
is. Each spec is loaded once per process into a jsonschema-rs registry; a validator is compiled
once per schema. `format` is an annotation only, as JSON Schema 2020-12 says.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema_rs

MAKE_TARGET = "make github-artifacts"
NPM_DIR = Path(
    os.environ.get("GANTRY_NPM_DIR") or Path(__file__).resolve().parents[2] / "var" / "npm"
)
REST_SPEC = NPM_DIR / "openapi" / "package" / "generated" / "api.github.com.json"
WEBHOOKS_SPEC = NPM_DIR / "openapi-webhooks" / "package" / "generated" / "api.github.com.json"
EXAMPLES = NPM_DIR / "webhooks-examples" / "package" / "api.github.com" / "index.json"
REST_URI = "urn:octokit:openapi"
WEBHOOKS_URI = "urn:octokit:openapi-webhooks"
ERRORS_SHOWN = 5
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def missing() -> list[Path]:
    return [p for p in (REST_SPEC, WEBHOOKS_SPEC, EXAMPLES) if not p.is_file()]


def available() -> bool:
    """True when every artifact was fetched."""
    return not missing()


def require() -> None:
    """Skip the calling test when the artifacts were not fetched."""
    if absent := missing():
        import pytest

        pytest.skip(
            f"GitHub's artifacts are not fetched ({absent[0]} missing): run `{MAKE_TARGET}`"
        )


# --- loading -----------------------------------------------------------------------------------


def _openapi30_to_jsonschema(node):
    """OpenAPI 3.0 schema objects → JSON Schema 2020-12: `nullable: true` admits null."""
    if isinstance(node, list):
        return [_openapi30_to_jsonschema(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _openapi30_to_jsonschema(v) for k, v in node.items()}
    if out.get("nullable") is True:
        del out["nullable"]
        if isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
            if isinstance(out.get("enum"), list) and None not in out["enum"]:
                out["enum"] = [*out["enum"], None]
        else:
            out = {"anyOf": [{"type": "null"}, out]}
    return out


@functools.cache
def _rest() -> tuple[dict, jsonschema_rs.Registry, list]:
    require()
    spec = json.loads(REST_SPEC.read_text())
    spec["components"] = _openapi30_to_jsonschema(spec["components"])
    spec["paths"] = _openapi30_to_jsonschema(spec["paths"])
    registry = jsonschema_rs.Registry([(REST_URI, {"components": spec["components"]})])
    templates = []
    for template, item in spec["paths"].items():
        regex = re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "$")
        literal = sum(1 for part in template.split("/") if part and not part.startswith("{"))
        templates.append((-literal, template, regex, item))
    templates.sort(key=lambda row: row[:2])  # the most literal template wins, as GitHub routes
    return spec, registry, templates


@functools.cache
def _webhooks() -> tuple[dict, jsonschema_rs.Registry]:
    require()
    spec = json.loads(WEBHOOKS_SPEC.read_text())
    registry = jsonschema_rs.Registry([(WEBHOOKS_URI, {"components": spec["components"]})])
    return spec, registry


@functools.cache
def _examples() -> dict[str, dict]:
    require()
    return {entry["name"]: entry for entry in json.loads(EXAMPLES.read_text())}


@functools.cache
def _validator(uri: str, schema_json: str):
    """One compiled validator per schema; refs resolve into the spec's components."""
    _, registry, *_ = _rest() if uri == REST_URI else _webhooks()
    schema = json.loads(schema_json)
    schema = _rebase(schema, uri)
    return jsonschema_rs.validator_for(schema, registry=registry, validate_formats=False)


def _rebase(node, uri: str):
    if isinstance(node, list):
        return [_rebase(v, uri) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _rebase(v, uri) for k, v in node.items()}
    if isinstance(out.get("$ref"), str) and out["$ref"].startswith("#/"):
        out["$ref"] = uri + out["$ref"]
    return out


def _resolve(spec: dict, node: dict) -> dict:
    """Follow a local `$ref` (to components/responses, requestBodies…) until an object."""
    while isinstance(node, dict) and "$ref" in node:
        target = spec
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


def _errors(uri: str, schema: dict, instance) -> list[str]:
    validator = _validator(uri, json.dumps(schema, sort_keys=True))
    found = []
    for error in validator.iter_errors(instance):
        where = "$" + "".join(
            f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.instance_path
        )
        found.append(f"{where}: {error.message}")
    return found


def _fail(what: str, errors: list[str]) -> None:
    if errors:
        shown = "\n  ".join(errors[:ERRORS_SHOWN])
        more = f"\n  … and {len(errors) - ERRORS_SHOWN} more" if len(errors) > ERRORS_SHOWN else ""
        raise AssertionError(f"{what} does not match GitHub's schema:\n  {shown}{more}")


# --- the REST API ------------------------------------------------------------------------------


def operation(method: str, path: str) -> tuple[str, dict]:
    """(path template, OpenAPI operation) for a call, e.g. ("POST", "/repos/o/r/deployments").
    A path or method GitHub does not document is an AssertionError ("unknown operation")."""
    _, _, templates = _rest()
    path = urlsplit(path).path.rstrip("/") or "/"
    verb = method.lower()
    for _, template, regex, item in templates:
        if regex.match(path):
            if verb in item:
                return template, item[verb]
            allowed = sorted(m.upper() for m in item if m in METHODS)
            raise AssertionError(
                f"unknown operation {method.upper()} {path}: {template} only has {allowed}"
            )
    raise AssertionError(f"unknown operation {method.upper()} {path}: not in @octokit/openapi")


def _json_schema(spec: dict, holder: dict | None) -> dict | None:
    content = (_resolve(spec, holder) or {}).get("content") or {}
    for media in ("application/json", "application/scim+json"):
        if media in content:
            return content[media].get("schema", {})
    return next((c.get("schema", {}) for c in content.values()), None) if content else None


def validate_request(method: str, path: str, body) -> None:
    """The JSON body of a REST call against the operation's requestBody schema (None: no body)."""
    spec, *_ = _rest()
    template, op = operation(method, path)
    what = f"{method.upper()} {template} request body"
    request_body = _resolve(spec, op.get("requestBody") or {})
    if not request_body:
        if body not in (None, {}, b"", ""):
            raise AssertionError(f"{what}: this operation takes no body, got {body!r:.200}")
        return
    if body is None:
        if request_body.get("required"):
            raise AssertionError(f"{what} is required")
        return
    schema = _json_schema(spec, request_body)
    if schema is not None:
        _fail(what, _errors(REST_URI, schema, body))


def validate_response(method: str, path: str, status: int, body) -> None:
    """A REST answer against the schema documented for that status. GitHub documents few of its
    generic errors (401, 403, 404, 429, 5xx); an undocumented error status must still carry its
    error shape (`basic-error`), an undocumented success status is an error."""
    spec, *_ = _rest()
    template, op = operation(method, path)
    what = f"{method.upper()} {template} {status} response"
    responses = op.get("responses", {})
    documented = responses.get(str(status)) or responses.get(f"{str(status)[0]}XX")
    if documented is None:
        if status < 400:
            raise AssertionError(f"{what}: status {status} is not documented ({sorted(responses)})")
        if body is not None:
            _fail(what, _errors(REST_URI, {"$ref": "#/components/schemas/basic-error"}, body))
        return
    schema = _json_schema(spec, documented)
    if schema is None:
        if body not in (None, b"", ""):
            raise AssertionError(f"{what}: documented without a body, got {body!r:.200}")
        return
    if body is None:
        raise AssertionError(f"{what}: documented with a JSON body, got none")
    _fail(what, _errors(REST_URI, schema, body))


# --- webhooks ----------------------------------------------------------------------------------


def webhook_names() -> list[str]:
    spec, _ = _webhooks()
    return sorted(spec["webhooks"])


def validate_webhook(name: str, payload) -> None:
    """A webhook payload against @octokit/openapi-webhooks, by its webhook name: the event and
    action joined by '-' with '_' as '-', e.g. "workflow-run-completed", "ping",
    "deployment-protection-rule-requested"."""
    spec, _ = _webhooks()
    hook = spec["webhooks"].get(name)
    if hook is None:
        close = [n for n in spec["webhooks"] if n.startswith(name.split("-")[0])]
        raise AssertionError(f"unknown webhook {name!r}; GitHub's names near it: {close[:12]}")
    body = _resolve(spec, hook["post"]["requestBody"])
    schema = body["content"]["application/json"]["schema"]
    _fail(f"webhook {name}", _errors(WEBHOOKS_URI, schema, payload))


def webhook_examples(event: str) -> list[dict]:
    """@octokit/webhooks-examples' payloads for `event` (e.g. "workflow_run", "ping"), copies.
    An event the package has no entry for is an AssertionError naming what it has."""
    examples = _examples()
    if event not in examples:
        raise AssertionError(
            f"@octokit/webhooks-examples has no {event!r} examples; it has {sorted(examples)}"
        )
    return copy.deepcopy(examples[event]["examples"])


def webhook_actions(event: str) -> list[str]:
    """The actions @octokit/webhooks-examples lists for `event`."""
    webhook_examples(event)
    return list(_examples()[event]["actions"])
