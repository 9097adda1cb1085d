"""GitHub's own example payloads (@octokit/webhooks-examples, fetched at the pinned version)
through the real webhook view, as JSON and form-encoded, edited only in repository, branch and
commit: what each becomes, and the rows it leaves."""

import itertools
from datetime import datetime

import httpx
import pytest

from deployments.models import Deployment, Release
from environments.models import Repository
from github.intake import resolve_delivery
from github.models import ProtectionRule, WebhookDelivery
from tests.deployments.engine_helpers import CI_REGISTRY
from tests.github.payloads import SECRET, post

from . import github_artifacts as artifacts

Outcome = WebhookDelivery.Outcome
REPOSITORY = "nemo-team/nemo-api"
_shas = (f"{n:040x}" for n in itertools.count(0xC0FFEE))


@pytest.fixture
def flow(seed_topology, sandbox, sandbox_settings, settings):
    artifacts.require()
    settings.GANTRY_GITHUB_WEBHOOK_SECRET = SECRET
    # The examples' workflows have their own names; this repository takes any workflow.
    Repository.objects.filter(full_name=REPOSITORY).update(workflows=[])
    return sandbox


def ours(example: dict) -> dict:
    """The example, moved to the topology's repository, the develop branch and a new commit."""
    sha = next(_shas)
    example["repository"]["full_name"] = REPOSITORY
    run = example["workflow_run"]
    run.update(head_branch="develop", head_sha=sha)
    run["head_repository"]["full_name"] = REPOSITORY
    if isinstance(run.get("head_commit"), dict):
        run["head_commit"]["id"] = sha
    return example


def releases(example: dict) -> bool:
    run = example["workflow_run"]
    return example["action"] == "completed" and run["conclusion"] == "success"


def test_the_pinned_examples_are_the_ones_these_tests_were_written_for():
    artifacts.require()
    runs = artifacts.webhook_examples("workflow_run")
    assert len(runs) == 5, "a new @octokit/webhooks-examples: review the expectations below"
    assert {run["workflow_run"]["event"] for run in runs} == {
        "workflow_dispatch",
        "repository_dispatch",
    }
    assert any(run["workflow_run"].get("actor") is None for run in runs)  # the actor fallback
    assert len(artifacts.webhook_examples("ping")) == 4


@pytest.mark.django_db
@pytest.mark.parametrize("form", [False, True], ids=["json", "form"])
def test_every_workflow_run_example_is_answered_and_recorded(client, flow, form):
    """As the topology ships (push only), none of them deploys, each for its stated reason."""
    examples = artifacts.webhook_examples("workflow_run")
    for n, example in enumerate(examples):
        example = ours(example)
        response = post(client, example, guid=f"example-{n}", form=form)
        assert response.status_code == 200, (n, response.content)
        delivery = WebhookDelivery.objects.get(guid=f"example-{n}")
        assert delivery.outcome == Outcome.IGNORED
        run = example["workflow_run"]
        if example["action"] != "completed":
            assert f"action {example['action']!r}" in delivery.detail
        elif run["conclusion"] != "success":
            assert "only successful runs" in delivery.detail
        else:
            assert f"event {run['event']!r}: only push runs deploy" in delivery.detail
        assert delivery.run_id == run["id"] and delivery.repository == REPOSITORY
    assert WebhookDelivery.objects.count() == len(examples)
    assert Release.objects.count() == Deployment.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("form", [False, True], ids=["json", "form"])
def test_a_real_completed_example_becomes_a_release_where_its_event_is_allowed(client, flow, form):
    Repository.objects.filter(full_name=REPOSITORY).update(
        events=["push", "workflow_dispatch", "repository_dispatch"]
    )
    examples = [ours(e) for e in artifacts.webhook_examples("workflow_run")]
    for n, example in enumerate(examples):
        run = example["workflow_run"]
        if releases(example):
            flow.world.registry.push_new(f"{CI_REGISTRY}/backend:{run['head_sha']}")
        response = post(client, example, guid=f"example-{n}", form=form)
        assert response.status_code == (202 if releases(example) else 200), response.content
        resolve_delivery(WebhookDelivery.objects.get(guid=f"example-{n}").pk)
    released = [e for e in examples if releases(e)]
    assert released, "no successful completed example left to release"
    assert Release.objects.count() == Deployment.objects.count() == len(released)
    for example in released:
        release = Release.objects.get(sha=example["workflow_run"]["head_sha"])
        assert (
            release.author
            == (
                example["workflow_run"].get("actor") or example["workflow_run"]["triggering_actor"]
            )["login"]
        )
        assert str(release.component) == "dev/backend"
        # GitHub's own commit time, as its examples spell it, dates the release's lead time.
        stamp = example["workflow_run"]["head_commit"]["timestamp"]
        assert release.committed_at == datetime.fromisoformat(stamp)
    outcomes = set(WebhookDelivery.objects.values_list("outcome", flat=True))
    assert outcomes == {Outcome.RELEASED, Outcome.IGNORED}


@pytest.mark.django_db
@pytest.mark.parametrize("form", [False, True], ids=["json", "form"])
def test_every_ping_example_is_answered_with_pong(client, flow, form):
    examples = artifacts.webhook_examples("ping")
    for n, example in enumerate(examples):
        response = post(client, example, event="ping", guid=f"ping-{n}", form=form)
        assert (response.status_code, response.json()["outcome"]) == (200, "pong")
    assert WebhookDelivery.objects.filter(outcome=Outcome.PONG).count() == len(examples)


@pytest.mark.django_db
@pytest.mark.parametrize("with_deployment", [True, False], ids=["deployment", "deployment-null"])
@pytest.mark.parametrize("form", [False, True], ids=["json", "form"])
def test_protection_rule_deliveries_in_githubs_schema_are_recorded(
    client, flow, form, with_deployment
):
    """@octokit/webhooks-examples has no deployment_protection_rule example at the pinned
    version, so the fake GitHub's delivery stands in, checked against @octokit/openapi-webhooks
    first (both of the shapes GitHub sends)."""
    payload = httpx.post(
        f"{flow.url}/_sandbox/github/protection_rules",
        json={
            "repository": REPOSITORY,
            "sha": next(_shas),
            "environment": "prod",
            "with_deployment": with_deployment,
        },
    ).json()
    # openapi-webhooks 12.1.0 does not know `deployment: null` yet; the rest must match.
    artifacts.validate_webhook(
        "deployment-protection-rule-requested",
        payload if with_deployment else {k: v for k, v in payload.items() if k != "deployment"},
    )
    response = post(client, payload, event="deployment_protection_rule", form=form)
    assert response.status_code == 202, response.content
    rule = ProtectionRule.objects.get()
    assert (rule.sha, rule.github_environment) == (payload["sha"], "prod")
    assert rule.github_deployment_id == (payload["deployment"] or {}).get("id")
    assert WebhookDelivery.objects.get().outcome == Outcome.RECORDED
