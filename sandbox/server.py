"""The sandbox server: one port serves every API by path.

/compute/v1/...   Compute Engine        /v1/...      Cloud Build
/v2/...           Docker Registry v2    /stack/...   the monitored nemo stack
/github/...       GitHub REST (a fake: deployments, statuses, app tokens, protection rules)
/_sandbox/...     faults, reset, clock, state

Cloud Monitoring has only gRPC clients, so its MetricService listens on a port of its own
(`monitoring_port`, sandbox/monitoring.py), started and stopped with the HTTP server.
With `mysql` (GANTRY_PROBE_TARGETS's format), each MySQL component named there also gets a
loopback listener of its own that greets as MySQL does (sandbox/mysql.py).
"""

from __future__ import annotations

import contextlib
import signal
import socketserver
import sys
import threading
import time
import traceback
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from . import cloudbuild, compute_api, control, discovery, github, monitoring, registry, stack
from . import mysql as mysql_stand_ins
from .http import USAGE_LIMITS, ApiError, Request, Response, Router
from .world import World

MUTATING = {"POST", "PUT", "PATCH", "DELETE"}
FAULT_MESSAGES = {429: "Rate Limit Exceeded", 503: "The service is currently unavailable."}


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def server_bind(self):
        """As HTTPServer's, without its reverse DNS lookup of the host (slow on some networks)."""
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]


def build_router(world: World) -> Router:
    router = Router()
    compute_api.routes(router, world)
    cloudbuild.routes(router, world)
    registry.routes(router, world)
    stack.routes(router, world)
    github.routes(router, world)
    control.routes(router, world)
    return router


class Sandbox:
    """A running sandbox: `url`, `world` (the state) and helpers that tests and the demo use."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8900,
        topology: str | Path | None = None,
        speed: float = 1.0,
        boot_time: float = 20.0,
        snapshot: str | Path | None = None,
        verbose: bool = False,
        strict_output_only: bool = False,
        mysql: str | None = None,
        monitoring_port: int | None = None,
        monitoring_scale: float = 1.0,
        **timings,
    ):
        self.world = World(topology, speed=speed, boot_time=boot_time, **timings)
        self.world.monitoring_scale = monitoring_scale
        self.snapshot = Path(snapshot) if snapshot else None
        if self.snapshot and self.snapshot.exists():
            self.world.load(self.snapshot)
        self.router = build_router(self.world)
        self.verbose = verbose
        # Compute and Cloud Build calls, newest last: {method, path, query, body, status, response}
        # with the bodies as bytes. The pytest plugin checks the answers against Google's schemas.
        self.gcp_calls: deque[dict] = deque(maxlen=discovery.CALLS_KEPT)
        # Google ignores output-only fields in a request body; True answers them 400 instead.
        self.strict_output_only = strict_output_only
        discovery.apis()  # load Google's documents now (or say once that they are missing)
        self.httpd = _Server((host, port), _handler_for(self))
        self._thread: threading.Thread | None = None
        if monitoring_port is None:
            monitoring_port = port + 1 if port else 0
        try:
            self.monitoring = monitoring.MonitoringServer(self.world, host, monitoring_port)
        except BaseException:
            self.httpd.server_close()
            raise
        # MySQL components the probes reach over TCP; the ones `mysql` gives no address to
        # are listed in `mysql_unserved` (their probes say unknown).
        self.mysql: list[mysql_stand_ins.StandIn] = []
        self.mysql_unserved: list[str] = []
        if mysql:
            from .seed import load_topology

            try:
                self.mysql, self.mysql_unserved = mysql_stand_ins.start(
                    self.world, load_topology(self.world.topology_path), mysql
                )
            except BaseException:
                self.httpd.server_close()
                self.monitoring.stop()
                raise

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def urls(self) -> dict[str, str]:
        return {
            "GANTRY_COMPUTE_ENDPOINT": self.url,
            "GANTRY_CLOUDBUILD_ENDPOINT": self.url,
            "GANTRY_REGISTRY_URL": self.url,
            "GANTRY_STACK_URL": f"{self.url}/stack",
            "GANTRY_GITHUB_API_URL": f"{self.url}{github.PREFIX}",
            "GANTRY_MONITORING_ENDPOINT": self.monitoring.endpoint,
        }

    @property
    def github(self) -> github.GitHub:
        """The fake GitHub's state (deployments, statuses, reviews, calls), for tests to read."""
        return self.world.github

    # --- running --------------------------------------------------------------------------

    def start(self) -> Sandbox:
        self.monitoring.start()
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, args=(0.01,), name="sandbox", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.monitoring.start()
        try:
            self.httpd.serve_forever()
        finally:
            self.httpd.server_close()
            self.monitoring.stop()
            self._stop_mysql()
            self.save()

    def stop(self) -> None:
        self.monitoring.stop()
        if self._thread is None:
            self._stop_mysql()
            return
        self.httpd.shutdown()
        self._thread.join(timeout=5)
        self._thread = None
        self.httpd.server_close()
        self._stop_mysql()
        self.save()

    def _stop_mysql(self) -> None:
        for stand_in in self.mysql:
            stand_in.stop()
        self.mysql = []

    def save(self) -> None:
        if self.snapshot:
            self.world.save(self.snapshot)

    def handle(self, request: Request) -> Response:
        response = self._handle(request)
        if request.path.startswith(discovery.GCP_PREFIXES):
            self.gcp_calls.append(
                {
                    "method": request.method,
                    "path": request.path,
                    "query": request.query,
                    "body": request.body,
                    "status": response.status,
                    "response": response.body,
                }
            )
        return response

    def _handle(self, request: Request) -> Response:
        world = self.world
        try:
            if not request.path.startswith("/_sandbox/"):
                with world.lock:
                    fault = world.faults.http_fault(request.method, request.path)
                if fault:
                    status, reason = int(fault["status"]), fault.get("reason")
                    message = USAGE_LIMITS.get(reason) or FAULT_MESSAGES.get(
                        status, "Injected by the sandbox."
                    )
                    raise ApiError(status, message, reason)
            if request.path.startswith(discovery.GCP_PREFIXES):
                discovery.check_request(
                    request.method,
                    request.path,
                    request.query,
                    request.body,
                    output_only=self.strict_output_only,
                )
            found = self.router.match(request.method, request.path)
            if found is None:
                raise ApiError(404, f"The requested URL {request.path} was not found.")
            handler, request.params, locked = found
            if not locked:
                return handler(request)
            with world.lock:
                world.sync()
                response = handler(request)
                if request.method in MUTATING and response.status < 400:
                    self.save()
                return response
        except ApiError as exc:
            if request.path.startswith(github.PREFIX + "/"):
                return github.error_response(exc)
            if request.path.startswith("/v2/"):
                code = {429: "TOOMANYREQUESTS", 503: "UNAVAILABLE"}.get(exc.code, "UNKNOWN")
                body = {"errors": [{"code": code, "message": exc.message, "detail": {}}]}
                return Response.json(body, exc.code)
            return Response.json(exc.body(), exc.code)
        except Exception as exc:  # a sandbox bug: answer like a backend error, and say where
            traceback.print_exc()
            return Response.json(ApiError(500, f"sandbox error: {exc!r}").body(), 500)

    # --- helpers for tests and the demo ---------------------------------------------------

    def reset(self) -> None:
        self.world.reset()

    def set_wall_epoch(self, epoch: float | None = None) -> None:
        """Put simulated time 0 at `epoch` (seconds since 1970), by default where it makes the
        sandbox's now the wall clock's: its timestamps, Cloud Monitoring points included, are
        `epoch` + simulated seconds. A clock that has run ahead of the wall clock (speed > 1,
        `advance`) is otherwise hours ahead of what Gantry asks for."""
        with self.world.lock:
            self.world.sync()
            self.world.wall_epoch = time.time() - self.world.t if epoch is None else epoch

    def inject_fault(self, kind: str, **spec) -> dict:
        with self.world.lock:
            self.world.sync()
            fault = self.world.faults.add({"kind": kind, **spec})
            if kind == "unhealthy":
                self.world.apply_unhealthy_fault()
            return fault

    def clear_faults(self) -> None:
        with self.world.lock:
            self.world.faults.clear()
            self.world.heal()

    def advance(self, seconds: float) -> None:
        """Move simulated time forward and replay what happens meanwhile."""
        with self.world.lock:
            self.world.clock.advance(seconds)
            self.world.sync()

    def mig(self, project: str, name: str):
        with self.world.lock:
            self.world.sync()
            return next(m for m in self.world.projects[project].migs.values() if m.name == name)

    def history(self, project: str, mig: str) -> list[tuple[float, dict]]:
        """Each distinct state the MIG went through, in order, as
        (time, zone → template name → {total, running, available})."""
        with self.world.lock:
            self.world.sync()
            return list(self.world.history[(project, mig)])

    def state(self) -> dict:
        with self.world.lock:
            self.world.sync()
            return control.state_summary(self.world)


def _handler_for(sandbox: Sandbox) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "gantry-sandbox"
        disable_nagle_algorithm = True  # keep-alive clients would otherwise wait ~40 ms per call
        wbufsize = -1  # headers and body leave in one write

        def _dispatch(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            host = self.headers.get("Host") or "{}:{}".format(*self.server.server_address[:2])
            request = Request.build(
                self.command, self.path, dict(self.headers), body, f"http://{host}"
            )
            response = sandbox.handle(request)
            self.send_response(response.status)
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(response.body)

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

        def log_message(self, format, *args):
            if sandbox.verbose:
                sys.stderr.write("sandbox: " + format % args + "\n")

    return Handler


def add_arguments(parser) -> None:
    """The options of `manage.py sandbox` and `python -m sandbox`."""
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8900, help="0 picks a free port")
    parser.add_argument(
        "--monitoring-port",
        type=int,
        help="the Cloud Monitoring gRPC port (default: --port + 1; a free one with --port 0)",
    )
    parser.add_argument("--topology", help="topology YAML (default: topology/nemo.yaml)")
    parser.add_argument("--speed", type=float, default=1.0, help="simulated s per real s")
    parser.add_argument("--boot-time", type=float, default=20.0, help="simulated s per VM boot")
    parser.add_argument("--snapshot", help="JSON file to restore the state from and save to")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    parser.add_argument(
        "--mysql",
        metavar="TARGETS",
        help="MySQL stand-ins to serve, as GANTRY_PROBE_TARGETS reads "
        "(ENV/COMPONENT=127.0.0.1:PORT,…; entries not for MySQL components are ignored)",
    )


def serve(host="127.0.0.1", port=8900, out=sys.stdout, **options) -> None:
    """Run in the foreground until interrupted (what `manage.py sandbox` calls). Gantry reads
    it on the wall clock, so Cloud Monitoring's time line runs at the clock's speed: a
    simulated minute's points are 15 s apart at speed 4, where a reader looks for them."""
    options.setdefault("monitoring_scale", options.get("speed") or 1.0)
    sandbox = Sandbox(host, port, **options)
    world = sandbox.world
    out.write(
        f"Gantry sandbox on {sandbox.url} (speed {world.clock.speed:g}x, "
        f"boot {world.boot_time:g}s, topology {world.topology_path})\n"
    )
    for name, value in sandbox.urls().items():
        out.write(f"  {name}={value}\n")
    out.write(f"  control: {sandbox.url}/_sandbox/ (faults, reset, clock, state)\n")
    for stand_in in sandbox.mysql:
        host, port = stand_in.address
        out.write(f"  {stand_in.key}: MySQL handshake on {host}:{port}\n")
    for key in sandbox.mysql_unserved:
        out.write(f"  {key}: no address in --mysql, so its probe stays unknown\n")
    if sandbox.snapshot:
        out.write(f"  snapshot: {sandbox.snapshot}\n")
    out.flush()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # honcho stops us with SIGTERM
    with contextlib.suppress(KeyboardInterrupt, SystemExit):
        sandbox.serve_forever()
