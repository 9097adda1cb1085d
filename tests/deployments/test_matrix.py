"""The home page's matrix: what runs where, from Gantry's rows and GCP's stored readings
(issue 14, item 7)."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from deployments import matrix
from deployments.models import Approval
from environments.models import Component, StatSample

pytestmark = pytest.mark.django_db


def cell(environment: str, component: str) -> matrix.Cell:
    built = matrix.build()
    column = [e.name for e in built.environments].index(environment)
    row = next(r for r in built.rows if r.name == component)
    return row.cells[column]


def reading(environment, component, at=None, **data):
    target = Component.objects.get(environment__name=environment, name=component)
    return StatSample.objects.create(
        component=target, kind=StatSample.Kind.MIG, at=at or timezone.now(), ok=True, data=data
    )


def group(name, *templates):
    return {"name": name, "templates": {t: 2 for t in templates}}


def succeeded(make_deployment, environment="prod", component="backend", ago=60, **fields):
    finished = timezone.now() - timedelta(minutes=ago)
    return make_deployment(
        environment, component, state="succeeded", finished_at=finished, **fields
    )


def test_a_cell_shows_the_latest_succeeded_release_and_who_approved_it(make_deployment, make_user):
    succeeded(make_deployment, ago=120, template="gantry-backend-old")
    running = succeeded(make_deployment, ago=30, template="gantry-backend-new")
    make_deployment("prod", "backend", state="failed")
    approver = make_user("approver", "approver")
    Approval.objects.create(deployment=running, user=approver, decision="approve")
    here = cell("prod", "backend")
    assert here.running == running
    assert here.approvers == ["approver"]
    assert here.drift == ""  # no reading yet: nothing to compare


def test_waiting_queued_and_rolling_out_are_marked(make_deployment):
    waiting = make_deployment("prod", "backend", state="pending_approval")
    make_deployment("prod", "backend", state="queued")
    active = make_deployment("prod", "frontend", state="rolling_out")
    backend, frontend = cell("prod", "backend"), cell("prod", "frontend")
    assert backend.waiting == [waiting] and len(backend.queued) == 1 and backend.active is None
    assert frontend.active == active and not frontend.waiting


def test_a_group_on_another_template_than_gantry_deployed_is_drift(make_deployment):
    succeeded(make_deployment, template="gantry-backend-mine")
    reading("prod", "backend", groups=[group("nemo-backend-mig", "hand-made-template")])
    here = cell("prod", "backend")
    assert here.gcp_runs == ["hand-made-template"]
    assert "hand-made-template" in here.drift and "gantry-backend-mine" in here.drift


def test_no_drift_when_gcp_runs_what_gantry_deployed(make_deployment):
    succeeded(make_deployment, template="gantry-backend-mine")
    reading("prod", "backend", groups=[group("nemo-backend-mig", "gantry-backend-mine")])
    assert cell("prod", "backend").drift == ""


def test_a_reading_older_than_the_deployment_is_not_drift(make_deployment):
    succeeded(make_deployment, ago=5, template="gantry-backend-new")
    reading(
        "prod",
        "backend",
        at=timezone.now() - timedelta(minutes=10),
        groups=[group("nemo-backend-mig", "gantry-backend-old")],
    )
    assert cell("prod", "backend").drift == ""


def test_a_rollout_under_way_is_not_drift(make_deployment):
    succeeded(make_deployment, template="gantry-backend-mine")
    make_deployment("prod", "backend", state="rolling_out")
    reading("prod", "backend", groups=[group("g", "gantry-backend-mine", "gantry-backend-next")])
    assert cell("prod", "backend").drift == ""


def test_what_runs_before_gantry_deployed_anything_is_shown_as_drift(seed_topology):
    reading("prod", "backend", groups=[group("nemo-backend-mig", "nemo-backend-v41")])
    here = cell("prod", "backend")
    assert here.running is None
    assert here.drift == "GCP runs nemo-backend-v41, which Gantry did not deploy"


def test_blue_green_compares_only_the_serving_group(make_deployment):
    ai = Component.objects.get(environment__name="prod", name="ai-server")
    assert ai.deploy_kind == Component.DeployKind.BLUE_GREEN
    succeeded(make_deployment, component="ai-server", template="gantry-ai-new")
    groups = [group("blue", "gantry-ai-old"), group("green", "gantry-ai-new")]
    reading("prod", "ai-server", groups=groups, live="green")
    assert cell("prod", "ai-server").drift == ""
    reading("prod", "ai-server", groups=groups, live="blue")
    assert "gantry-ai-old" in cell("prod", "ai-server").drift


def test_the_dev_vm_compares_its_image_metadata(make_deployment):
    image = "asia-docker.pkg.dev/nemo/dev/backend@sha256:" + "a" * 64
    succeeded(make_deployment, "dev", "backend", target_image=image)
    vm = {"name": "nemo-dev-vm", "status": "RUNNING", "image": image}
    reading("dev", "backend", vm=vm)
    assert cell("dev", "backend").drift == ""
    reading("dev", "backend", vm={**vm, "image": "someone/else:latest"})
    assert "someone/else:latest" in cell("dev", "backend").drift


def test_an_unreadable_group_is_not_drift(make_deployment):
    succeeded(make_deployment, template="gantry-backend-mine")
    target = Component.objects.get(environment__name="prod", name="backend")
    StatSample.objects.create(
        component=target, kind="mig", at=timezone.now(), ok=False, data={}, problems=["boom"]
    )
    assert cell("prod", "backend").drift == ""


def test_managed_services_say_gantry_does_not_deploy_them(client_as, seed_topology):
    page = client_as("viewer").get(reverse("home")).content.decode()
    assert (
        page.count("managed service: Gantry does not deploy it")
        == Component.objects.filter(deploy_kind="none").count()
    )


def test_the_home_page_shows_the_matrix(client_as, make_deployment):
    running = succeeded(make_deployment, template="gantry-backend-mine")
    waiting = make_deployment("prod", "backend", state="pending_approval")
    reading("prod", "frontend", groups=[group("nemo-frontend-mig", "by-hand")])
    page = client_as("viewer").get(reverse("home")).content.decode()
    assert "What runs where" in page
    assert running.release.short_sha in page and running.release.digest[7:19] in page
    assert f'id="matrix-waiting-{waiting.pk}"' in page
    assert 'id="drift-prod-frontend"' in page and "1 component drifted" in page


def queries(client) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(reverse("home"), headers={"HX-Request": "true"}).status_code == 200
    return len(captured)


def test_the_matrix_takes_the_same_queries_for_more_deployments_and_readings(
    client_as, make_deployment, make_user
):
    client = client_as("viewer")
    succeeded(make_deployment, template="t1")
    before = queries(client)
    for component in ("backend", "frontend", "ai-server"):
        for _ in range(3):
            d = succeeded(make_deployment, component=component, template="t2")
            Approval.objects.create(
                deployment=d, user=make_user("approver", f"a{d.pk}"), decision="approve"
            )
        make_deployment("prod", component, state="pending_approval")
        reading("prod", component, groups=[group("g", "t2")])
    make_deployment("dev", "backend", state="rolling_out")
    assert queries(client) == before


def replaces(client, release, part=False) -> str:
    headers = {"HX-Request": "true"} if part else {}
    url = release.get_absolute_url() + ("?part=replaces" if part else "")
    html = client.get(url, headers=headers).content.decode()
    return html[html.index('<dd id="replaces"') :].split("</dd>")[0]


def test_a_first_release_says_what_gcp_runs_and_the_part_follows_the_deployment(
    client_as, make_deployment
):
    """A first release replaces what GCP runs, not "nothing"; while its deployment is under
    way the part asks again, and once it succeeded it says so (issue 14, item 4)."""
    client = client_as("viewer")
    reading("prod", "backend", groups=[group("nemo-backend-mig", "nemo-backend-v41")])
    deployment = make_deployment("prod", "backend", state="rolling_out")
    text = replaces(client, deployment.release)
    assert "nemo-backend-v41" in text and "which Gantry did not deploy" in text
    assert 'hx-trigger="every 5s"' in text
    deployment.state, deployment.finished_at = "succeeded", timezone.now()
    deployment.save()
    text = replaces(client, deployment.release, part=True)
    assert "this release is running now" in text and "hx-trigger" not in text


def test_a_release_replaces_the_running_one(client_as, make_deployment):
    running = succeeded(make_deployment)
    waiting = make_deployment("prod", "backend", state="pending_approval")
    text = replaces(client_as("viewer"), waiting.release)
    assert running.release.get_absolute_url() in text
    assert f"compare/{running.release.sha}...{waiting.release.sha}" in text
