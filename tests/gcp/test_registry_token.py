"""The worker's Google access token goes only to Google's registries (`*.pkg.dev`, `gcr.io`,
`*.gcr.io`, over HTTPS) or to the host of GANTRY_REGISTRY_URL (issue 13, item 6), whatever a
registry's challenge names. Registries here are loopback stand-ins: the sandbox's, and a small
TLS one reached under other host names through a resolver stub (no real DNS)."""

import base64
import datetime
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gcp import registry as gcp_registry
from gcp.errors import RegistryError
from gcp.registry import Registry

SECRET = "ya29.worker-secret"
ATTACKER = "registry.attacker.test"
GOOGLE = "europe-docker.pkg.dev"
DIGEST = "sha256:" + "1" * 64


@pytest.fixture
def resolver(monkeypatch):
    """Loopback stays loopback; ATTACKER and GOOGLE resolve to 127.0.0.1; any other name fails
    as an unknown host would, so nothing here ever asks real DNS."""
    real = socket.getaddrinfo

    def stub(host, port, *args, **kwargs):
        if host in ("127.0.0.1", "::1", "localhost", ATTACKER, GOOGLE):
            return real("127.0.0.1" if host in (ATTACKER, GOOGLE) else host, port, *args, **kwargs)
        raise socket.gaierror(socket.EAI_NONAME, f"{host}: not in the test's resolver stub")

    monkeypatch.setattr(socket, "getaddrinfo", stub)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for ATTACKER and GOOGLE: (cert file, key file, PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "registry stand-in")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(ATTACKER), x509.DNSName(GOOGLE)]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    pem = cert.public_bytes(serialization.Encoding.PEM)
    (folder / "cert.pem").write_bytes(pem)
    (folder / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(folder / "cert.pem"), str(folder / "key.pem"), pem.decode()


class StandIn:
    """A registry on 127.0.0.1 that challenges every manifest request with Bearer `realm`
    (its own token endpoint unless told otherwise); the endpoint gives a token only for Basic
    credentials. `seen` keeps every request's path and Authorization header."""

    def __init__(self, tls: tuple[str, str] | None = None):
        self.seen: list[tuple[str, str]] = []
        self.realm = ""
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def answer(self, body: bool):
                auth = self.headers.get("Authorization", "")
                stand_in.seen.append((self.path, auth))
                if self.path.startswith("/v2/token"):
                    if auth.startswith("Basic "):
                        self.reply(200, b'{"token": "registry-token", "expires_in": 300}', body)
                    else:
                        self.reply(401, b"{}", body, {"WWW-Authenticate": 'Basic realm="x"'})
                elif auth == "Bearer registry-token":
                    self.reply(200, b"{}", body, {"Docker-Content-Digest": DIGEST})
                else:
                    challenge = f'Bearer realm="{stand_in.realm}",service="registry"'
                    self.reply(401, b"{}", body, {"WWW-Authenticate": challenge})

            def reply(self, status, content, body, headers=None):
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                if body:
                    self.wfile.write(content)

            def do_GET(self):
                self.answer(True)

            def do_HEAD(self):
                self.answer(False)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def tokens_sent(self) -> list[str]:
        """The access tokens this stand-in was given as Basic credentials."""
        sent = []
        for _, auth in self.seen:
            if auth.startswith("Basic "):
                sent.append(base64.b64decode(auth.removeprefix("Basic ")).decode().split(":")[1])
        return sent

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stand_ins(certificate):
    started = []

    def start(tls=False) -> StandIn:
        stand_in = StandIn(certificate[:2] if tls else None)
        started.append(stand_in)
        return stand_in

    yield start
    for stand_in in started:
        stand_in.stop()


def client(certificate) -> httpx.Client:
    return httpx.Client(timeout=5, verify=ssl.create_default_context(cadata=certificate[2]))


def test_the_token_is_not_sent_to_an_images_own_host_elsewhere(resolver, stand_ins, certificate):
    attacker = stand_ins(tls=True)
    host = f"{ATTACKER}:{attacker.port}"
    attacker.realm = f"https://{host}/v2/token"
    registry = Registry(access_token=lambda: SECRET)
    registry.http = client(certificate)
    with pytest.raises(RegistryError, match=f"not sending the Google access token to {ATTACKER}"):
        registry.get_digest(f"{host}/attacker/backdoor:latest")
    assert attacker.tokens_sent() == []
    assert [path for path, _ in attacker.seen] == [
        "/v2/attacker/backdoor/manifests/latest",
        "/v2/token?service=registry",  # asked without credentials: it wants some, so no more
    ]


def test_the_token_is_not_sent_to_a_realm_elsewhere_that_the_configured_registry_names(
    resolver, stand_ins, certificate
):
    configured, attacker = stand_ins(), stand_ins(tls=True)
    host = f"{ATTACKER}:{attacker.port}"
    configured.realm = f"https://{host}/v2/token"  # the image's host, over https
    registry = Registry(f"http://127.0.0.1:{configured.port}", access_token=lambda: SECRET)
    registry.http = client(certificate)
    with pytest.raises(RegistryError, match="not sending the Google access token"):
        registry.get_digest(f"{host}/attacker/backdoor:latest")
    assert attacker.tokens_sent() == configured.tokens_sent() == []


def test_googles_registry_gets_the_token(resolver, stand_ins, certificate):
    google = stand_ins(tls=True)
    host = f"{GOOGLE}:{google.port}"
    google.realm = f"https://{host}/v2/token"
    registry = Registry(access_token=lambda: SECRET)
    registry.http = client(certificate)
    assert registry.get_digest(f"{host}/p/r/app:v1") == DIGEST
    assert google.tokens_sent() == [SECRET]


def test_the_configured_registry_gets_the_token(sandbox, resolver):
    """GANTRY_REGISTRY_URL's host (here the sandbox's registry, which asks for credentials)."""
    assert httpx.post(f"{sandbox.url}/_sandbox/registry", json={"auth": True}).status_code == 200
    registry = Registry(sandbox.url, access_token=lambda: SECRET)
    digest = sandbox.world.registry.get("nemo-prod/registry/backend", "prod-v1")[0]
    image = "asia-northeast3-docker.pkg.dev/nemo-prod/registry/backend:prod-v1"
    assert registry.get_digest(image) == digest
    assert sandbox.world.registry.token_requests == 1


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://europe-docker.pkg.dev/v2/token", True),
        ("https://asia-northeast3-docker.pkg.dev/v2/token", True),
        ("https://gcr.io/v2/token", True),
        ("https://EU.GCR.IO/v2/token", True),
        ("https://europe-docker.pkg.dev./v2/token", True),
        ("http://europe-docker.pkg.dev/v2/token", False),  # not over https
        ("https://pkg.dev/v2/token", False),
        ("https://evilgcr.io/v2/token", False),
        ("https://gcr.io.attacker.test/v2/token", False),
        ("https://europe-docker.pkg.dev.attacker.test/v2/token", False),
        ("https://europe-docker.pkg.dev@registry.attacker.test/v2/token", False),
        ("https://registry.attacker.test/v2/token", False),
        ("https://registry.attacker.test/europe-docker.pkg.dev/v2/token", False),
        ("http://127.0.0.1:5000/v2/token", True),  # the configured registry's host
        ("http://127.0.0.1:5001/v2/token", True),
        ("http://localhost:5000/v2/token", False),
        ("not a url", False),
    ],
)
def test_where_the_token_may_go(url, allowed):
    assert gcp_registry.may_send_access_token(url, configured="http://127.0.0.1:5000") is allowed
