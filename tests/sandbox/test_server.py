"""Starting the sandbox: the command prints its URLs; snapshots survive a restart."""

import subprocess
import sys
from pathlib import Path

from google.cloud import compute_v1

from sandbox.world import DEFAULT_TOPOLOGY

from .clients import Clients

ROOT = Path(__file__).resolve().parents[2]


def test_manage_py_sandbox_prints_its_urls_and_serves(http):
    process = subprocess.Popen(
        [sys.executable, "manage.py", "sandbox", "--port", "0", "--speed", "50"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        lines = [process.stdout.readline() for _ in range(5)]
        assert lines[0].startswith("Gantry sandbox on http://127.0.0.1:")
        settings = dict(line.strip().split("=", 1) for line in lines[1:5])
        url = settings["GANTRY_COMPUTE_ENDPOINT"]
        assert settings == {
            "GANTRY_COMPUTE_ENDPOINT": url,
            "GANTRY_CLOUDBUILD_ENDPOINT": url,
            "GANTRY_REGISTRY_URL": url,
            "GANTRY_STACK_URL": f"{url}/stack",
        }
        state = http.get(f"{url}/_sandbox/state").json()
        assert state["speed"] == 50
        assert set(state["projects"]) == {"nemo-prod", "nemo-dev"}
    finally:
        process.terminate()
        process.wait(timeout=5)


def test_seeding_follows_the_topology(sandbox):
    state = sandbox.state()["projects"]
    prod, dev = state["nemo-prod"], state["nemo-dev"]
    assert set(prod["migs"]) == {
        "nemo-frontend-mig",
        "nemo-backend-mig",
        "nemo-ai-blue-mig",
        "nemo-ai-green-mig",
    }
    assert prod["migs"]["nemo-ai-green-mig"]["targetSize"] == 0
    assert prod["backendServices"] == {
        "nemo-frontend-bes": ["nemo-frontend-mig"],
        "nemo-backend-bes": ["nemo-backend-mig"],
        "nemo-ai-bes": ["nemo-ai-blue-mig"],
    }
    assert dev["migs"] == {} and dev["vms"] == {"nemo-dev-vm": {"status": "RUNNING", "ready": True}}
    assert sandbox.world.topology_path == DEFAULT_TOPOLOGY


def test_a_custom_topology(sandbox_factory, tmp_path):
    topology = tmp_path / "tiny.yaml"
    topology.write_text(
        "environments:\n"
        "  qa:\n"
        "    gcp_project: tiny-qa\n"
        "    region: europe-west1\n"
        "    zones: [europe-west1-b, europe-west1-c, europe-west1-d]\n"
        "    registry: europe-west1-docker.pkg.dev/tiny-qa/images\n"
        "    components:\n"
        "      api:\n"
        "        port: 8080\n"
        "        deploy: {kind: rolling_mig, mig: api-mig, backend_service: api-bes, size: 5}\n"
    )
    box = sandbox_factory(topology=topology)
    mig = box.state()["projects"]["tiny-qa"]["migs"]["api-mig"]
    assert {z: n["api-mig-tmpl-v1"]["total"] for z, n in mig["zones"].items()} == {
        "europe-west1-b": 2,
        "europe-west1-c": 2,
        "europe-west1-d": 1,
    }
    assert box.world.registry.tags("tiny-qa/images/api") == ["qa-latest", "qa-v1"]


def test_a_snapshot_restores_the_state(sandbox_factory, tmp_path):
    snapshot = tmp_path / "sandbox.json"
    first = sandbox_factory(snapshot=snapshot)
    gcp = Clients(first.url)
    v2 = gcp.new_template("nemo-backend-mig-tmpl-v2")
    gcp.patch(
        "nemo-backend-mig", versions=[compute_v1.InstanceGroupManagerVersion(instance_template=v2)]
    )
    gcp.until_stable()
    first.stop()
    assert snapshot.exists()

    second = sandbox_factory(snapshot=snapshot)
    again = Clients(second.url)
    assert {m.version.instance_template for m in again.managed()} == {v2}
    assert again.mig().status.is_stable
    assert (
        again.templates.get(
            project="nemo-prod",
            region="asia-northeast3",
            instance_template="nemo-backend-mig-tmpl-v2",
        ).self_link
        == v2
    )
