"""What GCP did (or did not do), as Gantry reads it: errors to record, and which ones pass by
waiting. Nothing above this package looks at `google.api_core` exceptions itself."""

from __future__ import annotations

import httpx
import requests
from google.api_core import exceptions as api_exceptions

RETRYABLE_API_ERRORS = (
    api_exceptions.TooManyRequests,
    api_exceptions.ServiceUnavailable,
    api_exceptions.InternalServerError,
    api_exceptions.BadGateway,
    api_exceptions.GatewayTimeout,
    api_exceptions.DeadlineExceeded,
)
# Compute and Cloud Build throttle with 403 and one of these reasons (Google: wait and retry);
# other 403s (quotaExceeded, a missing permission) will not pass by waiting.
THROTTLED_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})


class GcpError(Exception):
    """Something GCP did (or did not do) that the caller should record and act on."""


class OperationFailed(GcpError):
    """A Compute operation finished with an error; `errors` holds its (code, message) pairs."""

    def __init__(
        self,
        name: str,
        operation_type: str,
        errors: list[tuple[str, str]],
        http_status: int | None = None,
    ):
        self.name, self.operation_type = name, operation_type
        self.errors, self.http_status = errors, http_status
        detail = "; ".join(f"{code}: {message}" for code, message in errors) or "no detail"
        super().__init__(f"operation {name} ({operation_type}) failed: {detail}")

    @classmethod
    def of(cls, state) -> OperationFailed:
        """From a finished `gcp.types.OperationState` that has errors."""
        return cls(state.ref.name, state.operation_type, list(state.errors), state.http_status)


class OperationTimeout(GcpError):
    pass


class BuildFailed(GcpError):
    def __init__(self, build_id: str, status: str, detail: str):
        self.build_id, self.status = build_id, status
        super().__init__(f"build {build_id} ended {status}: {detail or 'no detail'}")


class RegistryError(GcpError):
    def __init__(self, message: str, status_code: int | None = None):
        super().__init__(message)
        self.status_code = status_code


class ImageNotFound(RegistryError):
    pass


def error_reasons(exc: BaseException) -> set[str]:
    """The `reason`s of a Google API error (`error.errors[].reason`, or its ErrorInfo)."""
    reasons = {getattr(exc, "reason", None)}
    for error in getattr(exc, "errors", None) or ():
        reasons.add(
            error.get("reason") if isinstance(error, dict) else getattr(error, "reason", None)
        )
    return {reason for reason in reasons if isinstance(reason, str) and reason}


def is_retryable(exc: BaseException) -> bool:
    """True for throttling and transient server or network errors worth another attempt."""
    if isinstance(exc, RETRYABLE_API_ERRORS):
        return True
    if isinstance(exc, api_exceptions.Forbidden):
        return bool(error_reasons(exc) & THROTTLED_REASONS)
    if isinstance(exc, ImageNotFound):
        return False
    if isinstance(exc, RegistryError):
        return exc.status_code is None or exc.status_code == 429 or exc.status_code >= 500
    return isinstance(exc, httpx.TransportError | requests.ConnectionError | requests.Timeout)


def _status(exc: api_exceptions.GoogleAPICallError) -> str:
    """'403 rateLimitExceeded': the HTTP status and the error's reasons."""
    reasons = ", ".join(sorted(error_reasons(exc))) or "no reason given"
    return f"{int(exc.code) if exc.code is not None else 'error'} {reasons}"


def describe(exc: BaseException) -> str:
    """One line for the timeline: '403 rateLimitExceeded: …' for a Google API error."""
    if isinstance(exc, api_exceptions.GoogleAPICallError):
        return f"{_status(exc)}: {exc.message}"
    return f"{type(exc).__name__}: {exc}"


def refusal(exc: BaseException) -> str | None:
    """What a person should read of a Google API error that will not pass by retrying (a quota,
    a permission, a bad request), with its reason; None for anything else."""
    if not isinstance(exc, api_exceptions.GoogleAPICallError):
        return None
    return f"GCP refused ({_status(exc)}): {exc.message}"
