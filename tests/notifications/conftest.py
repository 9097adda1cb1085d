"""A local webhook receiver on loopback, and channels pointing at it."""

import json
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

SECRET_PATH = "/api/webhooks/4242/s3cr3t-t0ken-abcdef"


class Receiver(ThreadingHTTPServer):
    """Records every POST; answers from a script of (status, body, delay, headers), then 204."""

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
                    handler.send_response(status)
                    for name, value in headers.items():
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


@pytest.fixture(autouse=True)
def fast_notifications(settings):
    """No waiting between tries (the eager retries ignore countdowns anyway), short timeouts."""
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
