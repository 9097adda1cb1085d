"""Sign-in through Identity-Aware Proxy, against a real JWK server on loopback serving keys made
here. Tokens are signed with PyJWT the way IAP signs them (ES256, issuer cloud.google.com/iap)."""

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from django.contrib.auth.models import User
from django.core.exceptions import ImproperlyConfigured
from django.test import Client
from django.urls import reverse

from audit.models import AuditEvent
from portal import iap
from portal.roles import sync_roles

pytestmark = pytest.mark.django_db

AUDIENCE = "/projects/123456789/global/backendServices/987654321"
ROLES = "admin:alice@example.com;approver:*@example.com,bob@partner.com;viewer:*@example.com"
KID = "test-key-1"


def new_key():
    return ec.generate_private_key(ec.SECP256R1())


def public_jwk(private_key, kid):
    jwk = jwt.algorithms.ECAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
    return {**jwk, "kid": kid, "alg": "ES256", "use": "sig"}


class KeyServer(ThreadingHTTPServer):
    """Serves a JWK set at /keys and counts how often it is fetched."""

    def __init__(self, keys):
        self.keys, self.hits, self.status = keys, 0, 200

        class Handler(BaseHTTPRequestHandler):
            def do_GET(handler):
                self.hits += 1
                body = json.dumps({"keys": self.keys}).encode()
                handler.send_response(self.status)
                handler.send_header("Content-Type", "application/json")
                handler.send_header("Content-Length", str(len(body)))
                handler.end_headers()
                handler.wfile.write(body)

            def log_message(handler, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}/keys"


@pytest.fixture
def signing_key():
    return new_key()


@pytest.fixture
def key_server(signing_key):
    server = KeyServer([public_jwk(signing_key, KID)])
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()
    iap.signing_keys.cache_clear()


@pytest.fixture
def iap_on(settings, key_server):
    """IAP as production runs it: an audience, role rules, no local passwords."""
    sync_roles()
    settings.GANTRY_IAP_AUDIENCE = AUDIENCE
    settings.GANTRY_IAP_KEYS_URL = key_server.url
    settings.GANTRY_IAP_ROLES = ROLES
    settings.GANTRY_LOCAL_LOGIN = False
    return settings


def claims(email="alice@example.com", **overrides):
    now = int(time.time())
    return {
        "iss": iap.ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 600,
        "sub": "accounts.google.com:1234567890",
        "email": email,
        "hd": "example.com",
        **overrides,
    }


@pytest.fixture
def assertion(signing_key):
    """assertion(email=..., **claims) -> a token signed like IAP's."""

    def make(key=None, kid=KID, algorithm="ES256", **fields):
        return jwt.encode(
            claims(**fields), key or signing_key, algorithm=algorithm, headers={"kid": kid}
        )

    return make


def iap_header(token):
    return {"x-goog-iap-jwt-assertion": token} if token is not None else {}


def visit(client, token, name="audit"):
    return client.get(reverse(name), headers=iap_header(token))


def roles_of(username):
    return set(User.objects.get(username=username).groups.values_list("name", flat=True))


def role_audits():
    return AuditEvent.objects.filter(action="auth.roles")


def test_a_valid_assertion_signs_in_and_creates_one_user_with_the_mapped_roles(
    client, iap_on, assertion
):
    response = visit(client, assertion())
    assert response.status_code == 200
    assert "alice@example.com" in response.content.decode()
    user = User.objects.get()
    assert (user.username, user.email) == ("alice@example.com", "alice@example.com")
    assert not user.has_usable_password()
    assert roles_of("alice@example.com") == {"admin", "approver", "viewer"}
    event = role_audits().get()
    assert event.data["added"] == ["admin", "approver", "viewer"] and event.data["removed"] == []
    assert event.object_repr == "alice@example.com"

    # The session holds the sign-in; later requests (fresh assertions) add no row and no audit.
    for _ in range(3):
        assert visit(client, assertion()).status_code == 200
    assert User.objects.count() == 1 and role_audits().count() == 1
    assert User.objects.get().last_login == user.last_login


def test_addresses_are_matched_without_regard_to_case(client, iap_on, assertion):
    assert visit(client, assertion(email="Bob@Partner.COM")).status_code == 200
    assert roles_of("bob@partner.com") == {"approver"}


@pytest.mark.parametrize(
    "case",
    [
        "wrong audience",
        "other backend service",
        "wrong issuer",
        "expired",
        "not yet valid",
        "wrong key, same key id",
        "unknown key id",
        "alg none",
        "HS256",
        "no email claim",
        "no expiry",
        "garbage",
        "missing header",
    ],
)
def test_an_invalid_assertion_is_refused_and_creates_nobody(
    client, iap_on, assertion, signing_key, case
):
    now = int(time.time())
    token = {
        "wrong audience": lambda: assertion(aud="/projects/123456789/apps/other-project"),
        "other backend service": lambda: assertion(aud=AUDIENCE + "0"),
        "wrong issuer": lambda: assertion(iss="https://accounts.google.com"),
        "expired": lambda: assertion(iat=now - 1200, exp=now - 600),
        "not yet valid": lambda: assertion(iat=now + 600, exp=now + 1200),
        "wrong key, same key id": lambda: assertion(key=new_key()),
        "unknown key id": lambda: assertion(key=new_key(), kid="not-ours"),
        "alg none": lambda: jwt.encode(claims(), None, algorithm="none", headers={"kid": KID}),
        "HS256": lambda: jwt.encode(
            claims(),
            "a-shared-secret-long-enough-for-hs256",
            algorithm="HS256",
            headers={"kid": KID},
        ),
        "no email claim": lambda: assertion(email=None),
        "no expiry": lambda: jwt.encode(
            {k: v for k, v in claims().items() if k != "exp"},
            signing_key,
            algorithm="ES256",
            headers={"kid": KID},
        ),
        "garbage": lambda: "not.a.jwt",
        "missing header": lambda: None,
    }[case]()
    response = visit(client, token)
    assert response.status_code == 401
    assert "did not carry a valid Identity-Aware Proxy sign-in" in response.content.decode()
    assert token is None or token not in response.content.decode()
    assert User.objects.count() == 0 and AuditEvent.objects.count() == 0
    assert "_auth_user_id" not in client.session


def test_an_address_no_rule_maps_is_forbidden_and_creates_nobody(client, iap_on, assertion):
    response = visit(client, assertion(email="mallory@elsewhere.org"))
    assert response.status_code == 403
    page = response.content.decode()
    assert "mallory@elsewhere.org" in page and "GANTRY_IAP_ROLES" in page
    assert User.objects.count() == 0 and AuditEvent.objects.count() == 0
    # A subdomain is not the domain.
    assert visit(client, assertion(email="eve@corp.example.com")).status_code == 403
    assert User.objects.count() == 0


def test_roles_are_resynced_at_the_next_sign_in_with_one_audit_row(client, iap_on, assertion):
    visit(client, assertion())
    assert roles_of("alice@example.com") == {"admin", "approver", "viewer"}
    iap_on.GANTRY_IAP_ROLES = "deployer:alice@example.com;viewer:*@example.com"

    assert visit(Client(), assertion()).status_code == 200
    assert roles_of("alice@example.com") == {"deployer", "viewer"}
    assert User.objects.count() == 1
    change = role_audits().order_by("-id").first()
    assert role_audits().count() == 2
    assert change.data["added"] == ["deployer"]
    assert change.data["removed"] == ["admin", "approver"]
    assert change.actor == "system"


def test_a_mapping_change_reaches_an_open_session_too(client, iap_on, assertion):
    visit(client, assertion())
    iap_on.GANTRY_IAP_ROLES = "viewer:alice@example.com"
    assert visit(client, assertion()).status_code == 200
    assert roles_of("alice@example.com") == {"viewer"}
    assert role_audits().count() == 2
    visit(client, assertion())
    assert role_audits().count() == 2


def test_groups_outside_gantrys_roles_are_left_alone(client, iap_on, assertion):
    from django.contrib.auth.models import Group

    visit(client, assertion())
    User.objects.get().groups.add(Group.objects.create(name="on-call"))
    iap_on.GANTRY_IAP_ROLES = "viewer:alice@example.com"
    visit(Client(), assertion())
    assert roles_of("alice@example.com") == {"viewer", "on-call"}


def test_losing_every_rule_drops_the_roles_and_the_session(client, iap_on, assertion):
    visit(client, assertion())
    iap_on.GANTRY_IAP_ROLES = "viewer:bob@partner.com"
    response = visit(client, assertion())
    assert response.status_code == 403
    assert roles_of("alice@example.com") == set()
    assert role_audits().count() == 2
    assert "_auth_user_id" not in client.session


def test_the_assertion_wins_over_the_session(client, iap_on, assertion, django_user_model):
    visit(client, assertion())
    response = visit(client, assertion(email="bob@partner.com"))
    assert response.status_code == 200
    assert response.wsgi_request.user.username == "bob@partner.com"
    assert client.session["_auth_user_id"] == str(User.objects.get(username="bob@partner.com").pk)

    local = django_user_model.objects.create_user("carol", password="pw-for-tests-1")
    client.force_login(local, backend="django.contrib.auth.backends.ModelBackend")
    response = visit(client, assertion())
    assert response.wsgi_request.user.username == "alice@example.com"
    assert User.objects.count() == 3


def test_a_disabled_account_is_forbidden(client, iap_on, assertion):
    visit(Client(), assertion())
    User.objects.filter(username="alice@example.com").update(is_active=False)
    response = visit(client, assertion())
    assert response.status_code == 403 and "disabled" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_local_sessions_and_password_sign_in_are_refused_without_an_assertion(
    client, iap_on, django_user_model
):
    local = django_user_model.objects.create_user("carol", password="pw-for-tests-1")
    client.force_login(local, backend="django.contrib.auth.backends.ModelBackend")
    assert visit(client, None).status_code == 401
    response = client.post(reverse("login"), {"username": "carol", "password": "pw-for-tests-1"})
    assert response.status_code == 401
    assert "_auth_user_id" not in client.session


def test_local_login_beside_iap_when_allowed(client, iap_on, assertion, make_user):
    iap_on.GANTRY_LOCAL_LOGIN = True
    make_user("viewer", "carol", password="correct horse battery")
    signed_in = client.post(
        reverse("login"), {"username": "carol", "password": "correct horse battery"}
    )
    assert signed_in.status_code == 302 and signed_in["Location"] == reverse("home")
    assert visit(client, None).status_code == 200
    # An IAP session does not outlive the assertion: without one, it is signed out.
    visit(client, assertion())
    response = visit(client, None)
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    # A request that carries an assertion is judged by it, even here.
    assert visit(client, "not.a.jwt").status_code == 401


def test_healthz_and_self_authenticated_endpoints_need_no_assertion(client, iap_on, assertion):
    health = client.get(reverse("healthz"))
    assert health.status_code in (200, 503) and "checks" in health.json()
    webhook = client.post(reverse("github-webhook"), data="{}", content_type="application/json")
    assert webhook.status_code == 401 and "webhook secret" in webhook.json()["error"]
    api = client.get(reverse("api:api-releases"))
    assert api.status_code == 401 and "error" in api.json()
    assert client.get(reverse("metrics")).status_code == 401  # Prometheus brings its own token
    assert User.objects.count() == 0

    # An IAP session does not carry over to an exempt URL without the assertion...
    visit(client, assertion())
    assert client.get(reverse("api:api-releases")).status_code == 401
    assert "_auth_user_id" not in client.session
    # ...while through IAP the API sees the signed-in user, and a bad assertion is still refused.
    through_iap = client.get(reverse("api:api-releases"), headers=iap_header(assertion()))
    assert through_iap.status_code == 200
    assert client.get(reverse("api:api-releases"), headers=iap_header("x.y.z")).status_code == 401


def test_keys_are_fetched_once_for_many_requests(iap_on, assertion, key_server):
    for n in range(20):
        email = "alice@example.com" if n % 2 else f"user{n}@example.com"
        assert visit(Client(), assertion(email=email)).status_code == 200
    # Tokens naming unknown keys do not make every request refetch (PyJWT's refresh cooldown).
    for _ in range(5):
        assert visit(Client(), assertion(key=new_key(), kid="rotated-away")).status_code == 401
    assert key_server.hits == 1


def test_a_newly_rotated_key_is_picked_up(iap_on, assertion, key_server):
    assert visit(Client(), assertion()).status_code == 200
    rotated = new_key()
    key_server.keys.append(public_jwk(rotated, "test-key-2"))
    # PyJWT refetches for an unknown key id once its 30 s cooldown has passed.
    iap.signing_keys(key_server.url).cooldown_duration = 0
    assert visit(Client(), assertion(key=rotated, kid="test-key-2")).status_code == 200
    assert key_server.hits == 2


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("outage", ["server down", "server error", "not a key set"])
def test_unreachable_keys_give_a_clear_503_and_no_user(
    client, iap_on, assertion, key_server, outage
):
    if outage == "server down":
        iap_on.GANTRY_IAP_KEYS_URL = f"http://127.0.0.1:{free_port()}/keys"
    elif outage == "server error":
        key_server.status = 500
    else:
        key_server.keys = "nope"
    response = visit(client, assertion())
    assert response.status_code == 503
    assert response["Retry-After"] == "30"
    assert "could not fetch Identity-Aware Proxy&#x27;s signing keys" in response.content.decode()
    assert User.objects.count() == 0 and AuditEvent.objects.count() == 0


def test_without_an_audience_the_header_is_ignored(client, settings, key_server, assertion):
    settings.GANTRY_IAP_KEYS_URL = key_server.url
    settings.GANTRY_IAP_ROLES = ROLES
    response = visit(client, assertion())
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    assert User.objects.count() == 0 and key_server.hits == 0


def test_role_rules_format():
    rules = iap.parse_role_rules(" admin : Alice@Example.com ; viewer:*@example.com, x@y.org ;")
    assert rules == (
        iap.RoleRule("admin", "alice@example.com"),
        iap.RoleRule("viewer", "*@example.com"),
        iap.RoleRule("viewer", "x@y.org"),
    )


@pytest.mark.parametrize(
    "text, complaint",
    [
        ("owner:alice@example.com", "ROLE one of viewer, ci, deployer, approver, admin"),
        ("alice@example.com", "must be ROLE:E-MAILS"),
        ("viewer:example.com", "'example.com' (for viewer) is neither"),
        ("viewer:*.example.com", "neither"),
        ("viewer:*@*", "neither"),
        ("viewer:a*@example.com", "neither"),
    ],
)
def test_bad_role_rules_are_refused_with_the_reason(text, complaint):
    with pytest.raises(ImproperlyConfigured, match=re.escape(complaint)):
        iap.parse_role_rules(text)


@pytest.mark.parametrize(
    "audience, roles, complaint",
    [
        ("123456789", ROLES, "is not an IAP audience"),
        (AUDIENCE, "", "GANTRY_IAP_ROLES is empty"),
        (AUDIENCE, "boss:alice@example.com", "ROLE one of"),
    ],
)
def test_iap_refuses_to_start_misconfigured(settings, audience, roles, complaint):
    settings.GANTRY_IAP_AUDIENCE, settings.GANTRY_IAP_ROLES = audience, roles
    with pytest.raises(ImproperlyConfigured, match=complaint):
        iap.IapMiddleware(lambda request: None)


@pytest.mark.parametrize(
    "environment, password_backend",
    [
        ({}, True),
        ({"GANTRY_IAP_AUDIENCE": AUDIENCE}, False),
        ({"GANTRY_IAP_AUDIENCE": AUDIENCE, "GANTRY_LOCAL_LOGIN": "1"}, True),
    ],
)
def test_settings_drop_password_sign_in_under_iap(environment, password_backend):
    """The settings module as a fresh process reads it from the environment."""
    script = "from portal import settings; print(settings.AUTHENTICATION_BACKENDS)"
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("GANTRY_IAP_AUDIENCE", "GANTRY_LOCAL_LOGIN")
    }
    out = subprocess.run(
        [sys.executable, "-c", script],
        env={**env, **environment},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "portal.iap.IapBackend" in out
    assert ("django.contrib.auth.backends.ModelBackend" in out) is password_backend
