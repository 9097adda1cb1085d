"""The deployment engine: one small, idempotent step per call.

`advance(id)` takes the deployment's step lease, looks at its state, runs the step for that state
and says when to come back. A step reads what earlier runs recorded on the row (build id,
template, operations) and picks up from there, so running it twice, or after a worker died
half-way, changes nothing that matters. The Celery task around it only schedules the next call.

    queued → promoting → rolling_out → verifying → succeeded
                              ↘            ↘
                               rolling_back → rolled_back      (failed: needs a person)
"""

from __future__ import annotations

import logging
import random
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from gcp.adapter import GcpAdapter
from gcp.errors import GcpError, describe, is_retryable, refusal

from . import promotion, verification
from .models import Deployment
from .steps import NOW, STOP, Outcome, Step, StepFailed, later
from .strategies import strategy_for

log = logging.getLogger(__name__)
S = Deployment.State


# A deployment held by a deploy freeze looks again at least this often (seconds), so a window
# shortened or disabled in the admin lets it go without waiting for the old end.
FREEZE_RECHECK = 300.0
# A paused deployment looks again this often; resuming it enqueues a step at once.
PAUSE_RECHECK = 300.0


# --- leases -------------------------------------------------------------------------------------


def claim(deployment_id: int, owner: str) -> bool:
    """Take the step lease if nobody holds a live one. One UPDATE: atomic on every database."""
    now = timezone.now()
    until = now + timedelta(seconds=settings.GANTRY_STEP_LEASE_SECONDS)
    free = Q(lease_until__isnull=True) | Q(lease_until__lt=now) | Q(lease_owner=owner)
    return bool(
        Deployment.objects.filter(free, pk=deployment_id).update(
            lease_owner=owner, lease_until=until
        )
    )


def release(deployment_id: int, owner: str, next_check_at=None):
    Deployment.objects.filter(pk=deployment_id, lease_owner=owner).update(
        lease_owner="", lease_until=None, next_check_at=next_check_at
    )


# --- the step table -----------------------------------------------------------------------------


def _steps():
    def roll_out(step):
        return strategy_for(step).roll_out()

    def roll_back(step):
        return strategy_for(step).roll_back()

    return {
        S.PROMOTING: promotion.promote,
        S.ROLLING_OUT: roll_out,
        S.VERIFYING: verification.verify,
        S.ROLLING_BACK: roll_back,
    }


def advance(deployment_id: int, gcp=None, owner: str | None = None) -> Outcome:
    """Run the deployment's next step. Returns when to call again (Outcome.delay)."""
    owner = owner or uuid.uuid4().hex
    deployment = Deployment.objects.filter(pk=deployment_id).first()
    if deployment is None or deployment.is_final or deployment.state == S.PENDING_APPROVAL:
        return STOP
    if not claim(deployment_id, owner):
        held = Deployment.objects.values_list("lease_until", flat=True).get(pk=deployment_id)
        wait = max((held - timezone.now()).total_seconds(), 1.0) if held else 1.0
        return later(wait)
    outcome = STOP
    try:
        deployment = Deployment.objects.select_related("release", "component__environment").get(
            pk=deployment_id
        )
        if deployment.state == S.QUEUED and (hold := deployment.freeze_hold()):
            _, until = hold
            outcome = later(min(max((until - timezone.now()).total_seconds(), 1.0), FREEZE_RECHECK))
            return outcome
        if deployment.state == S.QUEUED and not deployment.try_start():
            return STOP  # the holder's end enqueues the next in line
        if deployment.is_final:
            return STOP
        outcome = _run(Step(deployment, gcp or GcpAdapter.from_settings()))
    finally:
        next_at = (
            timezone.now() + timedelta(seconds=outcome.delay) if not outcome.finished else None
        )
        release(deployment_id, owner, next_at)
        deployment.refresh_from_db()
        if deployment.is_final:
            _start_next(deployment)
    return outcome


def _run(step: Step) -> Outcome:
    deployment = step.deployment
    running = deployment.state in (S.PROMOTING, S.ROLLING_OUT, S.VERIFYING)
    if deployment.cancel_requested and running:
        if deployment.stoppable:
            return _cancel(step)
        if not deployment.progress.get("cancel_too_late"):
            step.save(
                "too late to cancel: the old colour is being retired, so this deployment finishes",
                progress={**deployment.progress, "cancel_too_late": True},
            )
    if deployment.paused_at and running:
        step.waiting(f"paused by {deployment.paused_by}: resume, promote or abort it")
        return later(PAUSE_RECHECK)
    try:
        outcome = _steps()[deployment.state](step)
    except StepFailed as exc:
        return fail(step, str(exc))
    except Exception as exc:
        if is_retryable(exc):
            return _retry(step, exc)
        if isinstance(exc, GcpError):
            return fail(step, str(exc))
        if why := refusal(exc):  # a quota or a permission: waiting will not help
            return fail(step, why)
        log.exception("deployment %s: unexpected error in %s", deployment.pk, deployment.state)
        return fail(step, f"unexpected error: {type(exc).__name__}: {exc}")
    if deployment.retries and not deployment.is_final:
        step.save(retries=0)  # the limit counts failures in a row, not in a whole state
    return outcome


def _retry(step: Step, exc) -> Outcome:
    """Transient GCP trouble (throttling: 429 or 403 rateLimitExceeded; 5xx; network): back off
    with jitter and try the same step again. The step's request ids stay the same, so a call
    that did reach GCP is not done twice."""
    deployment = step.deployment
    attempt = deployment.retries + 1
    if attempt > settings.GANTRY_MAX_RETRIES:
        return fail(
            step, f"gave up after {settings.GANTRY_MAX_RETRIES} retries: {describe(exc)}"[:1000]
        )
    ceiling = min(settings.GANTRY_ENGINE_POLL_SECONDS * 2 ** (attempt - 1), 300.0)
    delay = round(random.uniform(ceiling / 2, ceiling), 3)
    step.save(
        f"retry {attempt}/{settings.GANTRY_MAX_RETRIES} in {delay:g}s: {describe(exc)}"[:500],
        kind="retry",
        retries=attempt,
    )
    return later(delay)


def fail(step: Step, reason: str) -> Outcome:
    """Where the deployment goes when a step cannot go on."""
    deployment = step.deployment
    step.save(reason, kind="error")
    if deployment.state == S.PROMOTING:
        deployment.transition(S.FAILED, reason=f"promotion failed: {reason}")
        return STOP
    if deployment.state in (S.ROLLING_OUT, S.VERIFYING):
        deployment.transition(S.ROLLING_BACK, reason=reason)
        return NOW
    deployment.transition(S.FAILED, reason=f"rollback failed, needs a person: {reason}")
    return STOP


def _cancel(step: Step) -> Outcome:
    deployment = step.deployment
    if deployment.state == S.PROMOTING:
        deployment.transition(S.CANCELLED, reason="cancelled before anything ran changed")
        return STOP
    deployment.transition(
        S.ROLLING_BACK, reason=f"{deployment.cancel_reason or 'cancelled'}; rolling back"
    )
    return NOW


def _start_next(deployment: Deployment):
    from .actions import enqueue_next

    with transaction.atomic():
        enqueue_next(deployment)


def overdue(grace_seconds: float | None = None) -> list[int]:
    """Unfinished, started deployments nobody is working on although their next step is due."""
    if grace_seconds is None:
        grace_seconds = settings.GANTRY_RECONCILE_GRACE_SECONDS
    now = timezone.now()
    cutoff = now - timedelta(seconds=grace_seconds)
    stuck = (
        Deployment.objects.filter(state__in=Deployment.ACTIVE)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .filter(
            Q(next_check_at__isnull=True, state_changed_at__lt=cutoff) | Q(next_check_at__lt=cutoff)
        )
    )
    waiting = Deployment.objects.filter(state=S.QUEUED, queued_at__lt=cutoff).filter(
        Q(next_check_at__isnull=True) | Q(next_check_at__lt=cutoff)
    )
    queued = [d.pk for d in waiting if d == Deployment.next_queued(d.component_id)]
    return list(stuck.values_list("pk", flat=True)) + queued


def run_to_end(deployment_id: int, gcp=None, max_steps: int = 2000, sleep=None) -> Deployment:
    """Drive a deployment synchronously until it ends (tests, benchmarks, the demo CLI).
    Honours each step's delay through `sleep` (default: time.sleep)."""
    import time

    sleep = sleep or time.sleep
    for _ in range(max_steps):
        outcome = advance(deployment_id, gcp=gcp)
        if outcome.finished:  # ended, or waiting for a person or for the component
            return Deployment.objects.get(pk=deployment_id)
        if outcome.delay:
            sleep(outcome.delay)
    raise RuntimeError(f"deployment {deployment_id} did not end within {max_steps} steps")
