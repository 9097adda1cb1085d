"""Custom deployment protection rules: GitHub asks, people decide in Gantry, GitHub hears back.

A workflow job bound for a GitHub environment that has Gantry's App as a custom protection rule
waits; GitHub sends `deployment_protection_rule` (action `requested`) with a callback URL. Gantry
records it for the Gantry environment of the same name and links it to the deployments of that
repository and commit there, whether they exist yet or arrive later. The verdict comes from those
deployments (newest per component):

    any still waiting for approval                 → keep waiting
    rejected, or superseded/cancelled before start → rejected (with who and why)
    otherwise (queued to run, by approval or none) → approved (with who approved)

It is settled once (`ProtectionRule.decide`) and sent once (`answer`, from a task).
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import DatabaseError, transaction

from audit.models import AuditEvent
from environments.models import Environment

from . import github_api
from .github import ProtectionRuleRequest
from .models import Approval, Deployment, ProtectionRule, WebhookDelivery

log = logging.getLogger(__name__)
S = Deployment.State
Verdict = ProtectionRule.Verdict
Outcome = WebhookDelivery.Outcome
LEASE_SECONDS = 60


class Busy(Exception):
    """Another worker is answering this rule right now."""


def record(delivery: WebhookDelivery, ask: ProtectionRuleRequest, payload: dict) -> None:
    """Turn a signed delivery into a ProtectionRule (or say why not) and settle it if it can be.
    Runs in the webhook's transaction."""
    delivery.action, delivery.repository = ask.action, ask.repository
    if ask.action != "requested":
        return _finish(delivery, Outcome.IGNORED, f"action {ask.action!r} is not handled")
    environment = Environment.objects.filter(name__iexact=ask.environment).first()
    if environment is None:
        return _finish(
            delivery, Outcome.IGNORED, f"environment {ask.environment!r} is not one Gantry knows"
        )
    api = settings.GANTRY_GITHUB_API_URL.rstrip("/")
    if not ask.callback_url.startswith(api + "/"):
        return _finish(
            delivery,
            Outcome.IGNORED,
            f"deployment_callback_url is not on GANTRY_GITHUB_API_URL ({api}); not answering it",
        )
    rule = ProtectionRule.objects.create(
        delivery=delivery,
        repository=ask.repository,
        sha=ask.sha,
        ref=ask.ref,
        environment=environment,
        github_environment=ask.environment,
        callback_url=ask.callback_url,
        github_deployment_id=ask.deployment_id,
    )
    AuditEvent.record(
        "github.protection_rule.request",
        actor=f"github:{ask.sender}" if ask.sender else None,
        obj=rule,
        message=f"{ask.repository}@{ask.sha[:7]} waits for Gantry in {ask.environment}",
        data={"event": ask.event, "github_deployment": ask.deployment_id},
    )
    delivery.payload = payload
    _finish(delivery, Outcome.RECORDED, evaluate(rule))
    # The task looks again after this commits: a decision taken meanwhile did not see this rule.
    from .tasks import enqueue_protection_answer

    enqueue_protection_answer(rule.pk)


def _finish(delivery, outcome, detail) -> None:
    delivery.outcome, delivery.detail = outcome, detail
    delivery.save()


def matching(rule: ProtectionRule):
    return (
        Deployment.objects.filter(
            release__repository=rule.repository,
            release__sha=rule.sha,
            component__environment_id=rule.environment_id,
        )
        .select_related("release", "component__environment")
        .order_by("-created_at", "-id")
    )


def verdict(deployments) -> tuple[str, str] | None:
    """(verdict, comment) from the deployments of one commit in one environment, or None."""
    latest = {}
    for deployment in deployments:  # newest first
        latest.setdefault(deployment.component_id, deployment)
    if not latest or any(d.state == S.PENDING_APPROVAL for d in latest.values()):
        return None
    for deployment in latest.values():
        if deployment.state == S.REJECTED or (
            deployment.state in (S.SUPERSEDED, S.CANCELLED) and deployment.started_at is None
        ):
            return Verdict.REJECTED, _refusal(deployment)
    return Verdict.APPROVED, _approval(list(latest.values()))


def _refusal(deployment: Deployment) -> str:
    rejection = (
        deployment.approvals.filter(decision=Approval.Decision.REJECT).select_related("user").last()
    )
    if rejection:
        text = f"Rejected in Gantry by {rejection.user.get_username()}"
        text += f": {rejection.comment}" if rejection.comment else ""
    else:
        text = f"Not deployed by Gantry: {deployment.reason or deployment.get_state_display()}"
    return _with_link(text, deployment)


def _approval(deployments: list[Deployment]) -> str:
    names = list(
        Approval.objects.filter(deployment__in=deployments, decision=Approval.Decision.APPROVE)
        .order_by("id")
        .values_list("user__username", flat=True)
    )
    if names:
        text = f"Approved in Gantry by {', '.join(dict.fromkeys(names))}"
    else:
        text = f"Queued in Gantry; {deployments[0].component.environment} needs no approval"
    return _with_link(text, deployments[0])


def _with_link(text: str, deployment: Deployment) -> str:
    base = settings.GANTRY_BASE_URL
    return f"{text} ({base}{deployment.get_absolute_url()})" if base else text


def evaluate(rule: ProtectionRule) -> str:
    """Link the rule to its deployment and settle it if Gantry has decided; says where it is."""
    deployments = list(matching(rule))
    if deployments:
        rule.link(deployments[0])
    found = verdict(deployments)
    if found is None:
        if not deployments:
            return f"waiting for the release of {rule.repository}@{rule.sha[:7]}"
        return f"waiting for approval of deployment #{deployments[0].pk}"
    rule.decide(*found)
    return f"{rule.verdict} in Gantry"


def on_state_changed(sender, deployment, before, to, **kwargs):
    """A deployment of a commit GitHub waits for was created or moved: settle its rules if it
    can be. Errors are logged and swallowed; they must never stop the deployment."""
    release = deployment.release
    waiting = ProtectionRule.objects.filter(
        verdict=Verdict.WAITING,
        repository=release.repository,
        sha=release.sha,
        environment_id=deployment.component.environment_id,
    )
    try:
        with transaction.atomic():  # a savepoint: a failure here leaves the transition intact
            settled = [rule.pk for rule in waiting.select_for_update() if _settles(rule)]
    except DatabaseError:
        log.exception("deployment %s: could not settle GitHub protection rules", deployment.pk)
        return
    from .tasks import enqueue_protection_answer

    for rule_id in settled:
        enqueue_protection_answer(rule_id)


def _settles(rule: ProtectionRule) -> bool:
    evaluate(rule)
    return rule.verdict != Verdict.WAITING


def answer(rule_id: int, client: github_api.GitHub | None = None) -> bool:
    """Settle the rule if Gantry has decided, then send the verdict to GitHub's callback URL,
    once. True when this call sent it. Raises Busy while another worker sends it, GitHubError
    when GitHub fails."""
    with transaction.atomic():
        rule = ProtectionRule.objects.select_for_update().filter(pk=rule_id).first()
        if rule is not None and rule.verdict == Verdict.WAITING:
            evaluate(rule)
    if rule is None or rule.answered_at or rule.verdict == Verdict.WAITING:
        return False
    if not github_api.configured():
        rule.note_error("GitHub is not configured (GANTRY_GITHUB_TOKEN or App): nothing sent")
        return False
    if not rule.claim(LEASE_SECONDS):
        raise Busy(f"protection rule {rule_id} is being answered by another worker")
    github = client or github_api.GitHub.from_settings()
    try:
        rule.refresh_from_db()
        if rule.answered_at:
            return False
        github.review_protection_rule(
            rule.callback_url,
            environment=rule.github_environment,
            state=rule.verdict,
            comment=rule.comment,
        )
        rule.answered()
        return True
    except github_api.GitHubError as exc:
        rule.note_error(str(exc))
        raise
    finally:
        rule.release()
        if client is None:
            github.close()


def give_up(rule_id: int, exc: Exception) -> None:
    log.warning("protection rule %s: GitHub not answered, giving up: %s", rule_id, exc)
    for rule in ProtectionRule.objects.filter(pk=rule_id):
        rule.note_error(f"gave up: {exc}")
