"""GitHub deployment statuses: which Gantry states GitHub hears about, as what, and sending them.

With GANTRY_GITHUB_DEPLOYMENT_STATUSES on and GitHub configured, a Gantry deployment shows on
GitHub from the moment it is queued to run (created queued, or approved). Deployments rejected,
superseded or cancelled while they waited for approval never ran and never appear there.

    Gantry                          GitHub status
    queued                          queued
    promoting, rolling_out,         in_progress
    verifying, rolling_back
    succeeded                       success
    failed                          error     (Gantry could not finish; may need a person)
    rolled_back                     failure   (health failed; the old version serves again)
                                    inactive  (after a cancel, or a rollback of a success)
    cancelled, superseded           inactive

Each state change writes a GitHubStatus row in its own transaction (`on_state_changed`); the
`report_to_github` task then sends whatever is owed, oldest first (`report`).
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import DatabaseError, transaction

from deployments.models import Deployment

from .client import GitHub, configured
from .models import GitHubDeployment, GitHubStatus
from .outbox import LEASE_SECONDS, leased

log = logging.getLogger(__name__)
S = Deployment.State
G = GitHubStatus.State

GITHUB_STATE = {
    S.QUEUED: G.QUEUED,
    S.PROMOTING: G.IN_PROGRESS,
    S.ROLLING_OUT: G.IN_PROGRESS,
    S.VERIFYING: G.IN_PROGRESS,
    S.ROLLING_BACK: G.IN_PROGRESS,
    S.SUCCEEDED: G.SUCCESS,
    S.FAILED: G.ERROR,
    S.ROLLED_BACK: G.FAILURE,
    S.CANCELLED: G.INACTIVE,
    S.SUPERSEDED: G.INACTIVE,
}
DESCRIPTION = {
    S.QUEUED: "Queued in Gantry",
    S.PROMOTING: "Promoting the image",
    S.ROLLING_OUT: "Rolling out",
    S.VERIFYING: "Verifying health",
    S.ROLLING_BACK: "Rolling back",
    S.SUCCEEDED: "Deployed",
    S.FAILED: "Failed",
    S.ROLLED_BACK: "Rolled back",
    S.CANCELLED: "Cancelled",
    S.SUPERSEDED: "Superseded",
}


class Busy(Exception):
    """Another worker is sending this deployment's statuses; it will send ours too."""


def enabled() -> bool:
    return settings.GANTRY_GITHUB_DEPLOYMENT_STATUSES and configured()


def status_for(deployment: Deployment, before) -> tuple[str, str] | None:
    """(GitHub state, description) for the state `deployment` just reached, or None."""
    to = deployment.state
    if to not in GITHUB_STATE:
        return None
    if before in (None, S.PENDING_APPROVAL) and to != S.QUEUED:
        return None  # it never ran: rejected, superseded or cancelled while waiting
    state = GITHUB_STATE[to]
    if to == S.ROLLED_BACK and (
        deployment.cancel_requested
        or GitHubStatus.objects.filter(
            link__deployment=deployment, gantry_state=S.SUCCEEDED
        ).exists()
    ):
        state = G.INACTIVE  # taken back on purpose, not a failure of the release
    return state, _description(deployment)


def _description(deployment: Deployment) -> str:
    """What happened, in GitHub's 140 characters: the state, and Gantry's reason where it adds."""
    to, reason = deployment.state, deployment.reason
    if to == S.ROLLING_OUT:
        return f"Rolling out ({deployment.get_strategy_display().lower()})"
    label = DESCRIPTION[to]
    if not reason or to in (S.PROMOTING, S.VERIFYING, S.SUCCEEDED):
        return label
    if reason.lower().startswith(label.split()[0].lower()):
        return reason[:1].upper() + reason[1:]  # "cancelled by ann" says it already
    return f"{label}: {reason}"


def on_state_changed(sender, deployment, before, to, **kwargs):
    """Owe GitHub a status for this change, and send it once the change commits. Errors here are
    logged and swallowed: reporting to GitHub must never stop a deployment."""
    if not enabled():
        return
    try:
        with transaction.atomic():  # a savepoint: a failure here leaves the transition intact
            found = status_for(deployment, before)
            if found is None:
                return
            GitHubDeployment.owe(deployment, *found)
    except DatabaseError:
        log.exception("deployment %s: could not queue a GitHub status", deployment.pk)
        return
    from .tasks import enqueue_github_report

    enqueue_github_report(deployment.pk)


def page_url(obj) -> str:
    base = settings.GANTRY_BASE_URL
    return f"{base}{obj.get_absolute_url()}" if base else ""


def report(deployment_id: int, client: GitHub | None = None) -> int:
    """Send every status owed for the deployment, in order; returns how many were sent.
    Raises Busy while another worker sends them, GitHubError when GitHub fails."""
    link = (
        GitHubDeployment.objects.select_related("deployment__release", "deployment__component")
        .filter(deployment_id=deployment_id)
        .first()
    )
    if link is None or not configured():
        return 0
    sent = 0
    # Re-check after releasing the lease: a status owed meanwhile was left to us by its task.
    while link.owed().exists():
        busy = Busy(f"deployment {deployment_id}: another worker is reporting to GitHub")
        with leased(link, busy, client, link.installation_id()) as github:
            sent += _send_owed(github, link)
    if sent and link.last_error:
        link.note_error("")
    return sent


def _send_owed(github: GitHub, link: GitHubDeployment) -> int:
    sent = 0
    for status in link.owed():
        link.renew(LEASE_SECONDS)
        if link.github_id is None:
            link.created_on_github(_github_deployment(github, link))
        deployment = link.deployment
        answer = github.create_status(
            link.repository,
            link.github_id,
            state=status.state,
            description=status.description,
            log_url=page_url(deployment),
            environment_url=page_url(deployment.component.environment),
        )
        status.posted((answer or {}).get("id"))
        sent += 1
    return sent


def _github_deployment(github: GitHub, link: GitHubDeployment) -> int:
    """GitHub's id for this Gantry deployment: found again if an earlier run created it but died
    before saving the id, else created now."""
    deployment = link.deployment
    release = deployment.release
    for found in github.find_deployments(
        link.repository, sha=release.sha, environment=link.environment
    ):
        payload = found.get("payload")
        if isinstance(payload, dict) and payload.get("gantry_deployment") == deployment.pk:
            return found["id"]
    created = github.create_deployment(
        link.repository,
        ref=release.sha,
        environment=link.environment,
        description=f"Gantry deployment #{deployment.pk}: {release}",
        payload={
            "gantry_deployment": deployment.pk,
            "component": str(deployment.component),
            "digest": release.digest,
        },
        production=deployment.component.environment.requires_approval,
    )
    return created["id"]


def give_up(deployment_id: int, exc: Exception) -> None:
    """Stop retrying: the statuses stay owed and go out with the next state change's report."""
    log.warning(
        "deployment %s: GitHub statuses not sent, giving up for now: %s", deployment_id, exc
    )
    for link in GitHubDeployment.objects.filter(deployment_id=deployment_id):
        link.note_error(f"gave up: {exc}")
