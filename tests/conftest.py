import json
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.contrib.auth.models import Group
from django.utils import timezone

pytest_plugins = ["sandbox.pytest_plugin"]

DB_FIXTURES = {"db", "transactional_db", "live_server", "django_db_reset_sequences"}


def pytest_collection_modifyitems(config, items):
    """On the PostgreSQL/MariaDB runs, keep only tests that use the database."""
    if not os.environ.get("GANTRY_TEST_DB_ONLY"):
        return
    keep, drop = [], []
    for item in items:
        uses_db = item.get_closest_marker("django_db") or DB_FIXTURES & set(
            getattr(item, "fixturenames", ())
        )
        if item.get_closest_marker("sqlite_is_enough"):
            uses_db = False
        (keep if uses_db else drop).append(item)
    items[:] = keep
    config.hook.pytest_deselected(items=drop)


@pytest.fixture
def seed_topology(db):
    """The shipped topology, loaded the way `load_topology` does, with its deploy freezes
    switched off: a test must not pass on a Wednesday and fail on a Saturday. The freeze tests
    switch them back on and choose their own moment."""
    from environments.models import FreezeWindow
    from environments.topology import sync_topology

    sync_topology(settings.GANTRY_TOPOLOGY_FILE)
    FreezeWindow.objects.update(enabled=False)


@pytest.fixture
def sim_time(sandbox):
    """The sandbox's clock, frozen, as the engine's clock (tests/deployments/engine_helpers.py
    SimTime): time passes only when the test moves it, and `drive` moves it by each step's
    delay instead of sleeping. Engine deadlines are then simulated seconds, whatever the
    machine's speed."""
    from tests.deployments.engine_helpers import SimTime

    with SimTime(sandbox) as sim:
        yield sim


@pytest.fixture
def engine(seed_topology, sandbox, sandbox_settings, sim_time, patient_probes, settings):
    """The sandbox on simulated time, with the engine's production timings (simulated seconds:
    a step's delay passes in no real time). Set here, not read from the environment, so a
    developer's GANTRY_* variables cannot change what the tests mean."""
    settings.GANTRY_ENGINE_POLL_SECONDS = 2.0
    settings.GANTRY_VERIFY_INTERVAL = 5.0
    settings.GANTRY_VERIFY_PASSES = 2
    settings.GANTRY_VERIFY_TIMEOUT = 300.0
    settings.GANTRY_ROLLOUT_TIMEOUT = 900.0
    settings.GANTRY_WARM_SECONDS = 300.0
    settings.GANTRY_MAX_RETRIES = 6
    return sandbox


@pytest.fixture
def patient_probes(settings):
    """Probe timings for tests about what a probe finds, not how fast it finds it: a loaded
    machine must not turn a healthy answer into a timeout, or into "degraded" for its latency
    (GANTRY_PROBE_SLOW_MS). A test about slowness sets its own."""
    settings.GANTRY_PROBE_TIMEOUT = 30.0
    settings.GANTRY_PROBE_SLOW_MS = 60_000.0


@pytest.fixture
def make_user(db, django_user_model):
    """make_user("approver") -> a signed-in-able user in that role's group, known on GitHub by
    their username (as if an admin had said so); github_login="" for someone Gantry does not
    know there, or another login."""
    from portal.models import Profile, login_problem
    from portal.roles import sync_roles

    sync_roles()

    def make(role=None, username=None, password="pw-for-tests-1", github_login=None):
        user = django_user_model.objects.create_user(
            username or role or "nobody", password=password
        )
        if role:
            user.groups.add(Group.objects.get(name=role))
        login = user.get_username().lower() if github_login is None else github_login
        if github_login is None and login_problem(login):  # no GitHub login looks like that
            login = ""
        source = Profile.Source.ADMIN if login else Profile.Source.NONE
        Profile.objects.update_or_create(
            user=user, defaults={"github_login": login, "github_login_source": source}
        )
        return user

    return make


@pytest.fixture
def client_as(client, make_user):
    """client_as("viewer") -> a test client signed in as a new user with that role."""

    def sign_in(role, username=None):
        client.force_login(make_user(role, username))
        return client

    return sign_in


def _tcp_reason(url: str) -> str | None:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port or 6379), timeout=1):
            return None
    except OSError as exc:
        return f"Redis at {parts.hostname}:{parts.port} unreachable ({exc.strerror or exc})"


@pytest.fixture(scope="session")
def redis_url():
    """A real Redis for tests (GANTRY_TEST_REDIS_URL, db 15 by default); skipped when absent."""
    url = os.environ.get("GANTRY_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    if why := _tcp_reason(url):
        pytest.skip(why)
    return url


@pytest.fixture(autouse=True, scope="session")
def in_process_broker():
    """Tasks enqueued by tests go to kombu's in-memory transport, never to var/broker."""
    from portal.celery import app

    app.conf.broker_url = "memory://"
    # A worker thread looks for due messages every 50 ms, not kombu's default second: the
    # engine's steps come one after another, each a message.
    app.conf.broker_transport_options = {"polling_interval": 0.05}
    yield app


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def isolated_cache(settings):
    """Each test gets an empty in-process cache instead of the file cache under var/, and
    dashboards read fresh each time (test_dashboard_cache.py tests the sharing)."""
    settings.GANTRY_DASHBOARD_CACHE_SECONDS = 0
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "t"}
    }
    from django.core.cache import cache

    cache.clear()


@pytest.fixture
def make_deployment(seed_topology):
    """make_deployment("prod", "backend", state="queued") -> a Deployment of a fresh release."""
    from deployments.models import Deployment, Release
    from environments.models import Component

    counter = iter(range(1, 10_000))

    def make(environment="prod", component="backend", state="queued", **fields):
        n = next(counter)
        target = Component.objects.get(environment__name=environment, name=component)
        sha = f"{n:040x}"
        release = Release.objects.create(
            component=target,
            repository=f"nemo/{component}",
            branch="main" if environment == "prod" else "develop",
            sha=sha,
            version=f"v{n}",
            author="dev-alice",
            image=f"{target.environment.registry}/{target.image or component}:{sha}",
            digest="sha256:" + f"{n:064x}",
        )
        return Deployment.objects.create(
            release=release,
            component=target,
            state=state,
            strategy=target.strategy,
            queued_at=timezone.now() if state == "queued" else None,
            **fields,
        )

    return make


@pytest.fixture
def http_stack():
    """A local HTTP server; `routes[path] = (status, body, delay_seconds)`; `most_at_once` is
    the most requests it has served at the same time."""
    routes = {}
    busy = {"now": 0, "most": 0}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            """Counted busy until just before the answer is sent, so a client that waits for
            one answer before asking again is never seen twice at once."""
            status, body, delay = routes.get(self.path, (404, "not found", 0))
            with lock:
                busy["now"] += 1
                busy["most"] = max(busy["most"], busy["now"])
                server.most_at_once = busy["most"]
            try:
                time.sleep(delay)
            finally:
                with lock:
                    busy["now"] -= 1
            payload = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.routes = routes
    server.most_at_once = 0
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def app_key():
    """A GitHub App's RSA key pair, made for this test run: (private PEM, public PEM)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


@pytest.fixture
def prod_stack(seed_topology, http_stack, patient_probes, settings):
    """prod's HTTP components answering healthy from a local server; TCP probes unknown."""
    from environments.models import Environment

    settings.GANTRY_STACK_URL = http_stack.url
    settings.GANTRY_PROBE_TARGETS = ""
    settings.GANTRY_STATUS_CONFIRMATIONS = 3
    routes = http_stack.routes
    routes["/prod/frontend/"] = (200, b"ok", 0)
    routes["/prod/backend/actuator/health"] = (200, {"status": "UP"}, 0)
    routes["/prod/ai-server/health"] = (200, {"status": "ok"}, 0)
    routes["/prod/chromadb/api/v2/heartbeat"] = (200, {"nanosecond heartbeat": 1}, 0)
    return Environment.objects.get(name="prod"), routes


@pytest.fixture
def token_for(make_user):
    """token_for("approver", "bob") -> the raw bearer token of a new user in that role."""

    from portal.models import ApiToken

    def issue(role, username=None):
        token = ApiToken(name=f"{role}-token", user=make_user(role, username or f"{role}-bot"))
        raw = token.issue()
        token.save()
        return raw

    return issue


@pytest.fixture
def api(client):
    """api("GET", "/api/releases/", token, json=...) -> the response, via Django's test client."""

    def call(method, path, token=None, json_body=None, raw=None, **query):
        headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
        if method == "GET":
            return client.get(path, query, **headers)
        body = raw if raw is not None else ("" if json_body is None else json.dumps(json_body))
        return client.generic(method, path, body, content_type="application/json", **headers)

    return call
