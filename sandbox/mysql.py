"""MySQL stand-ins: one loopback listener per MySQL component, answering as MySQL 8.0 greets.

Gantry's MySQL probe (environments/probes.py) only reads the server's first packet, so the
sandbox does not need a database, only the greeting: each connection gets a
Protocol::HandshakeV10 packet (server version SERVER_VERSION, auth plugin
caching_sha2_password, no TLS). A client that goes on and logs in is answered ERR 1045 (access
denied), as a real server answers wrong credentials. The component follows the simulation: while
a `down` fault names it, a connection gets ERR 1040 "Too many connections" instead of the
greeting, as a real server sends when it turns clients away.

Where each listens is given as GANTRY_PROBE_TARGETS is (`ENV/COMPONENT=HOST:PORT,…`), so the
demo passes that one variable to both; entries that are not MySQL components are ignored, and
only loopback hosts are accepted.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import os
import socket
import socketserver
import struct
import threading

from . import stack

SERVER_VERSION = "8.0.36-sandbox"
AUTH_PLUGIN = "caching_sha2_password"
CHARSET = 255  # utf8mb4_0900_ai_ci, MySQL 8.0's default
SERVER_STATUS_AUTOCOMMIT = 0x0002
# Protocol::CapabilityFlags a MySQL 8.0 server without TLS or compression announces.
CLIENT_LONG_PASSWORD = 1 << 0
CLIENT_FOUND_ROWS = 1 << 1
CLIENT_LONG_FLAG = 1 << 2
CLIENT_CONNECT_WITH_DB = 1 << 3
CLIENT_PROTOCOL_41 = 1 << 9
CLIENT_INTERACTIVE = 1 << 10
CLIENT_SSL = 1 << 11
CLIENT_TRANSACTIONS = 1 << 13
CLIENT_SECURE_CONNECTION = 1 << 15
CLIENT_MULTI_STATEMENTS = 1 << 16
CLIENT_MULTI_RESULTS = 1 << 17
CLIENT_PS_MULTI_RESULTS = 1 << 18
CLIENT_PLUGIN_AUTH = 1 << 19
CLIENT_CONNECT_ATTRS = 1 << 20
CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA = 1 << 21
CLIENT_DEPRECATE_EOF = 1 << 24
CAPABILITIES = (
    CLIENT_LONG_PASSWORD
    | CLIENT_FOUND_ROWS
    | CLIENT_LONG_FLAG
    | CLIENT_CONNECT_WITH_DB
    | CLIENT_PROTOCOL_41
    | CLIENT_INTERACTIVE
    | CLIENT_TRANSACTIONS
    | CLIENT_SECURE_CONNECTION
    | CLIENT_MULTI_STATEMENTS
    | CLIENT_MULTI_RESULTS
    | CLIENT_PS_MULTI_RESULTS
    | CLIENT_PLUGIN_AUTH
    | CLIENT_CONNECT_ATTRS
    | CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
    | CLIENT_DEPRECATE_EOF
)
SCRAMBLE_LENGTH = 20
ER_CON_COUNT_ERROR = 1040  # "Too many connections", SQL state 08004
ER_ACCESS_DENIED_ERROR = 1045  # SQL state 28000
LOGIN_WAIT = 5.0  # real seconds a connection may take to send its login before it is closed


def packet(sequence: int, payload: bytes) -> bytes:
    """One protocol packet: int<3> payload length, int<1> sequence id, then the payload."""
    return struct.pack("<I", len(payload))[:3] + bytes([sequence & 0xFF]) + payload


def scramble() -> bytes:
    """20 bytes of auth-plugin data; like mysqld's, none is NUL (the field is NUL-terminated)."""
    return bytes(1 + b % 127 for b in os.urandom(SCRAMBLE_LENGTH))


def handshake(connection_id: int, data: bytes | None = None) -> bytes:
    """Protocol::HandshakeV10, the server's greeting, as packet 0."""
    data = data if data is not None else scramble()
    payload = (
        bytes([10])  # protocol version
        + SERVER_VERSION.encode() + b"\0"
        + struct.pack("<I", connection_id)
        + data[:8] + b"\0"  # auth-plugin-data-part-1, filler
        + struct.pack("<H", CAPABILITIES & 0xFFFF)
        + bytes([CHARSET])
        + struct.pack("<H", SERVER_STATUS_AUTOCOMMIT)
        + struct.pack("<H", CAPABILITIES >> 16)
        + bytes([len(data) + 1])  # auth_plugin_data_len, counting part 2's NUL
        + bytes(10)  # reserved
        + data[8:] + b"\0"  # auth-plugin-data-part-2: MAX(13, len - 8) bytes
        + AUTH_PLUGIN.encode() + b"\0"
    )  # fmt: skip
    return packet(0, payload)


def error(sequence: int, code: int, state: str, message: str) -> bytes:
    """ERR_Packet (CLIENT_PROTOCOL_41 form: '#' and the SQL state before the message)."""
    payload = b"\xff" + struct.pack("<H", code) + b"#" + state.encode() + message.encode()
    return packet(sequence, payload)


def too_many_connections() -> bytes:
    return error(0, ER_CON_COUNT_ERROR, "08004", "Too many connections")


def login_user(payload: bytes) -> str:
    """The user name in a Protocol::HandshakeResponse41 (after int<4> capabilities, int<4> max
    packet size, int<1> charset and 23 filler bytes), or '' when it is not one."""
    if len(payload) < 32 or not struct.unpack("<I", payload[:4])[0] & CLIENT_PROTOCOL_41:
        return ""
    return payload[32:].split(b"\0", 1)[0].decode(errors="replace")


def parse_targets(value: str) -> dict[str, tuple[str, int]]:
    """'prod/mysql=127.0.0.1:8903,dev/redis=…' → {'prod/mysql': ('127.0.0.1', 8903), …}."""
    targets = {}
    for item in (value or "").split(","):
        if "=" in item:
            key, address = item.strip().split("=", 1)
            host, _, port = address.rpartition(":")
            targets[key.strip()] = (host, int(port))
    return targets


def mysql_components(topology: dict) -> list[str]:
    """Every 'ENV/COMPONENT' whose probe is MySQL's, in the topology's order."""
    return [
        f"{env_name}/{name}"
        for env_name, env in (topology.get("environments") or {}).items()
        for name, component in (env.get("components") or {}).items()
        if (component.get("probe") or {}).get("kind") == "mysql"
    ]


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class _Listener(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Listener6(_Listener):
    address_family = socket.AF_INET6


class StandIn:
    """One MySQL component's listener: greets while the component is up, refuses while down."""

    def __init__(self, world, key: str, host: str, port: int):
        if not is_loopback(host):
            raise ValueError(f"{key}: the MySQL stand-in listens on loopback only, not {host}")
        self.world = world
        self.environment, self.component = key.split("/", 1)
        self.key = key
        self._ids = itertools.count(1)
        self._ids_lock = threading.Lock()
        listener = _Listener6 if ":" in host else _Listener
        self.server = listener((host, port), self._handler())
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.server.server_address[:2]
        return host, port

    def up(self) -> bool:
        with self.world.lock:
            self.world.sync()
            return stack.health(self.world, self.environment, self.component).up

    def next_id(self) -> int:
        with self._ids_lock:
            return next(self._ids)

    def _handler(self) -> type[socketserver.BaseRequestHandler]:
        stand_in = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                conn: socket.socket = self.request
                with contextlib.suppress(OSError):
                    if not stand_in.up():
                        conn.sendall(too_many_connections())
                        return
                    conn.sendall(handshake(stand_in.next_id()))
                    conn.settimeout(LOGIN_WAIT)
                    response = read_packet(conn)
                    if response is None:  # a probe: it read the greeting and hung up
                        return
                    sequence, payload = response
                    user = login_user(payload)
                    host = self.client_address[0]
                    message = f"Access denied for user '{user}'@'{host}' (using password: YES)"
                    conn.sendall(error(sequence + 1, ER_ACCESS_DENIED_ERROR, "28000", message))

        return Handler

    def start(self) -> StandIn:
        self._thread = threading.Thread(
            target=self.server.serve_forever,
            args=(0.05,),
            name=f"mysql {self.key}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self.server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self.server.server_close()


def read_packet(conn: socket.socket) -> tuple[int, bytes] | None:
    """(sequence id, payload) of the client's next packet, or None when it closed first."""
    header = _read(conn, 4)
    if header is None:
        return None
    length = int.from_bytes(header[:3], "little")
    payload = _read(conn, length) if length else b""
    return (header[3], payload) if payload is not None else None


def _read(conn: socket.socket, n: int) -> bytes | None:
    chunks, left = [], n
    while left:
        chunk = conn.recv(left)
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def start(world, topology: dict, targets: str) -> tuple[list[StandIn], list[str]]:
    """A started stand-in for each MySQL component `targets` gives an address, and the MySQL
    components it gives none (their probes stay unknown)."""
    wanted = parse_targets(targets)
    keys = mysql_components(topology)
    started = []
    try:
        for key in keys:
            if key in wanted:
                started.append(StandIn(world, key, *wanted[key]).start())
    except BaseException:
        for stand_in in started:
            stand_in.stop()
        raise
    return started, [key for key in keys if key not in wanted]
