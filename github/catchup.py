"""Catch-up: find the builds Gantry missed while it was down or unreachable, and take them in.

GitHub does not retry a failed webhook delivery by itself. Two ways back, each run on beat:

- **a GitHub App** (GitHub's documented recipe for failed deliveries): list the App's hook
  deliveries since the last good run (`GET /app/hook/deliveries`), and ask GitHub to redeliver
  (`POST /app/hook/deliveries/{id}/attempts`) each delivery id that no attempt delivered and that
  Gantry has not settled. The redelivery keeps the delivery id, and the webhook decides it again.
- **any repository** (a token or an App): list the recent successful runs of each routed branch
  and allowed event (`GET /repos/{owner}/{repo}/actions/runs`), and take in each run whose
  completion Gantry never received, as a delivery of its own (`catch-up-<run id>-<attempt>`).
  Its unique id makes it one delivery however often catch-up sees the run, and the release's
  own key (repository, commit, component) makes it one release even if the real delivery
  arrives later too.

A run that fails records the error on its `CatchUp` row and starts again from the last good
run next time.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from environments.models import Repository

from .client import GitHub, GitHubError, configured, configured_app
from .intake import Routes, decide, store
from .models import CatchUp, WebhookDelivery

log = logging.getLogger(__name__)
OVERLAP = timedelta(minutes=10)  # each run looks a little before the last good one
EVENTS = {"workflow_run", "deployment_protection_rule"}


def _since(state: CatchUp, now: datetime) -> datetime:
    if state.last_ok_at:
        return state.last_ok_at - OVERLAP
    return now - timedelta(hours=settings.GANTRY_GITHUB_CATCHUP_HOURS)


def _parse_time(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (AttributeError, ValueError):
        return None


def catch_up(client: GitHub | None = None, now: datetime | None = None) -> int:
    """One catch-up run over every source; returns how many missed builds it took in or asked
    GitHub to redeliver. With an App, each repository is read through the installation its
    deliveries came from (else GANTRY_GITHUB_APP_INSTALLATION_ID)."""
    if not configured():
        return 0
    now = now or timezone.now()
    found = 0
    if configured_app() is not None:
        state = CatchUp.objects.get_or_create(source="app")[0]
        found += _run(state, now, client, None, _app)
    routes = Routes.read()
    for repository in Repository.objects.all():
        state = CatchUp.objects.get_or_create(source=f"repo:{repository.full_name}")[0]
        installation = known_installation(repository.full_name)
        found += _run(state, now, client, installation, _workflow_runs, repository, routes)
    return found


def known_installation(repository: str) -> int | None:
    """The App installation the repository's latest delivery came through, if any."""
    return (
        WebhookDelivery.objects.filter(repository__iexact=repository, installation_id__isnull=False)
        .order_by("-received_at", "-id")
        .values_list("installation_id", flat=True)
        .first()
    )


def _run(state: CatchUp, now: datetime, client, installation, step, *args) -> int:
    since = _since(state, now)
    try:
        github = client or GitHub.from_settings(installation_id=installation)
        try:
            found = step(github, *args, since)
        finally:
            if client is None:
                github.close()
    except (GitHubError, ImproperlyConfigured) as exc:
        log.warning("GitHub catch-up for %s failed: %s", state.source, exc)
        CatchUp.objects.filter(pk=state.pk).update(last_run_at=now, last_error=str(exc)[:2000])
        return 0
    CatchUp.objects.filter(pk=state.pk).update(
        last_run_at=now, last_ok_at=now, last_error="", found=state.found + found
    )
    return found


def _app(github: GitHub, since: datetime) -> int:
    """Redeliver the App's failed deliveries since `since` that Gantry has not settled."""
    attempts: dict[str, list[dict]] = {}
    for delivery in github.hook_deliveries():
        delivered = _parse_time(delivery.get("delivered_at", ""))
        if delivered is not None and delivered < since:
            break  # newest first: the rest is older still
        if delivery.get("event") in EVENTS and delivery.get("guid"):
            attempts.setdefault(delivery["guid"], []).append(delivery)
    failed = {
        guid: tries[0]  # the newest attempt
        for guid, tries in attempts.items()
        if not any(200 <= (t.get("status_code") or 0) < 300 for t in tries)
    }
    settled = set(
        WebhookDelivery.objects.filter(guid__in=list(failed))
        .exclude(outcome__in=WebhookDelivery.RETRYABLE)
        .values_list("guid", flat=True)
    )
    asked = 0
    for guid, newest in failed.items():
        if guid not in settled:
            github.redeliver(newest["id"])
            asked += 1
    return asked


def _workflow_runs(github: GitHub, repository: Repository, routes: Routes, since: datetime) -> int:
    """Take in the successful runs of routed branches whose completion Gantry never received."""
    branches = [
        environment.branch
        for environment in routes.environments.values()
        if any(c.name in repository.components for c in routes.components.get(environment.pk, []))
    ]
    created = f">={since.strftime('%Y-%m-%dT%H:%M:%SZ')}"
    runs = {}
    for branch in branches:
        for event in repository.events or ["push"]:
            for run in github.workflow_runs(
                repository.full_name, branch=branch, event=event, status="success", created=created
            ):
                if isinstance(run.get("id"), int) and repository.accepts_workflow(run.get("name")):
                    runs[run["id"]] = run
    received = set(
        WebhookDelivery.objects.filter(run_id__in=list(runs), action="completed").values_list(
            "run_id", flat=True
        )
    )
    taken = 0
    for run_id, run in runs.items():
        if run_id in received:
            continue
        payload = {
            "action": "completed",
            "workflow_run": run,
            "repository": run.get("repository") or {"full_name": repository.full_name},
            "sender": run.get("triggering_actor") or run.get("actor") or {},
        }
        decision = decide("workflow_run", payload, routes)
        guid = f"catch-up-{run_id}-{run.get('run_attempt') or 1}"
        if store(guid, "workflow_run", decision, source=WebhookDelivery.Source.CATCH_UP):
            taken += 1
    return taken
