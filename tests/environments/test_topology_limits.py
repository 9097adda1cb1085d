"""Topology files that would run `load_topology` out of memory are refused, writing nothing: a
YAML alias bomb ("billion laughs") and a file over the size limit."""

import io
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from audit.models import AuditEvent
from environments import topology
from environments.models import Component, Environment, Network, Repository
from environments.topology import TopologyError, parse, sync_topology

pytestmark = pytest.mark.django_db

SEED = Path(settings.GANTRY_TOPOLOGY_FILE).read_text()
OPTIONS = "          autoscaler: {min: 4, max: 8, cpu_target: 0.6}\n"  # prod/frontend's options
# Nine levels of nine aliases: 9**9 (387 million) strings once expanded, from 1 kB of YAML.
LAUGHS = "          lol0: &lol0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"          lol{n}: &lol{n} [{', '.join([f'*lol{n - 1}'] * 9)}]\n" for n in range(1, 9)
)


def snapshot():
    return (
        Environment.objects.count(),
        Network.objects.count(),
        Component.objects.count(),
        Repository.objects.count(),
        AuditEvent.objects.count(),
        list(Component.objects.order_by("pk").values_list("options", flat=True)),
    )


def load(tmp_path, text):
    path = tmp_path / "topology.yaml"
    path.write_text(text)
    call_command("load_topology", str(path), stdout=io.StringIO())


def test_a_billion_laughs_in_options_is_refused_and_writes_nothing(tmp_path):
    sync_topology(settings.GANTRY_TOPOLOGY_FILE)
    before = snapshot()
    assert OPTIONS in SEED
    with pytest.raises(CommandError) as exc:
        load(tmp_path, SEED.replace(OPTIONS, OPTIONS + LAUGHS, 1))
    message = str(exc.value)
    assert "refused, nothing written" in message
    assert "aliases" in message and f"limit of {topology.MAX_ALIAS_EXPANSION}" in message
    assert snapshot() == before


def test_aliases_within_the_limit_still_load(tmp_path):
    shared = "          ports: &ports [3000, 3001]\n          also: *ports\n"
    load(tmp_path, SEED.replace(OPTIONS, OPTIONS + shared, 1))
    options = Component.objects.get(environment__name="prod", name="frontend").options
    assert options["ports"] == options["also"] == [3000, 3001]


def test_the_limit_counts_expanded_values_not_the_aliases_written():
    base = "version: 1\nenvironments: {}\n"
    wide = f"{base}a: &a [{', '.join(['x'] * 100)}]\nb: [{', '.join(['*a'] * 99)}]\n"
    parse(wide)  # 99 copies of a's 101 values: 9,999 more than written, under the limit
    with pytest.raises(TopologyError, match="aliases"):
        parse(wide.replace("*a]", "*a, *a, *a]"))  # 101 copies: 10,201


def test_a_file_over_the_size_limit_is_refused_unread(tmp_path, monkeypatch):
    sync_topology(settings.GANTRY_TOPOLOGY_FILE)
    before = snapshot()
    padding = "#" + "x" * 999 + "\n"
    big = SEED + padding * (topology.MAX_BYTES // len(padding) + 1)
    with pytest.raises(CommandError, match=f"over the limit of {topology.MAX_BYTES} bytes"):
        load(tmp_path, big)
    with pytest.raises(TopologyError, match=f"over the limit of {topology.MAX_BYTES}"):
        sync_topology(text=big)
    assert snapshot() == before
    load(tmp_path, SEED + padding * 100)  # a large comment under the limit is fine
