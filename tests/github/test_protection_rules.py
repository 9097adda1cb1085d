"""Custom deployment protection rules as GitHub sends them now, against the sandbox's fake GitHub
over real HTTP: `deployment: null`, the run and installation they come from, repository names in
any case, rules Gantry can never settle (expired after GANTRY_PROTECTION_RULE_TIMEOUT), and the
deadlock of a protection-rule job inside the build workflow itself (reported once).

Tasks run here by calling them (as a worker would) right after the step that enqueued them: in a
test's transaction `transaction.on_commit` never fires.
"""

from datetime import timedelta

import httpx
import pytest
from django.utils import timezone

from audit.models import AuditEvent
from deployments.approvals import decide
from deployments.models import Deployment
from github import client as github_api
from github import protection
from github.models import ProtectionRule, WebhookDelivery
from github.payloads import ProtectionRuleRequest, run_id_of
from github.tasks import answer_protection_rule, sweep_protection_rules

from .payloads import SECRET
from .rules import build_arrives, callbacks, deliver_rule, github_asks

pytestmark = pytest.mark.django_db
S = Deployment.State
Outcome = WebhookDelivery.Outcome
WEB = "nemo-team/nemo-web"  # a repository the seed topology builds frontend images from
BASE = "https://gantry.test"


@pytest.fixture
def gh(engine, settings, app_key):
    """Gantry signed in to the fake GitHub as an App (id 42, installation 7); yields the
    sandbox."""
    settings.GANTRY_GITHUB_TOKEN = ""
    settings.GANTRY_GITHUB_DEPLOYMENT_STATUSES = False
    settings.GANTRY_BASE_URL = BASE
    settings.GANTRY_GITHUB_WEBHOOK_SECRET = SECRET
    settings.GANTRY_GITHUB_APP_ID = "42"
    settings.GANTRY_GITHUB_APP_INSTALLATION_ID = "7"
    settings.GANTRY_GITHUB_APP_PRIVATE_KEY = app_key[0]
    github_api.tokens.clear()
    answer = httpx.post(
        f"{engine.url}/_sandbox/github/apps",
        json={"app_id": "42", "public_key": app_key[1], "token_lifetime": 3600},
    )
    assert answer.status_code == 201
    yield engine
    github_api.tokens.clear()


def run_seen(run_id, action="in_progress", workflow="build", repository=WEB):
    """A `workflow_run` delivery of run `run_id` as the webhook keeps it."""
    return WebhookDelivery.objects.create(
        guid=f"run-{run_id}-{action}",
        event="workflow_run",
        action=action,
        repository=repository,
        run_id=run_id,
        outcome=Outcome.IGNORED if action != "completed" else Outcome.ACCEPTED,
        detail="" if action == "completed" else f"action {action!r} is not handled",
        payload={"action": action, "workflow_run": {"id": run_id, "name": workflow}},
    )


def back_date(rule, seconds):
    ProtectionRule.objects.filter(pk=rule.pk).update(
        created_at=timezone.now() - timedelta(seconds=seconds)
    )


# --- what GitHub sends now ---------------------------------------------------------------------


def test_a_rule_with_no_deployment_is_recorded_from_the_top_level_and_settled(
    gh, client, make_user
):
    sha = "1" * 40
    payload = github_asks(gh, WEB, sha, ref="main", with_deployment=False)
    assert payload["deployment"] is None and payload["sha"] == sha
    response, delivery = deliver_rule(client, payload)
    assert response.status_code == 202, response.content
    assert (delivery.outcome, delivery.detail) == (
        Outcome.RECORDED,
        f"waiting for the release of {WEB}@{sha[:7]}",
    )
    rule = ProtectionRule.objects.get()
    run_id = int(payload["deployment_callback_url"].split("/runs/")[1].split("/")[0])
    assert (rule.sha, rule.ref, rule.github_deployment_id) == (sha, "main", None)
    assert (rule.run_id, rule.installation_id, rule.problem) == (run_id, 7, "")
    deployment = build_arrives(client, gh, WEB, sha)
    assert deployment.state == S.PENDING_APPROVAL
    decide(deployment.pk, make_user("approver", "bob"), "approve")
    answer_protection_rule(rule.pk)
    answer_protection_rule(rule.pk)  # redelivered: already answered
    assert gh.github.reviews == [
        {
            "repository": WEB,
            "run_id": run_id,
            "environment_name": "prod",
            "state": "approved",
            "comment": f"Approved in Gantry by bob ({BASE}/deployments/{deployment.pk}/)",
        }
    ]
    assert len(callbacks(gh)) == 1
    rule.refresh_from_db()
    assert (rule.verdict, rule.deployment, rule.problem) == ("approved", deployment, "")
    assert rule.answered_at is not None
    assert ProtectionRule.objects.count() == 1
    assert WebhookDelivery.objects.filter(event="deployment_protection_rule").count() == 1


def test_the_top_level_sha_wins_and_the_deployment_is_the_fallback():
    top = github_payload(sha="a" * 40, deployment={"id": 5, "sha": "b" * 40, "ref": "old"})
    ask = ProtectionRuleRequest.from_payload(top)
    assert (ask.sha, ask.ref, ask.deployment_id) == ("a" * 40, "main", 5)
    older = github_payload(deployment={"id": 5, "sha": "b" * 40, "ref": "old"})
    del older["sha"], older["ref"]
    ask = ProtectionRuleRequest.from_payload(older)
    assert (ask.sha, ask.ref, ask.run_id, ask.installation_id) == ("b" * 40, "old", 77, 7)
    no_installation = github_payload()
    del no_installation["installation"]
    assert ProtectionRuleRequest.from_payload(no_installation).installation_id is None


def github_payload(sha="c" * 40, deployment=None, callback=None):
    return {
        "action": "requested",
        "environment": "prod",
        "event": "push",
        "sha": sha,
        "ref": "main",
        "deployment_callback_url": callback
        or "https://api.github.com/repos/o/r/actions/runs/77/deployment_protection_rule",
        "deployment": deployment,
        "repository": {"full_name": "o/r"},
        "installation": {"id": 7},
        "sender": {"login": "dev-alice"},
    }


def test_the_run_id_comes_from_the_callback_url_of_githubs_shape_only():
    api = "https://api.github.com/repos/o/r"
    assert run_id_of(f"{api}/actions/runs/42/deployment_protection_rule") == 42
    ghe = "https://ghe.example/api/v3/repos/o/r"
    assert run_id_of(f"{ghe}/actions/runs/9/deployment_protection_rule") == 9
    assert run_id_of(f"{api}/actions/runs/x/deployment_protection_rule") is None
    assert run_id_of(f"{api}/actions/runs/42/deployment_protection_rule/x") is None
    assert run_id_of(f"{api}/deployments/42/statuses") is None


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        ({"sha": None, "deployment": None}, "missing field sha"),
        ({"sha": None, "deployment": {"id": 1, "ref": "main"}}, "missing field sha"),
        ({"sha": "abc"}, "field sha must be a 40-character hex SHA"),
        ({"sha": None, "deployment": {"sha": 12}}, "field deployment.sha must be str, not int"),
        ({"deployment": "yes"}, "field deployment must be an object or null, not str"),
    ],
)
def test_a_rule_without_a_usable_sha_is_invalid_and_names_the_field(gh, client, change, detail):
    payload = github_asks(gh, WEB, "2" * 40)
    payload.update(change)
    response, delivery = deliver_rule(client, payload)
    assert response.status_code == 400
    assert (delivery.outcome, delivery.detail) == (Outcome.INVALID, detail)
    assert ProtectionRule.objects.count() == 0
    assert WebhookDelivery.objects.count() == 1


# --- repository names in any case ----------------------------------------------------------------


def test_repository_names_match_whatever_their_case(gh, client, make_user):
    first, second = "3" * 40, "4" * 40
    # the release first, then a rule naming the repository in other letters (matching())
    released = build_arrives(client, gh, WEB, first)
    response, delivery = deliver_rule(client, github_asks(gh, "Nemo-Team/NEMO-Web", first))
    assert response.status_code == 202
    assert delivery.detail == f"waiting for approval of deployment #{released.pk}"
    decide(released.pk, make_user("approver", "bob"), "approve")
    # the rule first, then the release (on_state_changed)
    deliver_rule(client, github_asks(gh, "NEMO-TEAM/nemo-web", second))
    later = build_arrives(client, gh, WEB, second)
    decide(later.pk, make_user("approver", "carol"), "reject", "not today")
    rules = {rule.sha: rule for rule in ProtectionRule.objects.all()}
    assert (rules[first].deployment, rules[second].deployment) == (released, later)
    for rule in rules.values():
        answer_protection_rule(rule.pk)
    assert sorted((r["repository"], r["state"]) for r in gh.github.reviews) == [
        ("NEMO-TEAM/nemo-web", "rejected"),
        ("Nemo-Team/NEMO-Web", "approved"),
    ]
    assert ProtectionRule.objects.count() == 2 and Deployment.objects.count() == 2


# --- rules Gantry can never settle ---------------------------------------------------------------


def test_a_rule_no_release_reaches_is_rejected_after_the_timeout_saying_why(
    gh, client, settings, make_user
):
    settings.GANTRY_PROTECTION_RULE_TIMEOUT = 3600
    lost, fresh, approving = "5" * 40, "6" * 40, "7" * 40
    deliver_rule(client, github_asks(gh, WEB, lost))
    deliver_rule(client, github_asks(gh, WEB, fresh))
    waiting = build_arrives(client, gh, WEB, approving)
    deliver_rule(client, github_asks(gh, WEB, approving))
    rules = {rule.sha: rule for rule in ProtectionRule.objects.all()}
    back_date(rules[lost], 3601)
    back_date(rules[approving], 7 * 86400)
    back_date(rules[fresh], 3599)

    to_answer = protection.expire_waiting()
    assert to_answer == [rules[lost].pk]
    assert protection.expire_waiting() == []  # decided once
    for rule_id in to_answer:
        answer_protection_rule(rule_id)

    reason = f"no release of {WEB}@{lost[:7]} reached Gantry within 60 min; "
    assert [(r["state"], r["comment"][: len(reason)]) for r in gh.github.reviews] == [
        ("rejected", reason)
    ]
    states = dict(ProtectionRule.objects.values_list("sha", "verdict"))
    assert states == {lost: "rejected", fresh: "waiting", approving: "waiting"}
    assert ProtectionRule.objects.get(sha=lost).answered_at is not None
    assert waiting.pk == ProtectionRule.objects.get(sha=approving).deployment_id
    assert AuditEvent.objects.filter(action="github.protection_rule.rejected").count() == 1
    assert len(callbacks(gh)) == 1

    # Past the timeout from `now`: the fresh one goes too; the one people decide on still waits.
    later = timezone.now() + timedelta(seconds=2)
    assert protection.expire_waiting(now=later) == [rules[fresh].pk]
    assert ProtectionRule.objects.get(sha=approving).verdict == "waiting"
    decide(waiting.pk, make_user("approver", "bob"), "approve")
    assert ProtectionRule.objects.get(sha=approving).verdict == "approved"


def test_the_timeout_is_a_setting(gh, client, settings):
    settings.GANTRY_PROTECTION_RULE_TIMEOUT = 600
    deliver_rule(client, github_asks(gh, WEB, "8" * 40))
    rule = ProtectionRule.objects.get()
    back_date(rule, 601)
    assert protection.expire_waiting() == [rule.pk]
    rule.refresh_from_db()
    assert rule.comment.startswith(f"no release of {WEB}@8888888 reached Gantry within 10 min;")


# --- the same-workflow deadlock ------------------------------------------------------------------


def status_reports(sandbox):
    return [c["body"] for c in callbacks(sandbox) if "state" not in (c["body"] or {})]


def test_a_rule_inside_its_own_build_run_is_shown_and_reported_once(gh, client, settings):
    sha = "9" * 40
    payload = github_asks(gh, WEB, sha)
    run_id = run_id_of(payload["deployment_callback_url"])
    run_seen(run_id, "requested", workflow="build")
    run_seen(run_id, "in_progress", workflow="build")
    response, delivery = deliver_rule(client, payload)
    assert response.status_code == 202
    rule = ProtectionRule.objects.get()
    assert rule.problem == (
        f"This job is in workflow run {run_id} (build), the build itself. Gantry releases a "
        "build only once its run completes, so this job waits forever: move the deploy job to a "
        "separate workflow triggered on push (docs/github-actions.md)."
    )
    assert (delivery.outcome, delivery.detail) == (Outcome.RECORDED, rule.problem)
    assert WebhookDelivery.objects.get(pk=delivery.pk).detail == rule.problem

    answer_protection_rule(rule.pk)  # the task: a status report, not a verdict
    answer_protection_rule(rule.pk)
    assert protection.report_problem(rule.pk) is False
    assert status_reports(gh) == [{"environment_name": "prod", "comment": rule.problem}]
    assert len(callbacks(gh)) == 1 and gh.github.reviews == []
    assert callbacks(gh)[0]["auth"] == "installation"
    rule.refresh_from_db()
    assert rule.reported_at is not None and rule.verdict == "waiting" and rule.answered_at is None
    assert AuditEvent.objects.filter(action="github.protection_rule.reported").count() == 1
    assert protection.report_problems() == []

    # It still fails in the end, saying why, and the problem is cleared once settled.
    back_date(rule, 3601)
    assert protection.expire_waiting() == [rule.pk]
    answer_protection_rule(rule.pk)
    rule.refresh_from_db()
    assert (rule.verdict, rule.problem) == ("rejected", "")
    assert rule.comment.startswith(f"no release of {WEB}@{sha[:7]} reached Gantry within 60 min")
    assert rule.comment.endswith(
        "the build itself. Gantry releases a build only once its run "
        "completes, so this job waits forever: move the deploy job to a separate workflow "
        "triggered on push (docs/github-actions.md)."
    )
    assert len(rule.comment) <= 1024
    assert WebhookDelivery.objects.get(pk=delivery.pk).detail == "rejected in Gantry"
    assert [r["state"] for r in gh.github.reviews] == ["rejected"]
    assert len(callbacks(gh)) == 2
    assert ProtectionRule.objects.count() == 1 and WebhookDelivery.objects.count() == 3


def test_a_deadlock_seen_after_the_rule_is_found_when_looked_at_again(gh, client):
    payload = github_asks(gh, WEB, "a" * 40)
    run_id = run_id_of(payload["deployment_callback_url"])
    _, delivery = deliver_rule(client, payload)
    rule = ProtectionRule.objects.get()
    assert rule.problem == "" and delivery.detail.startswith("waiting for the release")
    assert protection.report_problems() == []
    run_seen(run_id, "in_progress", workflow="ci")
    assert protection.report_problems() == [rule.pk]
    rule.refresh_from_db()
    assert f"workflow run {run_id} (ci)" in rule.problem
    assert WebhookDelivery.objects.get(pk=delivery.pk).detail == rule.problem
    assert protection.report_problem(rule.pk) is True
    assert protection.report_problem(rule.pk) is False
    assert len(status_reports(gh)) == 1 and len(callbacks(gh)) == 1


def test_no_deadlock_once_the_run_completed_or_the_commit_is_released(gh, client):
    completed, released = "b" * 40, "c" * 40
    payload = github_asks(gh, WEB, completed)
    run_id = run_id_of(payload["deployment_callback_url"])
    run_seen(run_id, "in_progress")
    run_seen(run_id, "completed")
    deliver_rule(client, payload)
    deployment = build_arrives(client, gh, WEB, released)
    payload = github_asks(gh, WEB, released)
    run_seen(run_id_of(payload["deployment_callback_url"]), "in_progress")
    deliver_rule(client, payload)
    problems = dict(ProtectionRule.objects.values_list("sha", "problem"))
    assert problems == {completed: "", released: ""}
    assert ProtectionRule.objects.get(sha=released).deployment == deployment
    for rule in ProtectionRule.objects.all():
        answer_protection_rule(rule.pk)
    assert protection.report_problems() == []
    assert callbacks(gh) == [] and ProtectionRule.objects.count() == 2


def test_a_verdict_whose_answer_message_was_lost_is_sent_by_the_sweep(
    gh, client, settings, in_process_broker
):
    deliver_rule(client, github_asks(gh, WEB, "8" * 40))
    deliver_rule(client, github_asks(gh, WEB, "9" * 40))
    lost, failed = ProtectionRule.objects.order_by("pk")
    for rule in (lost, failed):
        assert rule.decide(ProtectionRule.Verdict.REJECTED, "no")  # its answer task never ran
    failed.note_error("gave up: GitHub answered 404")
    assert protection.unanswered() == []  # within the grace period: the task may still run
    past = timezone.now() - timedelta(seconds=settings.GANTRY_RECONCILE_GRACE_SECONDS + 1)
    ProtectionRule.objects.update(decided_at=past)
    assert protection.unanswered() == [lost.pk]
    in_process_broker.conf.task_always_eager = True  # the answer it enqueues runs at once
    try:
        sweep_protection_rules.apply()
    finally:
        in_process_broker.conf.task_always_eager = False
    lost.refresh_from_db()
    assert lost.answered_at is not None and protection.unanswered() == []
    assert [r["state"] for r in gh.github.reviews] == ["rejected"]
