"""What the API's routers share: who is calling, what they may do, the error shape, pages and
input types that never reach the database in a form it would refuse (a 500)."""

from typing import Annotated

from django.conf import settings
from django.http import HttpRequest
from ninja import Field, Schema
from ninja.errors import HttpError
from ninja.pagination import LimitOffsetPagination
from ninja.security import APIKeyCookie, HttpBearer
from ninja.utils import check_csrf
from pydantic import AfterValidator, StringConstraints
from pydantic_core import PydanticCustomError

from .models import ApiToken

SAFE_METHODS = {"GET", "HEAD", "OPTIONS", "TRACE"}
MAX_LIMIT = 100
MAX_OFFSET = 2**31 - 1  # every database's OFFSET takes it
MAX_ID = 2**63 - 1  # the largest primary key (BigAutoField) any backend stores


class ApiError(HttpError):
    """An answer other than success, with the input field it is about when there is one."""

    def __init__(self, status_code: int, message: str, field: str | None = None):
        super().__init__(status_code, message)
        self.field = field


class _RoleCheck:
    """After finding the caller: 403 unless their roles (portal/roles.py) grant the permission.
    It runs as part of authentication, so a refused caller learns nothing from validation."""

    def __init__(self, permission: str, doing: str):
        self.permission, self.doing = permission, doing
        super().__init__()

    def allowed(self, user):
        if user is not None and not user.has_perm(self.permission):
            raise ApiError(403, f"{user} may not {self.doing} (needs {self.permission})")
        return user


class BearerToken(_RoleCheck, HttpBearer):
    """Service accounts: `Authorization: Bearer gty_…`, an ApiToken that is neither revoked nor
    owned by an inactive user. The header is never logged."""

    def __call__(self, request: HttpRequest):
        return self.authenticate(request, request.headers.get("Authorization", ""))

    def authenticate(self, request: HttpRequest, token: str):
        found = ApiToken.authenticate(token)
        return self.allowed(found.user if found else None)


class SignedInSession(_RoleCheck, APIKeyCookie):
    """The browser: the signed-in session. Unsafe methods need Django's CSRF token, checked only
    once a session is found, so a caller with neither a session nor a token gets a 401."""

    param_name = settings.SESSION_COOKIE_NAME

    def _get_key(self, request: HttpRequest):
        return request.COOKIES.get(self.param_name)

    def authenticate(self, request: HttpRequest, key):
        if not request.user.is_authenticated:
            return None
        if request.method not in SAFE_METHODS and check_csrf(request) is not None:
            raise ApiError(
                403, "CSRF check failed: send the csrftoken cookie's value as X-CSRFToken"
            )
        return self.allowed(request.user)


def needs(permission: str, doing: str) -> list:
    """An operation's `auth`: a token or a session (else 401) whose roles grant `permission`
    (else 403, saying the caller may not `doing`)."""
    return [BearerToken(permission, doing), SignedInSession(permission, doing)]


class ErrorOut(Schema):
    error: str
    field: str | None = None


def errors(*codes: int) -> dict:
    """The error answers an operation documents, all in the ErrorOut shape."""
    return dict.fromkeys(codes, ErrorOut)


class Pages(LimitOffsetPagination):
    """limit/offset pages of at most MAX_LIMIT items: {"items": [...], "count": total}."""

    class Input(Schema):
        limit: int = Field(25, ge=1, le=MAX_LIMIT, description=f"items per page, 1 to {MAX_LIMIT}")
        offset: int = Field(0, ge=0, le=MAX_OFFSET, description="items to skip")

    def __init__(self, **kwargs):
        super().__init__(max_limit=MAX_LIMIT, **kwargs)


def _storable(value: str) -> str:
    """Text every database keeps as sent: no NUL (PostgreSQL refuses it), valid UTF-8."""
    if "\x00" in value:
        raise PydanticCustomError("text", "must not contain NUL characters")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise PydanticCustomError("text", "must be valid Unicode text") from None
    return value


Text = Annotated[str, AfterValidator(_storable)]
Slug = Annotated[str, StringConstraints(pattern=r"^[-a-zA-Z0-9_]+$", max_length=50)]
Id = Annotated[int, Field(ge=1, le=MAX_ID)]


def describe(error: dict) -> tuple[str, str | None]:
    """One pydantic error as (message, field): 'sha is required', 'limit: …'."""
    source, *where = error["loc"]
    if source == "body":
        where = where[1:]  # the view's parameter name is not part of the request
    field = ".".join(str(part) for part in where) or None
    kind, message = error["type"], error["msg"]
    if kind == "missing":
        return (f"{field} is required" if field else "a JSON object body is required"), field
    if kind == "string_too_short" and error.get("ctx", {}).get("min_length") == 1:
        return f"{field} is required", field
    if field is None:
        return f"{source} must be a JSON object", None
    if kind == "gantry":
        return message, field
    if kind == "extra_forbidden":
        return f"unknown field {field!r}", field
    if kind == "string_type":
        return f"{field} must be a string", field
    return f"{field}: {message[:1].lower()}{message[1:]}", field
