"""A component's canary analysis in the topology: the shipped one loads as written, a bad one
is refused with its line and writes nothing."""

import io
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from environments.models import Component
from environments.topology import sync_topology

pytestmark = pytest.mark.django_db

SEED = Path(settings.GANTRY_TOPOLOGY_FILE).read_text()


def backend():
    return Component.objects.get(environment__name="prod", name="backend")


def test_the_shipped_backend_is_judged_on_four_metrics_two_critical():
    sync_topology(settings.GANTRY_TOPOLOGY_FILE)
    config = backend().analysis
    assert config.enabled and (config.window, config.interval) == (600, 300)
    assert [(m.name, m.critical) for m in config.metrics] == [
        ("latency", True),
        ("errors", True),
        ("cpu", False),
        ("memory", False),
    ]


def test_a_bad_analysis_is_refused_and_writes_nothing(tmp_path):
    sync_topology(settings.GANTRY_TOPOLOGY_FILE)
    before = list(Component.objects.order_by("pk").values_list("options", flat=True))
    path = tmp_path / "topology.yaml"
    path.write_text(SEED.replace("{name: cpu, tolerance: 0.5}", "{name: cpu, direction: up}", 1))
    with pytest.raises(CommandError) as caught:
        call_command("load_topology", str(path), stdout=io.StringIO())
    message = str(caught.value)
    assert " line " in message and "backend" in message
    assert "analysis: metrics[2].direction must be one of" in message
    assert list(Component.objects.order_by("pk").values_list("options", flat=True)) == before
