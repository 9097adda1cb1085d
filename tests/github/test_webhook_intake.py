"""The webhook writes each delivery once, and triages it from one reading of the topology that
each process shares (github.intake.current_routes): any change to the topology is seen by
the next delivery.

The rows are committed here (transaction=True), as in production: inside a transaction the
webhook reads the topology afresh instead, since it may see its own uncommitted writes."""

import time

import pytest
from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from audit.models import AuditEvent
from environments.models import Component, Environment, Repository
from environments.topology import sync_topology
from github import intake
from github.models import ProtectionRule, WebhookDelivery
from github.payloads import WorkflowRun

from .payloads import SECRET, post, workflow_run

pytestmark = pytest.mark.django_db(transaction=True)
Outcome = WebhookDelivery.Outcome


@pytest.fixture(autouse=True)
def webhook(settings, seed_topology, in_process_broker):
    settings.GANTRY_GITHUB_WEBHOOK_SECRET = SECRET
    yield
    in_process_broker.control.purge()  # no worker runs here: leave no task for the next test


def deliver(client, **run):
    response = post(client, workflow_run(**run))
    delivery = WebhookDelivery.objects.get(guid=response.json()["delivery"])
    assert delivery.detail == response.json()["detail"]
    return response.status_code, delivery


def test_deliveries_share_one_reading_of_the_topology(client):
    assert deliver(client)[0] == 202
    with CaptureQueriesContext(connection) as queries:
        status, delivery = deliver(client, branch="develop")
        ignored = deliver(client, branch="feature/x")
    assert (status, delivery.outcome) == (202, Outcome.ACCEPTED)
    assert delivery.detail == "resolving images for dev/backend"
    assert ignored[0] == 200 and ignored[1].detail == "branch 'feature/x' deploys to no environment"
    reads = [q["sql"] for q in queries if "environments_" in q["sql"]]
    assert reads == []
    assert WebhookDelivery.objects.count() == 3


def test_a_repeated_protection_rule_delivery_records_one_rule(client):
    payload = {
        "action": "requested",
        "environment": "prod",
        "event": "push",
        "deployment_callback_url": "https://api.github.com/repos/nemo-team/nemo-web/actions/runs/1"
        "/deployment_protection_rule",
        "deployment": {"id": 1, "sha": "a" * 40, "ref": "main"},
        "repository": {"full_name": "nemo-team/nemo-web"},
        "sender": {"login": "dev-alice"},
    }
    first = post(client, payload, event="deployment_protection_rule", guid="rule-1")
    again = post(client, payload, event="deployment_protection_rule", guid="rule-1")

    assert (first.status_code, first.json()["outcome"]) == (202, Outcome.RECORDED)
    assert (again.status_code, again.json()["outcome"]) == (200, "duplicate")
    assert WebhookDelivery.objects.get().outcome == Outcome.RECORDED
    assert ProtectionRule.objects.count() == 1
    assert AuditEvent.objects.filter(action="github.protection_rule.request").count() == 1


def move_dev_to_trunk():
    dev = Environment.objects.get(name="dev")
    dev.branch = "trunk"
    dev.save()


def drop_the_ai_repository():
    Repository.objects.get(full_name="nemo-team/nemo-ai").delete()


def stop_deploying_dev_backend():
    backend = Component.objects.get(environment__name="dev", name="backend")
    backend.deploy_kind = "none"
    backend.save()


def count_only_release_workflows():
    api = Repository.objects.get(full_name="nemo-team/nemo-api")
    api.workflows = ["release"]
    api.save()


def load_a_topology_file_moving_dev_to_trunk():
    text = settings.GANTRY_TOPOLOGY_FILE.read_text()
    assert sync_topology(text=text.replace("    develop: dev\n", "    trunk: dev\n")).changed


@pytest.mark.parametrize(
    ("change", "run", "reason"),
    [
        (move_dev_to_trunk, {"branch": "develop"}, "branch 'develop' deploys to no environment"),
        (
            load_a_topology_file_moving_dev_to_trunk,
            {"branch": "develop"},
            "branch 'develop' deploys to no environment",
        ),
        (
            drop_the_ai_repository,
            {"repository": "nemo-team/nemo-ai"},
            "repository nemo-team/nemo-ai is not in the topology",
        ),
        (stop_deploying_dev_backend, {"branch": "develop"}, "dev has none of backend"),
        (count_only_release_workflows, {}, "workflow 'build' is not one of release"),
    ],
)
def test_a_topology_change_is_seen_by_the_next_delivery(client, change, run, reason):
    assert deliver(client, **run)[0] == 202  # the topology is read, and kept
    stamp = cache.get(intake.ROUTES_STAMP)

    change()

    assert cache.get(intake.ROUTES_STAMP) != stamp  # what tells the other processes
    status, delivery = deliver(client, **run)
    assert (status, delivery.outcome, delivery.detail) == (200, Outcome.IGNORED, reason)
    assert WebhookDelivery.objects.filter(outcome=Outcome.ACCEPTED).count() == 1


def test_a_new_stamp_from_another_process_makes_this_one_read_again(client):
    assert deliver(client, branch="develop")[0] == 202
    Environment.objects.filter(name="dev").update(branch="trunk")  # sends no signal
    cache.set(intake.ROUTES_STAMP, "renewed by another process's commit", timeout=None)

    status, delivery = deliver(client, branch="develop")

    assert (status, delivery.detail) == (200, "branch 'develop' deploys to no environment")
    assert deliver(client, branch="trunk")[0] == 202


def test_a_write_that_sends_no_signal_is_seen_once_the_reading_is_old(client, monkeypatch):
    monkeypatch.setattr(intake, "ROUTES_MAX_AGE", 0.2)
    assert deliver(client, branch="develop")[0] == 202
    Environment.objects.filter(name="dev").update(branch="trunk")
    time.sleep(0.3)

    status, delivery = deliver(client, branch="develop")

    assert (status, delivery.detail) == (200, "branch 'develop' deploys to no environment")


def test_a_change_rolled_back_is_never_shared(client):
    assert deliver(client, branch="develop")[0] == 202
    run = WorkflowRun.from_payload(workflow_run(branch="trunk"))
    with transaction.atomic():
        move_dev_to_trunk()
        inside = intake.triage(run, intake.current_routes())  # sees its own write
        transaction.set_rollback(True)
    assert [str(c) for c in inside.components] == ["dev/backend"]

    status, delivery = deliver(client, branch="trunk")

    assert (status, delivery.detail) == (200, "branch 'trunk' deploys to no environment")
    assert deliver(client, branch="develop")[0] == 202
    assert WebhookDelivery.objects.filter(outcome=Outcome.ACCEPTED).count() == 2


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        ("2026-11-30T09:15:00+09:00", "2026-11-30T09:15:00+09:00"),
        ("2026-11-30T00:15:00Z", "2026-11-30T00:15:00+00:00"),
        ("2026-11-30T00:15:00", None),  # no offset: which clock?
        ("last tuesday", None),
        (1732920000, None),
        (None, None),
    ],
)
def test_the_commit_time_is_read_when_github_gives_a_readable_one(stamp, expected):
    """It only dates lead time, so an unreadable one is left out rather than refusing the run."""
    payload = workflow_run()
    payload["workflow_run"]["head_commit"]["timestamp"] = stamp
    run = WorkflowRun.from_payload(payload)
    assert (run.committed_at.isoformat() if run.committed_at else None) == expected
