"""Google's discovery documents as the sandbox's contract for Compute Engine and Cloud Build.

A request reaches its handler only if Google would take it: an unknown field, a wrong JSON type
or a bad enum value in the body, or a bad value for a declared query parameter, is a 400 in the
API's error shape, worded as Google's JSON parser (or, for Compute's string enums, Compute) words
it. Output-only fields are ignored, as google/api/field_behavior.proto says a server must; with
`output_only=True` they are a 400 too (stricter than Google). Answers can be held to the
method's response schema (`response_problems`), which the pytest plugin does for every 2xx
answer a test received.

The documents ship in google-api-python-client, a dev dependency located at run time and never
copied into the repo. Without it `available()` is False and nothing is checked.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path

from .http import ApiError

log = logging.getLogger(__name__)

# Discovery document → the proto package of its messages (Google names them in type errors).
DOCUMENTS = {
    "compute.v1.json": "google.cloud.compute.v1",
    "cloudbuild.v1.json": "google.devtools.cloudbuild.v1",
}
GCP_PREFIXES = ("/compute/v1/", "/v1/")  # the paths the sandbox records as Compute/Cloud Build
CALLS_KEPT = 2000
OUTPUT_ONLY = re.compile(r"\s*(\[output only\]|output only)", re.IGNORECASE)
INTEGER_RANGES = {
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint64": (0, 2**64 - 1),
}
FORMAT_KINDS = {
    "int32": "TYPE_INT32",
    "uint32": "TYPE_UINT32",
    "int64": "TYPE_INT64",
    "uint64": "TYPE_UINT64",
    "double": "TYPE_DOUBLE",
    "float": "TYPE_FLOAT",
    "byte": "TYPE_BYTES",
    "google-duration": "type.googleapis.com/google.protobuf.Duration",
    "google-datetime": "type.googleapis.com/google.protobuf.Timestamp",
}
BOOL_WORDS = {"true", "t", "yes", "y", "1", "false", "f", "no", "n", "0"}  # protobuf's safe_strtob
SPECIAL_NUMBERS = {"NaN", "Infinity", "-Infinity"}
DURATION = re.compile(r"^-?\d+(\.\d{1,9})?s$")
DATETIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)$")
INTEGER = re.compile(r"^-?\d+$")


# --- the documents ------------------------------------------------------------------------------


def documents_dir() -> Path | None:
    """googleapiclient's bundled documents, found without importing the package."""
    spec = importlib.util.find_spec("googleapiclient")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "discovery_cache" / "documents"
    return folder if all((folder / name).is_file() for name in DOCUMENTS) else None


@dataclass(frozen=True, eq=False)
class Method:
    """A discovery method and one of its path templates (`flatPath` or `path`) as a regex."""

    id: str
    verb: str
    regex: re.Pattern
    literal: int  # literal characters in the template: the most literal match wins
    spec: dict
    api: Api


class Api:
    """One discovery document: its schemas, global parameters and methods."""

    def __init__(self, doc: dict, package: str):
        self.package = package
        # Compute's protos declare enums as strings: any string parses, Compute itself refuses.
        self.string_enums = package.startswith("google.cloud.compute.")
        self.schemas: dict[str, dict] = doc["schemas"]
        self.parameters: dict[str, dict] = doc.get("parameters", {})
        self.methods: list[Method] = []
        root = "/" + doc["servicePath"]
        for spec in _methods(doc.get("resources", {})):
            for template in dict.fromkeys(filter(None, (spec.get("flatPath"), spec["path"]))):
                regex, literal = _template_regex(root + template, spec.get("parameters", {}))
                self.methods.append(
                    Method(spec["id"], spec["httpMethod"], regex, literal, spec, self)
                )

    def resolve(self, schema: dict) -> tuple[dict, str]:
        """(schema, its name) after following `$ref`."""
        name = ""
        while "$ref" in schema:
            name = schema["$ref"]
            schema = self.schemas[name]
        return schema, name or schema.get("id", "")


def _methods(resources: dict):
    for resource in resources.values():
        yield from resource.get("methods", {}).values()
        yield from _methods(resource.get("resources", {}))


def _template_regex(template: str, parameters: dict) -> tuple[re.Pattern, int]:
    """`{x}` is one path segment; `{+x}` is the parameter's `pattern` (or anything)."""
    regex, literal = "", 0
    for n, piece in enumerate(re.split(r"(\{\+?\w+\})", template)):
        if n % 2 == 0:
            regex, literal = regex + re.escape(piece), literal + len(piece)
        elif piece.startswith("{+"):
            pattern = parameters.get(piece[2:-1], {}).get("pattern", "")
            regex += f"(?:{pattern.removeprefix('^').removesuffix('$') or '.+'})"
        else:
            regex += "[^/]+"
    return re.compile(f"^{regex}$"), literal


@functools.cache
def apis() -> tuple[Api, ...]:
    folder = documents_dir()
    if folder is None:
        log.warning(
            "sandbox: google-api-python-client is not installed; Compute and Cloud Build "
            "requests are not checked against Google's discovery documents"
        )
        return ()
    return tuple(
        Api(json.loads((folder / name).read_text()), package) for name, package in DOCUMENTS.items()
    )


def available() -> bool:
    return bool(apis())


@functools.cache
def _by_verb() -> dict[str, list[Method]]:
    table: dict[str, list[Method]] = {}
    for api in apis():
        for method in api.methods:
            table.setdefault(method.verb, []).append(method)
    for methods in table.values():
        methods.sort(key=lambda m: -m.literal)
    return table


@functools.lru_cache(maxsize=4096)
def find(verb: str, path: str) -> Method | None:
    """The discovery method a call reaches (query string ignored), or None."""
    path = path.partition("?")[0]
    for method in _by_verb().get("GET" if verb == "HEAD" else verb, []):
        if method.regex.match(path):
            return method
    return None


# --- checking values against schemas --------------------------------------------------------


class _Key(str):
    """A map key in a location (not a field name)."""


@dataclass
class Problem:
    kind: str  # unknown, not_repeating, object_on_scalar, bad_value, enum, output_only, null
    at: tuple  # field names (str), list indices (int) and map keys (_Key)
    value: object = None
    expected: str = ""  # Google's type name: TYPE_STRING, type.googleapis.com/…, …
    allowed: tuple = ()  # an enum's values


class _Walk:
    """Walks a JSON value along a schema. As a request, it accepts what Google's JSON parser
    does (proto field names, numbers in strings, "true", enum numbers, null); as a response, only
    the canonical JSON Google writes."""

    def __init__(self, api: Api, request: bool, output_only: bool = False):
        self.api, self.request, self.output_only = api, request, output_only
        self.problems: list[Problem] = []

    def check(self, schema: dict, value, at: tuple = ()) -> list[Problem]:
        schema, name = self.api.resolve(schema)
        kind = schema.get("type")
        if value is None:
            if not self.request and kind != "any":
                self.problems.append(Problem("null", at))
        elif kind == "any":
            pass
        elif kind == "array":
            if isinstance(value, list):
                for n, item in enumerate(value):
                    self.check(schema.get("items", {}), item, (*at, n))
            elif self.request:  # Google's parser takes a lone value for a repeated field
                self.check(schema.get("items", {}), value, at)
            else:
                self.problems.append(Problem("bad_value", at, value, self.type_name(schema)))
        elif isinstance(value, list):
            self.problems.append(Problem("not_repeating", at, value))
        elif kind == "object" or "properties" in schema:
            if isinstance(value, dict):
                self.fields(schema, value, at)
            else:
                self.problems.append(Problem("bad_value", at, value, self.type_name(schema, name)))
        elif isinstance(value, dict):
            self.problems.append(Problem("object_on_scalar", at, value))
        elif "enum" in schema and not self.enum_ok(schema, value):
            expected = "TYPE_STRING" if self.api.string_enums else "TYPE_ENUM"
            self.problems.append(Problem("enum", at, value, expected, tuple(schema["enum"])))
        elif "enum" not in schema and not self.scalar_ok(schema, value):
            self.problems.append(Problem("bad_value", at, value, self.type_name(schema)))
        return self.problems

    def fields(self, schema: dict, value: dict, at: tuple) -> None:
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        if extra is not None and self.api.resolve(extra)[0].get("type") == "any":
            packed = self.packed(value)  # google.protobuf.Any: {"@type": …, fields of that type}
            if packed is not None:
                self.check(packed, {k: v for k, v in value.items() if k != "@type"}, at)
            return
        for key, item in value.items():
            name = key if key in properties or not self.request else _camel(key)
            if name in properties:
                field = properties[name]
                if self.output_only and item is not None and _output_only(field):
                    self.problems.append(Problem("output_only", (*at, key), item))
                else:
                    self.check(field, item, (*at, key))
            elif extra is not None:
                self.check(extra, item, (*at, _Key(key)))
            else:
                self.problems.append(Problem("unknown", (*at, key), item))

    def packed(self, value: dict) -> dict | None:
        """The schema an Any's `@type` names, when it is one of this document's messages."""
        prefix = f"type.googleapis.com/{self.api.package}."
        type_url = value.get("@type")
        if isinstance(type_url, str) and type_url.startswith(prefix):
            return self.api.schemas.get(type_url.removeprefix(prefix))
        return None

    def enum_ok(self, schema: dict, value) -> bool:
        if isinstance(value, str) and value in schema["enum"]:
            return True
        if self.api.string_enums:
            return False
        # A proto enum's number parses too, and Google answers numbers to a client that asks
        # for them ($alt=json;enum-encoding=int, as google-cloud-build's REST transport does).
        if self.request:
            return _integer(value) is not None
        return isinstance(value, int) and not isinstance(value, bool)

    def scalar_ok(self, schema: dict, value) -> bool:
        kind, fmt = schema.get("type"), schema.get("format")
        if kind == "boolean":
            return isinstance(value, bool) or (
                self.request and isinstance(value, str) and value.lower() in BOOL_WORDS
            )
        if kind == "integer" or fmt in ("int64", "uint64"):
            canonical = isinstance(value, int if kind == "integer" else str)
            if not self.request and not canonical:
                return False  # Google writes int32 as a number and int64 as a string
            number = _integer(value)
            low, high = INTEGER_RANGES.get(fmt, INTEGER_RANGES["int64"])
            return number is not None and low <= number <= high
        if kind == "number":
            if isinstance(value, bool):
                return False
            if isinstance(value, int | float):
                return True
            if not isinstance(value, str) or not (self.request or value in SPECIAL_NUMBERS):
                return False
            try:
                return value in SPECIAL_NUMBERS or math.isfinite(float(value))
            except ValueError:
                return False
        if not isinstance(value, str):
            return False
        if fmt == "google-duration":
            return bool(DURATION.match(value))
        if fmt == "google-datetime":
            return bool(DATETIME.match(value))
        return True

    def type_name(self, schema: dict, name: str = "") -> str:
        """Google's name for a field's type, as its parser reports a bad value."""
        if schema.get("type") == "array":
            return self.type_name(*self.api.resolve(schema.get("items", {})))
        if name or schema.get("type") == "object":
            return f"type.googleapis.com/{self.api.package}.{name}" if name else "TYPE_MESSAGE"
        if schema.get("format") in FORMAT_KINDS:
            return FORMAT_KINDS[schema["format"]]
        kind = schema.get("type")
        return {"boolean": "TYPE_BOOL", "integer": "TYPE_INT32", "number": "TYPE_DOUBLE"}.get(
            kind, "TYPE_STRING"
        )


def _integer(value) -> int | None:
    """The integer Google's parser reads from a JSON value: a number with no fraction, or a
    string of digits without spaces."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str) and INTEGER.match(value):
        return int(value)
    return None


def _output_only(field: dict) -> bool:
    return bool(field.get("readOnly")) or bool(OUTPUT_ONLY.match(field.get("description", "")))


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


# --- requests -----------------------------------------------------------------------------------


def request_root(method: Method) -> str:
    """The request field Google's parser puts the body in: Compute's `<message>_resource`,
    Cloud Build's `build` (a `…Request` body is the whole request: no prefix)."""
    name = method.spec.get("request", {}).get("$ref", "")
    if method.api.string_enums:
        return _snake(name) + "_resource"
    return "" if name.endswith("Request") else _snake(name)


def _location(root: str, at: tuple, snake: bool = True) -> str:
    """Where a problem is: proto field names as Google's parser says it (snake), or the JSON
    names Compute's own checks use ("resource.updatePolicy.type")."""
    text = root
    for part in at:
        if isinstance(part, _Key):
            text += f'["{part}"]'
        elif isinstance(part, int):
            text += f"[{part}]"
        else:
            name = _snake(part) if snake else part
            text += f".{name}" if text else name
    return text


def request_message(problem: Problem, method: Method, query: bool = False) -> str:
    """A problem in Google's words: its JSON parser's (proto field names), or Compute's for
    values Compute checks itself (enum values, output-only fields)."""
    root = "" if query else request_root(method)
    parent, last = problem.at[:-1], problem.at[-1] if problem.at else ""
    at_parent = f" at '{where}'" if (where := _location(root, parent)) else ""
    at_here = f" at '{where}'" if (where := _location(root, problem.at)) else ""
    semantic_root = "resource" if method.api.string_enums else root
    semantic = _location("" if query else semantic_root, problem.at, snake=False)
    if problem.kind == "unknown":
        return (
            f'Invalid JSON payload received. Unknown name "{last}"{at_parent}: Cannot find field.'
        )
    if problem.kind == "not_repeating":
        return (
            f'Invalid JSON payload received. Unknown name "{last}"{at_parent}: '
            "Proto field is not repeating, cannot start list."
        )
    if problem.kind == "object_on_scalar":
        return (
            f"Invalid value{at_parent} ({_snake(str(last))}), Starting an object on a scalar field"
        )
    if problem.kind == "output_only":
        return f"Invalid value for field '{semantic}': the field is output only."
    if problem.kind == "enum" and method.api.string_enums and isinstance(problem.value, str):
        return (
            f"Invalid value for field '{semantic}': '{problem.value}'. "
            f"Expected one of {list(problem.allowed)}."
        )
    return f"Invalid value{at_here} ({problem.expected}), {json.dumps(problem.value)}"


def request_problems(
    method: Method, query: dict[str, str], body, output_only: bool = False
) -> list[str]:
    """What Google refuses in a call's declared query parameters and JSON body."""
    api, messages = method.api, []
    parameters = api.parameters | method.spec.get("parameters", {})
    for name, value in query.items():
        declared = parameters.get(name)
        if declared and declared.get("location") == "query":
            for problem in _Walk(api, request=True).check(declared, value, (name,)):
                messages.append(request_message(problem, method, query=True))
    if "request" in method.spec and body is not None:
        walk = _Walk(api, request=True, output_only=output_only)
        for problem in walk.check(method.spec["request"], body):
            messages.append(request_message(problem, method))
    return messages


def check_request(
    verb: str, path: str, query: dict[str, str], body: bytes, output_only: bool = False
) -> None:
    """Raise the 400 Google would answer for this Compute or Cloud Build call, if any
    (`output_only`: also for output-only fields, which Google ignores)."""
    method = find(verb, path)
    if method is None:
        return
    data = None
    if "request" in method.spec and body.strip():
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise ApiError(400, f"Invalid JSON payload received. {exc}", "parseError") from None
        if not isinstance(data, dict):
            why = "Invalid JSON payload received. Root element must be a message."
            raise ApiError(400, why, "parseError")
    if messages := request_problems(method, query, data, output_only):
        raise ApiError(400, "\n".join(messages))


# --- responses ----------------------------------------------------------------------------------

RESPONSE_WORDS = {
    "unknown": "unknown field",
    "not_repeating": "a list where the schema has no array",
    "object_on_scalar": "an object where the schema has a scalar",
    "null": "null (Google leaves unset fields out)",
}


def _json_path(at: tuple) -> str:
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in at)


def response_problems(verb: str, path: str, body) -> list[str]:
    """A decoded JSON answer against its method's response schema, one line per problem: types
    as Google writes them, enum values, no field the schema lacks. [] when the document does not
    know the call or the documents are not installed."""
    method = find(verb, path)
    if method is None or "response" not in method.spec:
        return []
    if body is None:
        return [f"{method.id}: no JSON body, the method answers {method.spec['response']['$ref']}"]
    lines = []
    for problem in _Walk(method.api, request=False).check(method.spec["response"], body):
        detail = RESPONSE_WORDS.get(problem.kind)
        if problem.kind == "enum":
            detail = f"{json.dumps(problem.value)} is not one of {list(problem.allowed)}"
        elif detail is None:
            detail = f"{json.dumps(problem.value)} is not {problem.expected} as Google writes it"
        lines.append(f"{method.id}: {_json_path(problem.at)}: {detail}")
    return lines


def validate_response(verb: str, path: str, body) -> None:
    """response_problems as an AssertionError, for tests."""
    if problems := response_problems(verb, path, body):
        raise AssertionError("\n".join(problems))


def recorded_problems(calls) -> list[str]:
    """Every 2xx answer among recorded calls (see Sandbox.gcp_calls) against its response
    schema; each distinct problem once, with the first call that showed it and how often."""
    found: dict[str, list] = {}
    checked: set[tuple] = set()
    for call in list(calls):
        key = (call["method"], call["path"], call["response"])
        if not 200 <= call["status"] < 300 or key in checked:
            continue
        checked.add(key)  # a poll answered the same twice is checked once
        try:
            body = json.loads(call["response"]) if call["response"].strip() else None
        except ValueError:
            body = None
        for line in response_problems(call["method"], call["path"], body):
            found.setdefault(line, [0, f"{call['method']} {call['path']}"])[0] += 1
    return [f"{line} (in {n} answer(s), first {where})" for line, (n, where) in found.items()]
