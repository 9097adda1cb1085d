"""Protection-rule steps for tests: GitHub asks (through the fake), the delivery arrives, the
build arrives. Shared by the status and protection-rule tests."""

import httpx

from deployments.models import Deployment
from github.intake import resolve_delivery
from github.models import WebhookDelivery

from ..deployments.engine_helpers import CI_REGISTRY
from .payloads import post, workflow_run


def github_asks(sandbox, repository, sha, environment="prod", **extra):
    """A workflow job now waits on Gantry's protection rule: the payload GitHub delivers
    (through the App's installation 7 unless `extra` says otherwise)."""
    answer = httpx.post(
        f"{sandbox.url}/_sandbox/github/protection_rules",
        json={
            "repository": repository,
            "sha": sha,
            "environment": environment,
            "installation_id": 7,
            **extra,
        },
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


def deliver_rule(client, payload):
    response = post(client, payload, event="deployment_protection_rule")
    delivery = WebhookDelivery.objects.get(guid=response.json()["delivery"])
    return response, delivery


def build_arrives(client, sandbox, repository, sha, branch="main"):
    """GitHub Actions finished the build: its image is pushed and the webhook delivered."""
    sandbox.world.registry.push_new(f"{CI_REGISTRY}/frontend:{sha}")
    response = post(client, workflow_run(repository=repository, branch=branch, sha=sha))
    assert response.status_code == 202, response.content
    resolve_delivery(WebhookDelivery.objects.get(guid=response.json()["delivery"]).pk)
    return Deployment.objects.get(release__sha=sha)


def callbacks(sandbox):
    """Every POST Gantry made to a protection rule's callback URL (reviews and status reports)."""
    return sandbox.github.calls_to("POST", r"/deployment_protection_rule$")
