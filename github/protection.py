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

Two ways a rule could otherwise wait silently for GitHub's 30 days:

- no release of the commit ever reaches Gantry (the build failed, or was never routed): after
  GANTRY_PROTECTION_RULE_TIMEOUT seconds with no deployment of the commit in the environment,
  `expire_waiting` rejects it, saying why. A rule whose deployment waits for people keeps waiting.
- the rule's job is inside the build workflow itself (a deadlock: Gantry releases a build only
  once its run completes, and the run cannot complete while the job waits): `problem` says so,
  on the rule and on its delivery, and `report_problem` tells GitHub once, as a status report
  (a comment on the waiting job, no verdict).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import Q
from django.utils import timezone

from audit.models import AuditEvent
from deployments.models import Approval, Deployment
from environments.models import Environment

from .client import GitHub, configured
from .models import ProtectionRule, WebhookDelivery
from .outbox import leased
from .payloads import ProtectionRuleRequest

log = logging.getLogger(__name__)
S = Deployment.State
Verdict = ProtectionRule.Verdict
Outcome = WebhookDelivery.Outcome
DEFAULT_TIMEOUT = 3600  # seconds: GANTRY_PROTECTION_RULE_TIMEOUT
COMMENT_MAX = 1024  # GitHub's limit on a protection-rule comment


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
        run_id=ask.run_id,
        installation_id=ask.installation_id,
    )
    AuditEvent.record(
        "github.protection_rule.request",
        actor=f"github:{ask.sender}" if ask.sender else None,
        obj=rule,
        message=f"{ask.repository}@{ask.sha[:7]} waits for Gantry in {ask.environment}",
        data={
            "event": ask.event,
            "github_deployment": ask.deployment_id,
            "run_id": ask.run_id,
        },
    )
    delivery.payload = payload
    _finish(delivery, Outcome.RECORDED, evaluate(rule))
    # The task looks again after this commits: a decision taken meanwhile did not see this rule.
    # It also sends the status report of a problem found here (answer → report_problem).
    from .tasks import enqueue_protection_answer

    enqueue_protection_answer(rule.pk)


def _finish(delivery, outcome, detail) -> None:
    delivery.outcome, delivery.detail = outcome, detail
    delivery.save()


def matching(rule: ProtectionRule):
    """The deployments of the rule's commit in its environment, newest first. GitHub treats
    repository names case-insensitively, and so does this."""
    return (
        Deployment.objects.filter(
            release__repository__iexact=rule.repository,
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
    """Link the rule to its deployment and settle it if Gantry has decided; note or clear its
    problem; says where it is (the delivery's detail)."""
    deployments = list(matching(rule))
    if deployments:
        rule.link(deployments[0])
    found = verdict(deployments)
    if found is None:
        problem = "" if deployments else deadlock(rule)
        if problem:
            detail = problem
        elif not deployments:
            detail = f"waiting for the release of {rule.repository}@{rule.sha[:7]}"
        else:
            detail = f"waiting for approval of deployment #{deployments[0].pk}"
        _note_problem(rule, problem, detail)
        return detail
    _settle(rule, *found)
    return f"{rule.verdict} in Gantry"


def _settle(rule: ProtectionRule, verdict_: str, comment: str) -> bool:
    """Decide the rule (once, audited) and clear its problem."""
    settled = rule.decide(verdict_, comment)
    if settled:
        _note_problem(rule, "", f"{rule.verdict} in Gantry")
    return settled


def _note_problem(rule: ProtectionRule, problem: str, detail: str) -> None:
    """Keep `problem` on the rule; when it changes, the rule's delivery shows `detail` (the
    Deliveries page shows a delivery's detail)."""
    if rule.problem == problem:
        return
    rule.problem = problem
    ProtectionRule.objects.filter(pk=rule.pk).update(problem=problem)
    WebhookDelivery.objects.filter(pk=rule.delivery_id).update(detail=detail)


def deadlock(rule: ProtectionRule) -> str:
    """Why the rule can never be settled, when its job is in the very build run Gantry waits for
    to complete (a non-completed `workflow_run` delivery of its run, none completed, and no
    deployment of its commit yet); "" otherwise."""
    if rule.run_id is None:
        return ""
    runs = WebhookDelivery.objects.filter(event="workflow_run", run_id=rule.run_id)
    if runs.filter(action="completed").exists():
        return ""
    seen = runs.exclude(action="completed").order_by("-received_at", "-id").first()
    if seen is None:
        return ""
    payload = seen.payload if isinstance(seen.payload, dict) else {}
    run = payload.get("workflow_run") if isinstance(payload.get("workflow_run"), dict) else {}
    name = run.get("name") if isinstance(run.get("name"), str) else ""
    run_name = (
        f"workflow run {rule.run_id} ({name[:100]})" if name else f"workflow run {rule.run_id}"
    )
    text = (
        f"This job is in {run_name}, the build itself. Gantry releases a build only once its run "
        f"completes, so this job waits forever: move the deploy job to a separate workflow "
        f"triggered on push (docs/github-actions.md)."
    )
    return text[:COMMENT_MAX]


def on_state_changed(sender, deployment, before, to, **kwargs):
    """A deployment of a commit GitHub waits for was created or moved: settle its rules if it
    can be. Errors are logged and swallowed; they must never stop the deployment."""
    release = deployment.release
    waiting = ProtectionRule.objects.filter(
        verdict=Verdict.WAITING,
        repository__iexact=release.repository,
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


def answer(rule_id: int, client: GitHub | None = None) -> bool:
    """Settle the rule if Gantry has decided, then send the verdict to GitHub's callback URL,
    once. True when this call sent it. A rule still waiting with a problem GitHub has not heard
    of gets its status report instead (`report_problem`). Raises Busy while another worker sends
    it, GitHubError when GitHub fails."""
    with transaction.atomic():
        rule = ProtectionRule.objects.select_for_update().filter(pk=rule_id).first()
        if rule is not None and rule.verdict == Verdict.WAITING:
            evaluate(rule)
    if rule is not None and rule.verdict == Verdict.WAITING:
        if rule.problem and rule.reported_at is None:
            report_problem(rule_id, client)
        return False
    if rule is None or rule.answered_at:
        return False
    return _send_once(rule, client, lambda r: not r.answered_at, _send_verdict)


def _send_verdict(github: GitHub, rule: ProtectionRule) -> None:
    github.review_protection_rule(
        rule.callback_url,
        environment=rule.github_environment,
        state=rule.verdict,
        comment=rule.comment,
    )
    rule.answered()


def _send_once(rule: ProtectionRule, client: GitHub | None, owed, send) -> bool:
    """Send what `rule` owes GitHub under its lease, unless it is no longer `owed` once the
    lease is held. True when this call sent it. Raises Busy while another worker holds the
    lease, GitHubError (noted on the rule) when GitHub fails."""
    if not configured():
        rule.note_error("GitHub is not configured (GANTRY_GITHUB_TOKEN or App): nothing sent")
        return False
    busy = Busy(f"protection rule {rule.pk} is being answered by another worker")
    with leased(rule, busy, client, rule.installation_id) as github:
        rule.refresh_from_db()
        if not owed(rule):
            return False
        send(github, rule)
        return True


def give_up(rule_id: int, exc: Exception) -> None:
    log.warning("protection rule %s: GitHub not answered, giving up: %s", rule_id, exc)
    for rule in ProtectionRule.objects.filter(pk=rule_id):
        rule.note_error(f"gave up: {exc}")


def report_problem(rule_id: int, client: GitHub | None = None) -> bool:
    """Tell GitHub why a waiting rule cannot be settled: a status report on the waiting job (its
    comment, no verdict), once. True when this call sent it. Raises Busy while another worker
    answers the rule, GitHubError when GitHub fails."""
    rule = ProtectionRule.objects.filter(pk=rule_id).first()
    if not _report_owed(rule):
        return False
    return _send_once(rule, client, _report_owed, _send_report)


def _send_report(github: GitHub, rule: ProtectionRule) -> None:
    github.report_protection_rule(
        rule.callback_url, environment=rule.github_environment, comment=rule.problem[:COMMENT_MAX]
    )
    rule.reported_at, rule.last_error = timezone.now(), ""
    ProtectionRule.objects.filter(pk=rule.pk).update(reported_at=rule.reported_at, last_error="")
    AuditEvent.record(
        "github.protection_rule.reported",
        obj=rule,
        message=rule.problem,
        data={"run_id": rule.run_id, "environment": rule.github_environment},
    )


def _report_owed(rule: ProtectionRule | None) -> bool:
    return (
        rule is not None
        and rule.verdict == Verdict.WAITING
        and bool(rule.problem)
        and rule.reported_at is None
    )


def report_problems() -> list[int]:
    """Look again at every waiting rule that has no deployment yet (a build run seen after the
    rule was recorded may show a deadlock now); the ids of rules whose problem GitHub has not been
    told of, for `report_problem` (or `answer`, which sends it)."""
    owed = []
    waiting = ProtectionRule.objects.filter(
        verdict=Verdict.WAITING, reported_at__isnull=True, deployment__isnull=True
    )
    for rule_id in waiting.order_by("id").values_list("pk", flat=True):
        with transaction.atomic():
            rule = ProtectionRule.objects.select_for_update().filter(pk=rule_id).first()
            if rule is None or rule.verdict != Verdict.WAITING:
                continue
            evaluate(rule)
        if _report_owed(rule):
            owed.append(rule.pk)
    return owed


def timeout_seconds() -> int:
    return int(getattr(settings, "GANTRY_PROTECTION_RULE_TIMEOUT", DEFAULT_TIMEOUT))


def expire_waiting(now: datetime | None = None) -> list[int]:
    """Reject each rule still waiting after GANTRY_PROTECTION_RULE_TIMEOUT seconds for which
    Gantry has no deployment of the commit in the environment at all (it never will: the build
    failed, was not routed, or is the rule's own run), so the job fails now, saying why, rather
    than after GitHub's 30 days. A rule whose deployment waits for people keeps waiting; one
    Gantry can settle meanwhile is settled as usual. The ids of rules to answer."""
    now = now or timezone.now()
    timeout = timeout_seconds()
    stale = ProtectionRule.objects.filter(
        verdict=Verdict.WAITING, created_at__lt=now - timedelta(seconds=timeout)
    ).order_by("created_at", "id")
    settled = []
    for rule_id in stale.values_list("pk", flat=True):
        with transaction.atomic():
            rule = ProtectionRule.objects.select_for_update().filter(pk=rule_id).first()
            if rule is None or rule.verdict != Verdict.WAITING:
                continue
            evaluate(rule)
            if rule.verdict == Verdict.WAITING and not matching(rule).exists():
                _settle(rule, Verdict.REJECTED, _expiry_comment(rule, timeout))
        if rule.verdict != Verdict.WAITING:
            settled.append(rule.pk)
    return settled


def unanswered(now: datetime | None = None) -> list[int]:
    """Rules Gantry settled longer ago than the reconcile grace whose answer was never tried:
    the answer task's message was lost. The sweep sends them again. One whose sending failed
    keeps GitHub's error for people to see and is not sent again by itself."""
    now = now or timezone.now()
    late = now - timedelta(seconds=settings.GANTRY_RECONCILE_GRACE_SECONDS)
    return list(
        ProtectionRule.objects.exclude(verdict=Verdict.WAITING)
        .filter(answered_at__isnull=True, decided_at__lt=late, last_error="")
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .values_list("pk", flat=True)[:200]
    )


def _expiry_comment(rule: ProtectionRule, timeout: int) -> str:
    text = (
        f"no release of {rule.repository}@{rule.sha[:7]} reached Gantry within "
        f"{_duration(timeout)}; rejected rather than left waiting for GitHub's 30 days. "
        "Re-run this job once Gantry has the release."
    )
    if rule.problem:
        text += f" {rule.problem}"
    return text[:COMMENT_MAX]


def _duration(seconds: int) -> str:
    """3600 → "60 min", 86400 → "24 h", 90 → "90 s"."""
    if seconds % 60:
        return f"{seconds} s"
    minutes = seconds // 60
    return f"{minutes // 60} h" if minutes > 120 and minutes % 60 == 0 else f"{minutes} min"
