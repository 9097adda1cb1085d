"""A local webhook receiver on loopback, channels pointing at it, and a stub resolver.

Every test here runs with a stub resolver (`dns`) and a socket guard: a host name resolves only
to what the test says, and a connection to anything but loopback is refused and recorded, so
the public-looking addresses in resolver stubs are never reached.
"""

import ipaddress
import json
import socket
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

SECRET_PATH = "/api/webhooks/4242/s3cr3t-t0ken-abcdef"
# A public-looking address for names the stub resolver answers; the socket guard (`dns`) makes
# sure nothing ever connects to it.
PUBLIC = "34.120.0.1"
PUBLIC_NAMES = ("discord.com", "hooks.slack.com", "gateway.example.com", "hooks.example.com")


class Receiver(ThreadingHTTPServer):
    """Records every POST; answers from a script of (status, body, delay, headers), then 204.
    A ":reason" header is sent as the status line's reason phrase instead."""

    daemon_threads = True

    def __init__(self):
        self.requests = []
        self.script = deque()
        self.lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(handler):
                length = int(handler.headers.get("Content-Length", 0))
                raw = handler.rfile.read(length)
                with self.lock:
                    self.requests.append(
                        {
                            "path": handler.path,
                            "headers": dict(handler.headers),
                            "json": json.loads(raw or b"null"),
                        }
                    )
                    status, body, delay, headers = (
                        self.script.popleft() if self.script else (204, "", 0, {})
                    )
                time.sleep(delay)
                payload = body.encode()
                try:
                    handler.send_response(status, headers.get(":reason"))
                    for name, value in headers.items():
                        if not name.startswith(":"):
                            handler.send_header(name, value)
                    handler.send_header("Content-Length", str(len(payload)))
                    handler.end_headers()
                    handler.wfile.write(payload)
                except OSError:
                    pass  # the client gave up waiting (a timeout test)

            def log_message(handler, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def base(self):
        return f"http://127.0.0.1:{self.server_address[1]}"

    def answer(self, *responses):
        """answer(500, (429, "", 0, {"Retry-After": "0"}), (200, "ok", 2.0, {})): the next
        answers, in order; a bare int is that status with an empty body."""
        for response in responses:
            if isinstance(response, int):
                response = (response, "", 0, {})
            self.script.append(tuple(response) + ("", 0, {})[len(response) - 1 :])

    def always(self, status, body="", delay=0):
        self.answer(*[(status, body, delay, {})] * 100)

    @property
    def bodies(self):
        return [r["json"] for r in self.requests]


@pytest.fixture
def receiver():
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


class StubDNS:
    """socket.getaddrinfo for names in `answers` (a list of addresses, or a callable returning
    one); literal addresses resolve as usual, without a lookup; any other name does not exist."""

    def __init__(self, real):
        self.real = real
        self.answers = {name: [PUBLIC] for name in PUBLIC_NAMES}
        self.answers["localhost"] = ["127.0.0.1", "::1"]
        self.asked = []

    def __call__(self, host, port, family=0, type=0, proto=0, flags=0):
        name = host.decode() if isinstance(host, bytes) else host
        self.asked.append(name)
        if name in self.answers:
            answer = self.answers[name]
            addresses = answer() if callable(answer) else answer
            return [self._entry(address, port, type, proto) for address in addresses]
        if name is None or self._literal(name):
            return self.real(host, port, family, type, proto, flags | socket.AI_NUMERICHOST)
        raise socket.gaierror(socket.EAI_NONAME, f"stub resolver: no such name {name!r}")

    @staticmethod
    def _literal(name):
        try:
            ipaddress.ip_address(name.strip("[]"))
        except ValueError:
            return False
        return True

    @staticmethod
    def _entry(address, port, type, proto):
        ip = ipaddress.ip_address(address)
        family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
        sockaddr = (address, int(port or 0)) + ((0, 0) if ip.version == 6 else ())
        return (family, type or socket.SOCK_STREAM, proto or socket.IPPROTO_TCP, "", sockaddr)

    def count(self, name):
        return self.asked.count(name)


@pytest.fixture(autouse=True)
def dns(monkeypatch):
    """The stub resolver, and `dns.refused`: every connection attempt to a non-loopback address
    (refused before any packet is sent)."""
    stub = StubDNS(socket.getaddrinfo)
    stub.refused = []
    monkeypatch.setattr(socket, "getaddrinfo", stub)

    def guarded(method):
        def connect(sock, address):
            if isinstance(address, tuple) and not ipaddress.ip_address(address[0]).is_loopback:
                stub.refused.append(address)
                raise ConnectionRefusedError(f"test guard: no connections to {address[0]}")
            return method(sock, address)

        return connect

    monkeypatch.setattr(socket.socket, "connect", guarded(socket.socket.connect))
    monkeypatch.setattr(socket.socket, "connect_ex", guarded(socket.socket.connect_ex))
    yield stub
    assert stub.refused == [], "a test tried to connect beyond loopback"


@pytest.fixture(autouse=True)
def fast_notifications(settings):
    """No waiting between tries (the eager retries ignore countdowns anyway), short timeouts;
    the loopback receiver is an explicitly allowed network, as an internal relay would be."""
    settings.GANTRY_NOTIFY_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    settings.GANTRY_NOTIFY_BACKOFF = 0
    settings.GANTRY_NOTIFY_TIMEOUT = 1.0
    settings.GANTRY_NOTIFY_MAX_ATTEMPTS = 6
    settings.GANTRY_NOTIFY_FAILING_AFTER = 3
    settings.GANTRY_BASE_URL = "https://gantry.example.com"


@pytest.fixture
def make_channel(seed_topology, receiver):
    """make_channel("slack", environment="prod", events=[...]) -> a Channel at the receiver."""
    from environments.models import Environment
    from notifications.models import Channel

    def make(kind="webhook", environment="prod", name=None, events=None, **fields):
        channel = Channel(
            environment=Environment.objects.get(name=environment),
            name=name or f"{kind}-{Channel.objects.count() + 1}",
            kind=kind,
            url=fields.pop("url", receiver.base + SECRET_PATH),
            **fields,
        )
        if events is not None:
            channel.events = events
        channel.full_clean()
        channel.save()
        return channel

    return make
