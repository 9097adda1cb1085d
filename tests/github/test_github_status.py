"""Back to GitHub, against the sandbox's fake GitHub over real HTTP: deployment statuses as a
Gantry deployment moves, and answers to custom deployment protection rules.

Tasks run here by calling them (as a worker would) right after the step that enqueued them: in a
test's transaction `transaction.on_commit` never fires.
"""

import logging

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from audit.models import AuditEvent
from deployments.approvals import decide
from deployments.engine import advance
from deployments.models import Deployment
from deployments.releases import create_release
from environments.models import Component
from github import client as github_api
from github.models import GitHubDeployment, GitHubStatus, ProtectionRule, WebhookDelivery
from github.statuses import GITHUB_STATE
from github.tasks import GITHUB_MAX_RETRIES, answer_protection_rule, report_to_github
from tests.deployments.engine_helpers import (
    CI_REGISTRY,
    PATIENCE,
    drive,
    keep_time,
    new_release,
    sim_time,
)

from .payloads import SECRET, post
from .rules import build_arrives, callbacks, deliver_rule, github_asks

pytestmark = pytest.mark.django_db
S = Deployment.State
Outcome = WebhookDelivery.Outcome
TOKEN = "ghp_test-token-0123456789"
BASE = "https://gantry.test"
REPO = "nemo-team/nemo-x"  # what engine_helpers.new_release records


@pytest.fixture
def github(engine, settings):
    """Gantry with a GitHub token and statuses on, the engine on simulated time; yields the
    sandbox."""
    settings.GANTRY_GITHUB_TOKEN = TOKEN
    settings.GANTRY_GITHUB_DEPLOYMENT_STATUSES = True
    settings.GANTRY_BASE_URL = BASE
    settings.GANTRY_GITHUB_WEBHOOK_SECRET = SECRET
    github_api.tokens.clear()
    yield engine
    github_api.tokens.clear()


@pytest.fixture
def as_app(github, settings, app_key):
    """Sign in as a GitHub App (id 42, installation 7) whose public key the fake checks."""
    settings.GANTRY_GITHUB_TOKEN = ""
    settings.GANTRY_GITHUB_APP_ID = "42"
    settings.GANTRY_GITHUB_APP_INSTALLATION_ID = "7"
    settings.GANTRY_GITHUB_APP_PRIVATE_KEY = app_key[0]
    register_app(github, app_key[1])
    return github


def register_app(sandbox, public_key, lifetime=3600):
    answer = httpx.post(
        f"{sandbox.url}/_sandbox/github/apps",
        json={"app_id": "42", "public_key": public_key, "token_lifetime": lifetime},
    )
    assert answer.status_code == 201


def drive_reporting(deployment, run=report_to_github):
    """The engine's steps one by one, each followed by the GitHub task it enqueued; each step's
    delay passes in simulated time. However long the task takes (GitHub down: every report
    retried, then given up), no simulated time passes meanwhile, so no deadline comes nearer."""
    sim = sim_time()
    for _ in range(2000):
        outcome = advance(deployment.pk)
        run(deployment.pk)
        if outcome.finished:
            return Deployment.objects.get(pk=deployment.pk)
        sim.sleep(outcome.delay)
    raise AssertionError("the deployment did not end")


def expected_states(deployment):
    """The GitHub states Gantry's own audit trail calls for, in order."""
    moves = AuditEvent.objects.filter(
        object_type="deployments.deployment", object_id=str(deployment.pk)
    ).filter(action__startswith="deployment.")
    return ["queued"] + [
        GITHUB_STATE[m.action.removeprefix("deployment.")] for m in moves.order_by("id")
    ]


def only_github_deployment(sandbox, environment):
    found = [d for d in sandbox.github.deployments_of(REPO) if d["environment"] == environment]
    assert len(found) == 1, found
    return found[0]


def test_a_deployment_that_succeeds_shows_on_github_state_by_state(github):
    deployment = drive_reporting(new_release(github, "dev", "backend"))
    assert deployment.state == S.SUCCEEDED, deployment.reason
    on_github = only_github_deployment(github, "dev")
    assert (on_github["sha"], on_github["ref"], on_github["task"]) == (
        deployment.release.sha,
        deployment.release.sha,
        "deploy",
    )
    assert on_github["payload"]["gantry_deployment"] == deployment.pk
    assert on_github["production_environment"] is False
    create = github.github.calls_to("POST", r"/deployments$")[0]["body"]
    assert (create["auto_merge"], create["required_contexts"]) == (False, [])
    statuses = github.github.statuses[on_github["id"]]
    assert [s["state"] for s in statuses] == [
        "queued",
        "in_progress",
        "in_progress",
        "in_progress",
        "success",
    ]
    assert [s["description"] for s in statuses] == [
        "Queued in Gantry",
        "Promoting the image",
        f"Rolling out ({deployment.get_strategy_display().lower()})",
        "Verifying health",
        "Deployed",
    ]
    assert {s["log_url"] for s in statuses} == {f"{BASE}/deployments/{deployment.pk}/"}
    assert {s["environment_url"] for s in statuses} == {f"{BASE}/environments/dev/"}
    assert {c["auth"] for c in github.github.calls} == {"token"}
    link = GitHubDeployment.objects.get(deployment=deployment)
    assert (link.github_id, link.last_error) == (on_github["id"], "")
    assert not link.owed().exists() and link.statuses.count() == 5
    assert AuditEvent.objects.filter(action="github.deployment.create").count() == 1


def test_a_rolled_back_deployment_ends_as_a_failure_in_order(github, settings):
    settings.GANTRY_ROLLOUT_TIMEOUT = 120.0  # simulated seconds; the instances never turn healthy
    deployment = new_release(github, "prod", "frontend")
    github.inject_fault("unhealthy", image=deployment.release.digest.removeprefix("sha256:")[:16])
    deployment = drive(deployment)  # GitHub hears nothing while it runs …
    assert deployment.state == S.ROLLED_BACK, deployment.reason
    assert github.github.deployments == {}
    report_to_github(deployment.pk)  # … then one late task sends it all, in order
    on_github = only_github_deployment(github, "prod")
    states = github.github.states_of(on_github["id"])
    assert states == expected_states(deployment)
    assert states[0] == "queued" and states[-2:] == ["in_progress", "failure"]
    assert "success" not in states
    last = github.github.statuses[on_github["id"]][-1]
    assert last["description"].startswith("Rolled back")
    assert len(last["description"]) <= 140
    assert on_github["production_environment"] is True


def test_running_the_task_twice_creates_one_github_deployment(github):
    deployment = new_release(github, "dev", "frontend")
    report_to_github(deployment.pk)
    report_to_github(deployment.pk)
    on_github = only_github_deployment(github, "dev")
    assert github.github.states_of(on_github["id"]) == ["queued"]
    assert len(github.github.calls_to("POST", r"/deployments$")) == 1


def test_a_github_deployment_created_by_a_run_that_died_is_found_again(github):
    deployment = new_release(github, "dev", "frontend")
    # An earlier run created it on GitHub, then died before saving GitHub's id.
    earlier = httpx.post(
        f"{github.url}/github/repos/{REPO}/deployments",
        headers={"Authorization": f"Bearer {TOKEN}"},
        json={
            "ref": deployment.release.sha,
            "environment": "dev",
            "payload": {"gantry_deployment": deployment.pk},
        },
    ).json()
    report_to_github(deployment.pk)
    assert only_github_deployment(github, "dev")["id"] == earlier["id"]
    assert github.github.states_of(earlier["id"]) == ["queued"]
    assert GitHubDeployment.objects.get(deployment=deployment).github_id == earlier["id"]


def test_github_down_never_stops_a_deployment_and_statuses_catch_up(github):
    github.inject_fault("http_error", path="/github/*", status=503, count=10_000)
    deployment = drive_reporting(
        new_release(github, "dev", "backend"),
        run=lambda pk: report_to_github.apply((pk,)),  # eager: retries run inline, then give up
    )
    assert deployment.state == S.SUCCEEDED, deployment.reason
    assert github.github.deployments == {}
    link = GitHubDeployment.objects.get(deployment=deployment)
    assert link.last_error.startswith("gave up: GitHub answered 503")
    assert link.owed().count() == 5 and link.lease_until is None
    attempts = 10_000 - github.world.faults.items[0]["count"]
    # Every report tried 1 + GITHUB_MAX_RETRIES times, then gave up quietly.
    assert attempts >= 5 * (GITHUB_MAX_RETRIES + 1)
    assert attempts % (GITHUB_MAX_RETRIES + 1) == 0
    github.clear_faults()
    report_to_github(deployment.pk)
    on_github = only_github_deployment(github, "dev")
    assert github.github.states_of(on_github["id"]) == expected_states(deployment)
    link.refresh_from_db()
    assert link.last_error == "" and not link.owed().exists()


def test_a_refusal_from_github_is_not_retried(github):
    """A 4xx other than 429 will not change by itself: noted once, no retries."""
    github.inject_fault("http_error", path="/github/repos/*/deployments", status=404, count=50)
    deployment = new_release(github, "dev", "frontend")
    report_to_github.apply((deployment.pk,))
    assert github.world.faults.items[0]["count"] == 49  # the lookup failed; no retries
    assert "gave up: GitHub answered 404" in GitHubDeployment.objects.get().last_error


def test_nothing_is_recorded_or_sent_unless_configured_and_enabled(github, settings):
    settings.GANTRY_GITHUB_DEPLOYMENT_STATUSES = False
    drive(new_release(github, "dev", "frontend", n=1))
    settings.GANTRY_GITHUB_DEPLOYMENT_STATUSES = True
    settings.GANTRY_GITHUB_TOKEN = ""
    drive(new_release(github, "dev", "backend", n=2))
    assert GitHubDeployment.objects.count() == GitHubStatus.objects.count() == 0
    assert github.github.calls == []


def test_a_deployment_rejected_while_waiting_never_appears_on_github(github, make_user):
    component = Component.objects.get(environment__name="prod", name="frontend")
    release, _ = create_release(
        component,
        repository=REPO,
        sha="9" * 40,
        branch="main",
        image=f"{CI_REGISTRY}/frontend:{'9' * 40}",
        digest="sha256:" + "9" * 64,
        source="api",
    )
    deployment = release.deployments.get()
    assert deployment.state == S.PENDING_APPROVAL
    decide(deployment.pk, make_user("approver", "bob"), "reject", "not this one")
    assert GitHubDeployment.objects.count() == 0
    report_to_github(deployment.pk)
    assert github.github.calls == []


def test_app_auth_signs_a_jwt_and_reuses_the_installation_token(as_app, caplog, app_key):
    caplog.set_level(logging.DEBUG)
    deployment = drive_reporting(new_release(as_app, "dev", "backend"))
    assert deployment.state == S.SUCCEEDED
    exchanges = as_app.github.calls_to("POST", r"^/app/installations/7/access_tokens$")
    assert len(exchanges) == 1  # cached across five reports
    rest = [c for c in as_app.github.calls if c not in exchanges]
    assert rest and {c["auth"] for c in rest} == {"installation"}
    on_github = only_github_deployment(as_app, "dev")
    assert on_github["creator"]["login"] == "gantry[bot]"
    assert len(as_app.github.states_of(on_github["id"])) == 5
    # No credential in logs or the audit trail.
    issued = list(as_app.github.tokens)  # the fake keeps only hashes
    assert issued and "ghs_" not in caplog.text
    assert "PRIVATE KEY" not in caplog.text and TOKEN not in caplog.text
    audit = " ".join(f"{a.message} {a.data}" for a in AuditEvent.objects.all())
    assert "ghs_" not in audit and "PRIVATE KEY" not in audit


def test_a_short_lived_installation_token_is_replaced_before_it_expires(as_app, app_key):
    register_app(as_app, app_key[1], lifetime=120)  # inside the 5-minute margin
    report_to_github(new_release(as_app, "dev", "frontend", n=1).pk)
    report_to_github(new_release(as_app, "dev", "backend", n=2).pk)
    exchanges = as_app.github.calls_to("POST", r"/access_tokens$")
    assert len(exchanges) == 6  # one per call: 2 reports of (lookup, create, status)


def test_an_app_key_github_does_not_know_is_refused_and_noted(as_app, settings):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    settings.GANTRY_GITHUB_APP_PRIVATE_KEY = other.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    deployment = new_release(as_app, "dev", "frontend")
    report_to_github.apply((deployment.pk,))
    link = GitHubDeployment.objects.get(deployment=deployment)
    assert "GitHub answered 401" in link.last_error and "PRIVATE KEY" not in link.last_error
    assert as_app.github.deployments == {} and as_app.github.tokens == {}


def test_the_app_private_key_may_come_from_a_file(as_app, settings, tmp_path, app_key):
    key_file = tmp_path / "app.pem"
    key_file.write_text(app_key[0])
    settings.GANTRY_GITHUB_APP_PRIVATE_KEY = ""
    settings.GANTRY_GITHUB_APP_PRIVATE_KEY_FILE = str(key_file)
    report_to_github(new_release(as_app, "dev", "frontend").pk)
    assert only_github_deployment(as_app, "dev")["creator"]["login"] == "gantry[bot]"
    assert len(as_app.github.tokens) == 1


# --- custom deployment protection rules -------------------------------------------------------


def test_approved_in_gantry_answers_githubs_callback_once(as_app, client, make_user):
    sha = "b" * 40
    payload = github_asks(as_app, "nemo-team/nemo-web", sha)
    response, delivery = deliver_rule(client, payload)
    assert response.status_code == 202
    assert (delivery.outcome, delivery.detail) == (
        Outcome.RECORDED,
        f"waiting for the release of nemo-team/nemo-web@{sha[:7]}",
    )
    rule = ProtectionRule.objects.get()
    assert (rule.verdict, rule.deployment, rule.github_environment) == ("waiting", None, "prod")
    assert rule.github_deployment_id == payload["deployment"]["id"]
    answer_protection_rule(rule.pk)
    assert callbacks(as_app) == [] and ProtectionRule.objects.get().verdict == "waiting"
    deployment = build_arrives(client, as_app, "nemo-team/nemo-web", sha)
    assert deployment.state == S.PENDING_APPROVAL
    rule.refresh_from_db()
    assert (rule.verdict, rule.deployment) == ("waiting", deployment)  # linked on arrival
    decide(deployment.pk, make_user("approver", "bob"), "approve")
    rule.refresh_from_db()
    assert rule.verdict == "approved" and rule.answered_at is None
    answer_protection_rule(rule.pk)
    answer_protection_rule(rule.pk)  # a redelivered task: already answered
    assert as_app.github.reviews == [
        {
            "repository": "nemo-team/nemo-web",
            "run_id": as_app.github.reviews[0]["run_id"],
            "environment_name": "prod",
            "state": "approved",
            "comment": f"Approved in Gantry by bob ({BASE}/deployments/{deployment.pk}/)",
        }
    ]
    assert len(callbacks(as_app)) == 1
    rule.refresh_from_db()
    assert rule.answered_at and rule.last_error == ""
    actions = list(
        AuditEvent.objects.filter(action__startswith="github.protection_rule")
        .order_by("id")
        .values_list("action", flat=True)
    )
    assert actions == [
        "github.protection_rule.request",
        "github.protection_rule.approved",
        "github.protection_rule.answered",
    ]


def test_rejected_in_gantry_answers_rejected_with_the_comment(as_app, client, make_user):
    sha = "c" * 40
    deployment = build_arrives(client, as_app, "nemo-team/nemo-web", sha)
    response, delivery = deliver_rule(client, github_asks(as_app, "nemo-team/nemo-web", sha))
    assert response.status_code == 202
    assert delivery.detail == f"waiting for approval of deployment #{deployment.pk}"
    decide(deployment.pk, make_user("approver", "carol"), "reject", "not during the sale")
    answer_protection_rule(ProtectionRule.objects.get().pk)
    assert [(r["state"], r["comment"]) for r in as_app.github.reviews] == [
        (
            "rejected",
            f"Rejected in Gantry by carol: not during the sale ({BASE}/deployments/"
            f"{deployment.pk}/)",
        )
    ]


def test_a_release_that_needs_no_approval_is_approved_when_it_arrives(as_app, client):
    sha = "d" * 40
    deliver_rule(client, github_asks(as_app, "nemo-team/nemo-web", sha, environment="dev"))
    deployment = build_arrives(client, as_app, "nemo-team/nemo-web", sha, branch="develop")
    assert deployment.state == S.QUEUED
    rule = ProtectionRule.objects.get()
    assert (rule.verdict, rule.deployment) == ("approved", deployment)
    answer_protection_rule(rule.pk)
    assert [r["state"] for r in as_app.github.reviews] == ["approved"]
    assert "dev needs no approval" in as_app.github.reviews[0]["comment"]


def test_an_answer_github_refuses_for_a_while_is_sent_once_it_is_back(as_app, client, make_user):
    sha = "e" * 40
    deployment = build_arrives(client, as_app, "nemo-team/nemo-web", sha)
    deliver_rule(client, github_asks(as_app, "nemo-team/nemo-web", sha))
    decide(deployment.pk, make_user("approver", "bob"), "approve")
    as_app.inject_fault("http_error", path="/github/*/deployment_protection_rule", count=10_000)
    rule = ProtectionRule.objects.get()
    answer_protection_rule.apply((rule.pk,))
    rule.refresh_from_db()
    assert rule.answered_at is None and rule.last_error.startswith("gave up: GitHub answered 503")
    assert deployment.pk == rule.deployment_id and as_app.github.reviews == []
    as_app.clear_faults()
    answer_protection_rule(rule.pk)
    answer_protection_rule(rule.pk)
    assert [r["state"] for r in as_app.github.reviews] == ["approved"]


def test_a_rule_for_an_environment_gantry_does_not_know_is_ignored(as_app, client):
    payload = github_asks(as_app, "nemo-team/nemo-web", "f" * 40, environment="staging")
    response, delivery = deliver_rule(client, payload)
    assert response.status_code == 200
    assert (delivery.outcome, delivery.detail) == (
        Outcome.IGNORED,
        "environment 'staging' is not one Gantry knows",
    )
    assert (delivery.event, delivery.action, delivery.repository) == (
        "deployment_protection_rule",
        "requested",
        "nemo-team/nemo-web",
    )
    assert ProtectionRule.objects.count() == 0


def test_a_callback_off_the_configured_api_is_never_sent_credentials(as_app, client):
    payload = github_asks(as_app, "nemo-team/nemo-web", "f" * 40)
    payload["deployment_callback_url"] = "https://attacker.example/repos/x/y/actions/runs/1/x"
    response, delivery = deliver_rule(client, payload)
    assert response.status_code == 200 and delivery.outcome == Outcome.IGNORED
    assert "not on GANTRY_GITHUB_API_URL" in delivery.detail
    assert ProtectionRule.objects.count() == 0


def test_bad_protection_rule_deliveries_record_nothing(as_app, client):
    payload = github_asks(as_app, "nemo-team/nemo-web", "f" * 40)
    unsigned = post(client, payload, event="deployment_protection_rule", secret="wrong")
    assert unsigned.status_code == 401
    del payload["deployment"]["sha"], payload["sha"]  # GitHub sends both; neither is here
    response, delivery = deliver_rule(client, payload)
    assert response.status_code == 400
    assert delivery.outcome == Outcome.INVALID and "sha" in delivery.detail
    assert ProtectionRule.objects.count() == 0
    assert WebhookDelivery.objects.filter(outcome=Outcome.REJECTED).count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_reports_each_state_after_it_commits(github, in_process_broker, settings):
    """Celery worker threads on the in-memory broker: transitions enqueue on commit. Celery's
    countdowns are real seconds, so they are short; simulated time moves with the worker's
    steps (keep_time), and the deadlines are simulated seconds."""
    from celery.contrib.testing.worker import start_worker
    from django.db import connection

    if connection.vendor == "sqlite":
        pytest.skip("a worker thread beside the test needs a server database (PostgreSQL/MySQL)")
    settings.GANTRY_ENGINE_POLL_SECONDS = 0.05
    settings.GANTRY_VERIFY_INTERVAL = 0.05
    sha = "7" * 40
    digest = github.world.registry.push_new(f"{CI_REGISTRY}/frontend:{sha}")
    with start_worker(
        in_process_broker,
        pool="threads",
        concurrency=2,
        perform_ping_check=False,
        shutdown_timeout=PATIENCE,  # a guard against a hang: the thread stops when it may
    ):
        release, _ = create_release(
            Component.objects.get(environment__name="dev", name="frontend"),
            repository=REPO,
            sha=sha,
            branch="develop",
            image=f"{CI_REGISTRY}/frontend:{sha}",
            digest=digest,
            source="api",
        )

        def reported_success():
            found = github.github.deployments_of(REPO)
            return found and github.github.states_of(found[0]["id"])[-1:] == ["success"]

        keep_time(github, release.deployments.get().pk, reported_success)
    assert Deployment.objects.get().state == S.SUCCEEDED
    on_github = only_github_deployment(github, "dev")
    assert github.github.states_of(on_github["id"]) == [
        "queued",
        "in_progress",
        "in_progress",
        "in_progress",
        "success",
    ]
