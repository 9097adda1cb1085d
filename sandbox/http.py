"""The sandbox's tiny HTTP layer: requests, responses, a path router and the APIs' error shapes."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs

# Google's HTTP status → (google.rpc status, Compute's `reason`), for the JSON error bodies.
STATUS_NAMES = {
    400: ("INVALID_ARGUMENT", "invalid"),
    401: ("UNAUTHENTICATED", "required"),
    403: ("PERMISSION_DENIED", "forbidden"),
    404: ("NOT_FOUND", "notFound"),
    405: ("UNIMPLEMENTED", "notImplemented"),
    409: ("ALREADY_EXISTS", "alreadyExists"),
    412: ("FAILED_PRECONDITION", "conditionNotMet"),
    429: ("RESOURCE_EXHAUSTED", "rateLimitExceeded"),
    500: ("INTERNAL", "backendError"),
    503: ("UNAVAILABLE", "backendError"),
}


# Reasons Google reports in the `usageLimits` domain (throttling and quota), with its messages.
USAGE_LIMITS = {
    "rateLimitExceeded": "Rate Limit Exceeded",
    "userRateLimitExceeded": "User Rate Limit Exceeded",
    "quotaExceeded": "Quota exceeded for quota metric 'Queries' and limit 'Queries per minute'",
    "dailyLimitExceeded": "Daily Limit Exceeded",
}


class ApiError(Exception):
    """Raised by handlers; rendered in the Google API error shape (or the registry's)."""

    def __init__(self, code: int, message: str, reason: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or STATUS_NAMES.get(code, ("UNKNOWN", "unknown"))[1]

    def body(self) -> dict:
        status = STATUS_NAMES.get(self.code, ("UNKNOWN", ""))[0]
        domain = "usageLimits" if self.reason in USAGE_LIMITS else "global"
        return {
            "error": {
                "code": self.code,
                "message": self.message,
                "errors": [{"message": self.message, "domain": domain, "reason": self.reason}],
                "status": status,
            }
        }


def not_found(what: str) -> ApiError:
    return ApiError(404, f"The resource '{what}' was not found")


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    base_url: str
    params: dict[str, str] = field(default_factory=dict)

    @classmethod
    def build(cls, method, raw_path, headers, body, base_url) -> Request:
        path, _, qs = raw_path.partition("?")
        query = {k: v[-1] for k, v in parse_qs(qs, keep_blank_values=True).items()}
        return cls(method, path, query, {k.lower(): v for k, v in headers.items()}, body, base_url)

    def json(self) -> dict:
        if not self.body.strip():
            return {}
        try:
            data = json.loads(self.body)
        except ValueError as exc:
            raise ApiError(400, f"Invalid JSON payload received. {exc}", "parseError") from None
        if not isinstance(data, dict):
            raise ApiError(400, "Invalid JSON payload received. Expected an object.", "parseError")
        return data


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, data, status: int = 200, headers: dict | None = None) -> Response:
        payload = json.dumps(data, indent=1).encode()
        return cls(
            status, payload, {"Content-Type": "application/json; charset=UTF-8"} | (headers or {})
        )

    @classmethod
    def text(cls, text: str, status: int = 200, content_type: str = "text/plain") -> Response:
        return cls(status, text.encode(), {"Content-Type": f"{content_type}; charset=utf-8"})


Handler = Callable[[Request], Response]


class Router:
    """Maps (method, path pattern) to handlers; `{name}` matches one segment, `{name:path}` many."""

    def __init__(self):
        self.routes: list[tuple[str, re.Pattern, Handler, bool]] = []

    def add(self, method: str, pattern: str, handler: Handler, locked: bool = True) -> None:
        regex = re.sub(r"\{(\w+):path\}", r"(?P<\1>.+?)", pattern)
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", regex)
        self.routes.append((method, re.compile(f"^{regex}$"), handler, locked))

    def route(self, method: str, pattern: str, locked: bool = True):
        def register(handler: Handler) -> Handler:
            self.add(method, pattern, handler, locked)
            return handler

        return register

    def match(self, method: str, path: str) -> tuple[Handler, dict, bool] | None:
        for verb, regex, handler, locked in self.routes:
            same_verb = verb == method or (method == "HEAD" and verb == "GET")
            if same_verb and (found := regex.match(path)):
                return handler, found.groupdict(), locked
        return None
