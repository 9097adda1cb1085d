"""sandbox/mysql.py: the MySQL stand-ins greet as MySQL 8.0 does (Protocol::HandshakeV10, read by
the documented layout and by a real client library), refuse with ERR 1040 while a `down` fault
names the component, and listen on loopback ports only. Every connection here goes to a
127.0.0.1 port the test's own sandbox picked."""

from __future__ import annotations

import socket
import struct

import pytest

from sandbox import mysql
from sandbox.seed import load_topology
from sandbox.world import DEFAULT_TOPOLOGY

pytestmark = pytest.mark.sqlite_is_enough
TARGETS = "prod/mysql=127.0.0.1:0,dev/mysql=127.0.0.1:0"


def parse_handshake(data: bytes) -> dict:
    """Protocol::HandshakeV10 field by field, as dev.mysql.com documents it (with
    CLIENT_PLUGIN_AUTH and CLIENT_SECURE_CONNECTION set)."""
    length, sequence = int.from_bytes(data[:3], "little"), data[3]
    payload = data[4:]
    assert len(payload) == length, "the header's length is the payload's"
    fields = {"sequence": sequence, "protocol": payload[0]}
    end = payload.index(b"\0", 1)
    fields["version"] = payload[1:end].decode()
    at = end + 1
    fields["connection_id"] = struct.unpack_from("<I", payload, at)[0]
    part1 = payload[at + 4 : at + 12]
    assert payload[at + 12] == 0, "filler after auth-plugin-data-part-1"
    low, charset, status, high, data_len = struct.unpack_from("<HBHHB", payload, at + 13)
    fields |= {"capabilities": low | high << 16, "charset": charset, "status": status}
    at += 13 + 8
    assert payload[at : at + 10] == bytes(10), "reserved: ten zero bytes"
    at += 10
    part2_len = max(13, data_len - 8)
    part2 = payload[at : at + part2_len]
    at += part2_len
    fields["auth_plugin_data"] = part1 + part2.rstrip(b"\0")
    fields["auth_plugin_data_len"] = data_len
    end = payload.index(b"\0", at)
    fields["auth_plugin"] = payload[at:end].decode()
    assert end == len(payload) - 1, "the plugin name is the last field"
    return fields


def read_first_packet(address: tuple[str, int]) -> bytes:
    with socket.create_connection(address, timeout=10) as conn:
        header = recv_exactly(conn, 4)
        return header + recv_exactly(conn, int.from_bytes(header[:3], "little"))


def recv_exactly(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        assert chunk, "the stand-in closed mid-packet"
        data += chunk
    return data


def test_the_greeting_follows_handshake_v10():
    scramble = mysql.scramble()
    fields = parse_handshake(mysql.handshake(42, scramble))
    assert fields["sequence"] == 0
    assert fields["protocol"] == 10
    assert fields["version"] == "8.0.36-sandbox"
    assert fields["connection_id"] == 42
    assert fields["auth_plugin_data"] == scramble and len(scramble) == 20
    assert 0 not in scramble
    assert fields["auth_plugin_data_len"] == 21  # 20 bytes and part 2's NUL, as mysqld sends
    assert fields["auth_plugin"] == "caching_sha2_password"
    assert fields["charset"] == 255  # utf8mb4_0900_ai_ci
    assert fields["status"] == mysql.SERVER_STATUS_AUTOCOMMIT
    caps = fields["capabilities"]
    for flag in (
        mysql.CLIENT_PROTOCOL_41,
        mysql.CLIENT_SECURE_CONNECTION,
        mysql.CLIENT_PLUGIN_AUTH,
    ):
        assert caps & flag
    assert not caps & mysql.CLIENT_SSL  # a client must not try TLS on the stand-in


def test_error_packets_follow_err_packet():
    data = mysql.too_many_connections()
    assert int.from_bytes(data[:3], "little") == len(data) - 4 and data[3] == 0
    assert data[4] == 0xFF
    assert struct.unpack_from("<H", data, 5)[0] == 1040
    assert data[7:13] == b"#08004"
    assert data[13:] == b"Too many connections"


def test_each_mysql_component_gets_a_loopback_listener(sandbox_factory):
    box = sandbox_factory(mysql=TARGETS + ",prod/redis=127.0.0.1:1,prod/backend=127.0.0.1:2")
    assert [s.key for s in box.mysql] == ["prod/mysql", "dev/mysql"]  # others are ignored
    assert box.mysql_unserved == []
    ports = set()
    for stand_in in box.mysql:
        host, port = stand_in.address
        assert host == "127.0.0.1"
        ports.add(port)
        fields = parse_handshake(read_first_packet(stand_in.address))
        assert (fields["protocol"], fields["version"]) == (10, "8.0.36-sandbox")
    assert len(ports) == 2
    # Connection ids count up per listener, as a server's do.
    first = box.mysql[0].address
    ids = [parse_handshake(read_first_packet(first))["connection_id"] for _ in range(2)]
    assert ids[1] == ids[0] + 1


def test_components_without_an_address_are_listed_not_served(sandbox_factory):
    box = sandbox_factory(mysql="dev/mysql=127.0.0.1:0")
    assert [s.key for s in box.mysql] == ["dev/mysql"]
    assert box.mysql_unserved == ["prod/mysql"]


def test_no_targets_no_listeners(sandbox):
    assert sandbox.mysql == [] and sandbox.mysql_unserved == []


@pytest.mark.parametrize("host", ["0.0.0.0", "10.10.0.5", "::"])
def test_only_loopback_addresses_are_accepted(sandbox_factory, host):
    with pytest.raises(ValueError, match="loopback only"):
        sandbox_factory(mysql=f"prod/mysql={host}:0")  # parsed as GANTRY_PROBE_TARGETS is


def test_the_stand_ins_are_the_topologys_mysql_components():
    assert mysql.mysql_components(load_topology(DEFAULT_TOPOLOGY)) == ["prod/mysql", "dev/mysql"]


def test_a_down_fault_answers_too_many_connections(sandbox_factory):
    box = sandbox_factory(mysql=TARGETS)
    prod, dev = box.mysql
    box.inject_fault("down", environment="prod", component="mysql")
    data = read_first_packet(prod.address)
    assert data[4] == 0xFF and struct.unpack_from("<H", data, 5)[0] == 1040
    assert parse_handshake(read_first_packet(dev.address))["protocol"] == 10  # only prod's
    box.clear_faults()
    assert parse_handshake(read_first_packet(prod.address))["protocol"] == 10


def test_a_real_client_library_reads_the_greeting(sandbox_factory):
    """libmysqlclient (through mysqlclient) parses the greeting and logs in: the stand-in's
    ERR 1045 is the answer to its login, so the greeting itself was accepted."""
    MySQLdb = pytest.importorskip("MySQLdb")
    box = sandbox_factory(mysql=TARGETS)
    host, port = box.mysql[0].address
    with pytest.raises(MySQLdb.OperationalError) as refused:
        MySQLdb.connect(host=host, port=port, user="nemo", password="pw", connect_timeout=10)
    code, message = refused.value.args
    assert code == 1045, message
    assert message == "Access denied for user 'nemo'@'127.0.0.1' (using password: YES)"

    box.inject_fault("down", environment="prod", component="mysql")
    with pytest.raises(MySQLdb.OperationalError) as turned_away:
        MySQLdb.connect(host=host, port=port, user="nemo", password="pw", connect_timeout=10)
    assert turned_away.value.args == (1040, "Too many connections")


@pytest.mark.django_db
def test_gantrys_probe_sees_the_stand_in_up_and_down(
    sandbox_factory, seed_topology, patient_probes, settings
):
    from environments.models import Component
    from environments.probes import DOWN, UP, probe_now

    box = sandbox_factory(mysql=TARGETS)
    settings.GANTRY_STACK_URL = f"{box.url}/stack"
    settings.GANTRY_PROBE_TARGETS = ",".join(f"{s.key}=127.0.0.1:{s.address[1]}" for s in box.mysql)
    components = list(Component.objects.select_related("environment").filter(probe_kind="mysql"))
    assert len(components) == 2
    results = probe_now(components)
    assert {(r.status, r.detail) for r in results.values()} == {(UP, "handshake v10")}

    box.inject_fault("down", environment="dev", component="mysql")
    results = probe_now(components)
    by_env = {c.environment.name: results[c.pk] for c in components}
    assert by_env["prod"].status == UP
    assert (by_env["dev"].status, by_env["dev"].detail) == (
        DOWN,
        "server refused the connection (error packet)",
    )
