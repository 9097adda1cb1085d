"""The MIG panel: instance groups read through the GCP adapter from the sandbox, stored on beat,
shown on the dashboard and the component page without calling GCP per page view."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from environments import mig
from environments.models import Environment, StatSample
from environments.tasks import probe_due

from ..deployments.engine_helpers import new_release, step_until

pytestmark = pytest.mark.django_db


@pytest.fixture
def prod(seed_topology, sandbox_settings):
    return Environment.objects.get(name="prod")


def latest(environment, component):
    return StatSample.objects.filter(
        component__environment__name=environment, component__name=component, kind="mig"
    ).first()


def test_every_deployable_component_gets_one_reading(prod):
    samples = mig.collect(prod.pk)
    assert sorted(s.component.name for s in samples) == ["ai-server", "backend", "frontend"]
    assert StatSample.objects.filter(kind="mig").count() == 3
    frontend = latest("prod", "frontend")
    assert frontend.ok and frontend.problems == []
    (group,) = frontend.data["groups"]
    assert (group["name"], group["target"], group["stable"], group["reached"]) == (
        "nemo-frontend-mig",
        4,
        True,
        True,
    )
    assert sorted(group["zones"]) == ["asia-northeast3-a", "asia-northeast3-c"]
    assert [len(i) for i in group["zones"].values()] == [2, 2]
    assert group["templates"] == {"nemo-frontend-mig-tmpl-v1": 4}
    assert {i["status"] for zone in group["zones"].values() for i in zone} == {"RUNNING"}
    assert group["autoscaler"] == {
        "name": "nemo-frontend-mig-autoscaler",
        "min": 4,
        "max": 8,
        "current": 4,
        "status": "ACTIVE",
        "cpu_target": 0.6,
    }
    assert latest("prod", "backend").data["groups"][0]["autoscaler"] is None


def test_blue_green_shows_both_colours_and_which_is_live(prod):
    mig.collect(prod.pk)
    data = latest("prod", "ai-server").data
    assert [g["name"] for g in data["groups"]] == ["nemo-ai-blue-mig", "nemo-ai-green-mig"]
    assert [g["target"] for g in data["groups"]] == [2, 0]
    assert data["live"] == "nemo-ai-blue-mig"


def test_the_dev_vm_shows_its_image(seed_topology, sandbox_settings):
    dev = Environment.objects.get(name="dev")
    mig.collect(dev.pk)
    vm = latest("dev", "backend").data["vm"]
    assert (vm["name"], vm["status"]) == ("nemo-dev-vm", "RUNNING")
    assert "/backend@sha256:" in vm["image"]


def test_a_rollout_in_progress_shows_the_new_version_and_the_deployment(prod, engine, client_as):
    """The engine on simulated time, stepped until the MIG is patched: the rollout is then
    under way whatever the machine's speed, with no new instance booted yet."""
    deployment = step_until(
        new_release(engine, "prod", "frontend"),
        lambda d: any(op["what"].startswith("patch") for op in d.operations),
    )
    assert deployment.state == "rolling_out"
    mig.collect(prod.pk)
    group = latest("prod", "frontend").data["groups"][0]
    assert group["versions"][0]["template"] == deployment.template
    page = client_as("viewer").get(reverse("environment", args=["prod"])).content.decode()
    assert f'href="{deployment.get_absolute_url()}"' in page
    tile = page[page.index('id="tile-prod-frontend"') :]
    assert "Deploying" in tile[: tile.index("</article>")]


def test_pages_show_the_stored_reading_and_never_call_gcp(prod, client_as, sandbox):
    client = client_as("viewer")
    page = client.get(reverse("environment", args=["prod"])).content.decode()
    assert page.count("Instance groups not read yet.") == 3
    mig.collect(prod.pk)
    sandbox.stop()  # GCP gone: pages still render what was stored
    page = client.get(reverse("environment", args=["prod"])).content.decode()
    assert "Instance groups not read yet." not in page
    assert "autoscaler 4\u20138, recommends 4" in page
    assert '<span class="badge status-up">live</span>' in page
    detail = client.get(reverse("component", args=["prod", "frontend"])).content.decode()
    assert detail.count("asia-northeast3-a") >= 1 and "HEALTHY" in detail
    assert "nemo-frontend-mig-tmpl-v1" in detail


def test_an_unreadable_group_is_stored_with_the_reason(prod, sandbox, client_as):
    sandbox.inject_fault(
        "http_error", path="*/instanceGroupManagers/nemo-backend-mig", status=503, count=50
    )
    mig.collect(prod.pk)
    backend = latest("prod", "backend")
    assert not backend.ok and backend.data == {}
    assert backend.problems[0].startswith("instance groups unreadable: ServiceUnavailable")
    assert latest("prod", "frontend").ok  # one bad group never hides the others
    page = client_as("viewer").get(reverse("environment", args=["prod"])).content.decode()
    assert "instance groups unreadable: ServiceUnavailable" in page


def test_the_dashboard_query_count_is_the_same_with_mig_readings(prod, client_as):
    client = client_as("viewer")
    url = reverse("environment", args=["prod"])
    client.get(url)
    mig.collect(prod.pk)  # a new version: the page is drawn again
    with CaptureQueriesContext(connection) as before:
        client.get(url)
    mig.collect(prod.pk)
    mig.collect(prod.pk)
    with CaptureQueriesContext(connection) as after:
        client.get(url)
    assert len(after) == len(before)


def test_beat_reads_the_groups_of_every_due_environment(prod, in_process_broker):
    """probe_due runs as beat sends it; tasks run eagerly in this process."""
    in_process_broker.conf.task_always_eager = True
    try:
        probe_due()
    finally:
        in_process_broker.conf.task_always_eager = False
    readings = StatSample.objects.filter(kind="mig")
    assert sorted(readings.values_list("component__environment__name", flat=True)) == [
        "dev",
        "dev",
        "dev",
        "prod",
        "prod",
        "prod",
    ]
    assert all(readings.values_list("ok", flat=True))
