"""Structured logs: one JSON object per line, each carrying the request or deployment it is about.

A request gets an id (the caller's X-Request-ID or load balancer trace id when sane, else a new
one) that comes back as X-Request-ID; a deployment step runs inside `deployment_context`. A filter
copies both (and the Celery task id) onto every record. Known secrets are blanked out of every
line before it is written. LOGGING in settings wires these up; docs/observability.md lists the
fields.
"""

from __future__ import annotations

import logging
import re
import uuid
from contextlib import contextmanager
from contextvars import ContextVar
from urllib.parse import urlsplit

from celery import current_task
from django.core.signals import request_finished, setting_changed
from pythonjsonlogger.json import JsonFormatter as BaseJsonFormatter

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
deployment_id: ContextVar[int | None] = ContextVar("deployment_id", default=None)

CONTEXT_FIELDS = ("request_id", "deployment_id", "task_id")
REDACTED = "[redacted]"

# --- request and deployment context -------------------------------------------------------------

SANE_REQUEST_ID = re.compile(r"[\w.:=+/-]{1,128}", re.ASCII)
CLOUD_TRACE_ID = re.compile(r"([0-9a-fA-F]{32})(?:/|;|$)")


def incoming_request_id(request) -> str | None:
    """The caller's id (X-Request-ID), else the trace id GCP's load balancer sends, if sane."""
    given = request.headers.get("X-Request-ID", "").strip()
    if SANE_REQUEST_ID.fullmatch(given):
        return given
    trace = CLOUD_TRACE_ID.match(request.headers.get("X-Cloud-Trace-Context", "").strip())
    return trace[1].lower() if trace else None


class RequestIdMiddleware:
    """Gives every request an id, in `request.request_id`, the logs and the X-Request-ID header.
    First in MIDDLEWARE, so redirects and refusals of later middleware carry it too."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.request_id = incoming_request_id(request) or uuid.uuid4().hex
        # Left set until request_finished: Django logs 4xx/5xx answers ("Not Found: /x") after
        # the middleware chain has returned, and that line belongs to this request too.
        request_id.set(request.request_id)
        response = self.get_response(request)
        response["X-Request-ID"] = request.request_id
        return response


def _request_done(**kwargs):
    request_id.set(None)


request_finished.connect(_request_done, dispatch_uid="gantry-logs-request-done")


@contextmanager
def deployment_context(pk: int):
    """Tag every log line written inside with the deployment's id."""
    token = deployment_id.set(pk)
    try:
        yield
    finally:
        deployment_id.reset(token)


def _task_id() -> str | None:
    """The id of the Celery task this thread is running, if any (a thread-local lookup)."""
    return current_task.request.id if current_task else None


class ContextFilter(logging.Filter):
    """Adds request_id, deployment_id and task_id to a record, when there is one."""

    def filter(self, record):
        values = {
            "request_id": request_id.get(),
            "deployment_id": deployment_id.get(),
            "task_id": _task_id(),
        }
        for name, value in values.items():
            if value is not None and getattr(record, name, None) is None:
                setattr(record, name, value)
        return True


# --- secrets --------------------------------------------------------------------------------------

# Settings whose names end in what holds a secret (SECRET_KEY and its fallbacks,
# GANTRY_GITHUB_WEBHOOK_SECRET, GANTRY_METRICS_TOKEN, GANTRY_GITHUB_APP_PRIVATE_KEY, …), not those
# that merely mention one (AXES_PASSWORD_FORM_FIELD). Values shorter than MIN_SECRET_LENGTH are
# left alone: they would blank out ordinary words, and are no real secret anyway.
SECRET_SETTING = re.compile(r"(SECRET|TOKEN|PASSWORD|PRIVATE_KEY|API_KEY|SECRET_KEY(_FALLBACKS)?)$")
URL_SETTINGS = ("REDIS_URL", "CELERY_BROKER_URL")
MIN_SECRET_LENGTH = 8
PATTERNS = (
    (re.compile(r"gty_[A-Za-z0-9_-]{8,}"), "gty_" + REDACTED),
    (
        re.compile(
            r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)((?:bearer|basic|token)\s+)?[^\s'\",;}]+"
        ),
        lambda m: f"{m[1]}{m[2] or ''}{REDACTED}",
    ),
    (re.compile(r"(?i)\b(bearer)\s+[\w.~+/=-]{8,}"), lambda m: f"{m[1]} {REDACTED}"),
)
_secrets: list[str] | None = None


def _secret_values() -> list[str]:
    global _secrets
    if _secrets is None:
        from django.conf import settings

        if not settings.configured:  # a line logged before Django is set up
            return []
        found = []
        for name in dir(settings):
            if name.isupper() and SECRET_SETTING.search(name):
                value = getattr(settings, name, None)
                found += value if isinstance(value, list | tuple) else [value]
        found += [db.get("PASSWORD") for db in settings.DATABASES.values()]
        found += [urlsplit(getattr(settings, name, "") or "").password for name in URL_SETTINGS]
        values = {v for v in found if isinstance(v, str) and len(v) >= MIN_SECRET_LENGTH}
        _secrets = sorted(values, key=len, reverse=True)
    return _secrets


def _forget_secrets(**kwargs):
    global _secrets
    _secrets = None


setting_changed.connect(_forget_secrets, dispatch_uid="gantry-logs-secrets")


def redact(text: str) -> str:
    """`text` with secret setting values, gty_ tokens and Authorization values blanked out."""
    for value in _secret_values():
        if value in text:
            text = text.replace(value, REDACTED)
    for pattern, replacement in PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactSecrets(logging.Filter):
    """Blanks secrets out of the message, for every handler. The formatters below also clean
    what they add themselves (tracebacks, extra fields)."""

    def filter(self, record):
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: let the formatter report it as usual
            return True
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


# --- formatters -----------------------------------------------------------------------------------


class JsonFormatter(BaseJsonFormatter):
    """One JSON object per line; `severity`, `message` and `time` are the names Cloud Logging
    reads from a JSON line."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("rename_fields", {"levelname": "severity", "name": "logger"})
        kwargs.setdefault("timestamp", "time")
        super().__init__(*args or ("%(levelname)s %(name)s %(message)s",), **kwargs)

    def process_log_record(self, log_data):
        cleaned = {
            key: redact(value) if isinstance(value, str) else value
            for key, value in log_data.items()
        }
        return {"time": cleaned.pop("time", None), **cleaned}


class PlainFormatter(logging.Formatter):
    """Text for a terminal, with the context ids at the end of the first line."""

    def __init__(self, fmt="%(asctime)s %(levelname)s %(name)s %(message)s", *args, **kwargs):
        super().__init__(fmt, *args, **kwargs)

    def format(self, record):
        first, newline, rest = redact(super().format(record)).partition("\n")
        context = " ".join(
            f"{name}={getattr(record, name)}"
            for name in CONTEXT_FIELDS
            if getattr(record, name, None) is not None
        )
        return f"{first} [{context}]{newline}{rest}" if context else f"{first}{newline}{rest}"
