"""Sign-in through Google Cloud Identity-Aware Proxy (IAP).

IAP signs every request it lets through with a short-lived ES256 JWT in the
`x-goog-iap-jwt-assertion` header. When GANTRY_IAP_AUDIENCE is set, IapMiddleware verifies that
assertion on every request and signs in the user it names; GANTRY_IAP_ROLES maps the e-mail to
Gantry's roles (portal/roles.py). See docs/sign-in.md.
"""

import functools
import json
import logging
from dataclasses import dataclass

import jwt
from django.conf import settings
from django.contrib import auth
from django.contrib.auth.backends import RemoteUserBackend
from django.contrib.auth.middleware import RemoteUserMiddleware
from django.contrib.auth.models import AnonymousUser, Group
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.shortcuts import render
from django.urls import Resolver404, resolve

from audit.models import AuditEvent

from .roles import ROLES, sync_roles

log = logging.getLogger(__name__)

ISSUER = "https://cloud.google.com/iap"
ALGORITHM = "ES256"
ASSERTION_HEADER = "HTTP_X_GOOG_IAP_JWT_ASSERTION"
LEEWAY_SECONDS = 30
# Google rotates the keys rarely; a token naming an unknown key refetches them at most every 30 s.
KEYS_LIFESPAN_SECONDS = 3600
KEYS_TIMEOUT_SECONDS = 5
# May arrive without an assertion, as anonymous requests: /healthz (the load balancer's probe) and
# endpoints that authenticate callers themselves (the GitHub webhook's HMAC signature, the JSON
# API's bearer tokens), which can be routed around IAP. An assertion, when sent, is still checked.
EXEMPT_URL_NAMES = frozenset({"healthz", "github-webhook", "metrics"})
EXEMPT_NAMESPACES = frozenset({"api"})
ROLES_SESSION_KEY = "_gantry_iap_roles"


class InvalidAssertion(Exception):
    """The request's IAP assertion is missing, malformed, or fails verification."""


class KeysUnavailable(Exception):
    """Google's IAP signing keys could not be fetched, so no assertion can be checked."""


def enabled() -> bool:
    return bool(settings.GANTRY_IAP_AUDIENCE)


def local_login_allowed() -> bool:
    return not enabled() or settings.GANTRY_LOCAL_LOGIN


@dataclass(frozen=True)
class RoleRule:
    role: str
    pattern: str  # "alice@example.com", or "*@example.com" for everyone in that domain

    def matches(self, email: str) -> bool:
        if self.pattern.startswith("*@"):
            return email.endswith(self.pattern[1:])
        return email == self.pattern


@functools.cache
def parse_role_rules(text: str) -> tuple[RoleRule, ...]:
    """`role:pattern,pattern;role:pattern` -> rules; ImproperlyConfigured names what is wrong."""
    rules = []
    for entry in filter(None, (part.strip() for part in text.split(";"))):
        role, colon, patterns = (item.strip() for item in entry.partition(":"))
        if not colon or role not in ROLES:
            raise ImproperlyConfigured(
                f"GANTRY_IAP_ROLES: {entry!r} must be ROLE:E-MAILS with ROLE one of "
                f"{', '.join(ROLES)}"
            )
        for pattern in filter(None, (item.strip().lower() for item in patterns.split(","))):
            local, at, domain = pattern.rpartition("@")
            if (
                not at
                or not local
                or not domain
                or "*" in domain
                or ("*" in local and local != "*")
            ):
                raise ImproperlyConfigured(
                    f"GANTRY_IAP_ROLES: {pattern!r} (for {role}) is neither an e-mail address "
                    "nor *@domain"
                )
            rules.append(RoleRule(role, pattern))
    return tuple(rules)


def roles_for(email: str) -> list[str]:
    """The roles GANTRY_IAP_ROLES gives this e-mail address, sorted; empty when none match."""
    email = email.lower()
    return sorted({r.role for r in parse_role_rules(settings.GANTRY_IAP_ROLES) if r.matches(email)})


def check_settings():
    """Fail at start-up, not at the first sign-in, when IAP is on but cannot work."""
    audience = settings.GANTRY_IAP_AUDIENCE
    if not audience.startswith("/projects/"):
        raise ImproperlyConfigured(
            f"GANTRY_IAP_AUDIENCE={audience!r} is not an IAP audience: expected "
            "/projects/NUMBER/global/backendServices/ID or /projects/NUMBER/apps/PROJECT_ID"
        )
    if not parse_role_rules(settings.GANTRY_IAP_ROLES):
        raise ImproperlyConfigured("GANTRY_IAP_ROLES is empty: nobody could sign in through IAP")


@functools.cache
def signing_keys(url: str) -> jwt.PyJWKClient:
    """One cached key set per process and URL: fetched on first use, then about hourly."""
    return jwt.PyJWKClient(url, lifespan=KEYS_LIFESPAN_SECONDS, timeout=KEYS_TIMEOUT_SECONDS)


def _signing_key(kid: str) -> jwt.PyJWK:
    keys = signing_keys(settings.GANTRY_IAP_KEYS_URL)
    try:
        keys.get_signing_keys()
    except (jwt.PyJWKClientError, jwt.PyJWKSetError, json.JSONDecodeError) as exc:
        raise KeysUnavailable(str(exc)) from exc
    try:
        return keys.get_signing_key(kid)
    except jwt.PyJWKClientConnectionError as exc:
        raise KeysUnavailable(str(exc)) from exc
    except jwt.PyJWKClientError as exc:
        raise InvalidAssertion(f"no IAP key with id {kid!r}") from exc


def verify_assertion(token: str) -> str:
    """The lower-cased e-mail address of a valid IAP assertion for our audience."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise InvalidAssertion(f"malformed assertion: {exc}") from exc
    if header.get("alg") != ALGORITHM or not isinstance(header.get("kid"), str):
        raise InvalidAssertion(f"assertion must be {ALGORITHM} with a key id")
    key = _signing_key(header["kid"])
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            audience=settings.GANTRY_IAP_AUDIENCE,
            issuer=ISSUER,
            leeway=LEEWAY_SECONDS,
            options={"require": ["exp", "iat", "aud", "iss", "email"]},
        )
    except jwt.PyJWTError as exc:
        raise InvalidAssertion(str(exc)) from exc
    email = claims["email"]
    if not isinstance(email, str) or "@" not in email:
        raise InvalidAssertion("assertion's email claim is not an e-mail address")
    return email.lower()


def sync_user_roles(user, roles, request=None) -> bool:
    """Set the user's Gantry role groups to exactly `roles`; audit a change. Other groups stay."""
    wanted = set(roles)
    current = set(user.groups.filter(name__in=ROLES).values_list("name", flat=True))
    if wanted == current:
        return False
    groups = list(Group.objects.filter(name__in=wanted - current))
    if len(groups) != len(wanted - current):
        sync_roles()
        groups = list(Group.objects.filter(name__in=wanted - current))
    added, removed = sorted(wanted - current), sorted(current - wanted)
    with transaction.atomic():
        user.groups.remove(*Group.objects.filter(name__in=removed))
        user.groups.add(*groups)
        AuditEvent.record(
            "auth.roles",
            actor="system",
            obj=user,
            request=request,
            message=f"Roles from GANTRY_IAP_ROLES: {', '.join(sorted(wanted)) or 'none'}",
            data={"roles": sorted(wanted), "added": added, "removed": removed, "source": "iap"},
        )
    return True


class IapBackend(RemoteUserBackend):
    """Users signed in by IapMiddleware: created on first sign-in (username = e-mail), roles
    re-synced from GANTRY_IAP_ROLES each time. Refuses addresses no rule maps."""

    def clean_username(self, username):
        return username.lower()

    def authenticate(self, request, remote_user):
        if not enabled() or not remote_user or not roles_for(remote_user):
            return None
        with transaction.atomic():
            return super().authenticate(request, remote_user)

    def configure_user(self, request, user, created=True):
        if created:
            user.email = user.get_username()
            user.set_unusable_password()
            user.save(update_fields=["email", "password"])
        sync_user_roles(user, roles_for(user.get_username()), request)
        return user


def sign_out(request):
    if request.user.is_authenticated:
        auth.logout(request)


def refuse(request, status, title, message):
    request.user = AnonymousUser()
    response = render(
        request,
        "registration/iap_refused.html",
        {"title": title, "message": message},
        status=status,
    )
    if status == 503:
        response["Retry-After"] = "30"
    return response


class IapMiddleware(RemoteUserMiddleware):
    """RemoteUserMiddleware whose identity is the e-mail of a verified IAP assertion.

    Always installed; does nothing while GANTRY_IAP_AUDIENCE is unset. With it set, the
    assertion's identity wins over any session, and a request without a valid one is refused
    (401). A request with no assertion at all may instead go on anonymously to an exempt URL,
    or, with GANTRY_LOCAL_LOGIN=1, anywhere with a local account.
    """

    # Not an HTTP header (those get an HTTP_ prefix): only this class sets it, after verifying.
    header = "GANTRY_IAP_EMAIL"
    async_capable = False

    def __init__(self, get_response):
        super().__init__(get_response)
        if enabled():
            check_settings()

    def __call__(self, request):
        request.META.pop(self.header, None)
        if enabled() and (refusal := self.sign_in(request)):
            return refusal
        return self.get_response(request)

    @staticmethod
    def exempt(request) -> bool:
        try:
            match = resolve(request.path_info)
        except Resolver404:
            return False
        return match.url_name in EXEMPT_URL_NAMES or bool(EXEMPT_NAMESPACES & set(match.namespaces))

    def sign_in(self, request):
        token = request.META.get(ASSERTION_HEADER, "")
        if not token and local_login_allowed():
            super().process_request(request)  # no identity: drops IAP sessions, keeps local ones
            return None
        if not token and self.exempt(request):
            sign_out(request)
            return None
        try:
            if not token:
                raise InvalidAssertion("no x-goog-iap-jwt-assertion header")
            email = verify_assertion(token)
        except KeysUnavailable as exc:
            log.error("IAP sign-in unavailable: cannot fetch signing keys: %s", exc)
            return refuse(
                request,
                503,
                "Sign-in is unavailable",
                "Gantry cannot check sign-ins right now: it could not fetch Identity-Aware "
                "Proxy's signing keys. Try again in a minute.",
            )
        except InvalidAssertion as exc:
            log.warning("IAP assertion refused for %s: %s", request.path, exc)
            sign_out(request)
            return refuse(
                request,
                401,
                "Not signed in",
                "This request did not carry a valid Identity-Aware Proxy sign-in. Open Gantry "
                "through its load balancer; if you did, ask an administrator to check "
                "Gantry's IAP audience.",
            )
        roles = roles_for(email)
        if not roles:
            self.drop_roles(email, request)
            return refuse(
                request,
                403,
                "No access",
                f"You are signed in as {email}, but Gantry gives this address no role. "
                "Ask a Gantry administrator to add it to GANTRY_IAP_ROLES.",
            )
        request.META[self.header] = email
        super().process_request(request)
        user = request.user
        if not (user.is_authenticated and user.get_username().lower() == email):
            sign_out(request)
            return refuse(request, 403, "No access", f"The account {email} is disabled.")
        if request.session.get(ROLES_SESSION_KEY) != roles:
            sync_user_roles(user, roles, request)  # the mapping changed during this session
            request.session[ROLES_SESSION_KEY] = roles
        return None

    @staticmethod
    def drop_roles(email, request):
        """An address that lost every rule keeps its row (history) but none of its roles."""
        sign_out(request)
        user = auth.get_user_model()._default_manager.filter(username=email).first()
        if user is not None:
            sync_user_roles(user, [], request)
