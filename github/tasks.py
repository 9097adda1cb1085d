"""GitHub's Celery tasks: resolve accepted deliveries, report statuses, answer protection rules.
They take ids, are safe to run twice, and are enqueued only after commit."""

from celery import shared_task
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, transaction


@shared_task(
    acks_late=True,
    ignore_result=True,
    autoretry_for=(DatabaseError,),
    retry_backoff=True,
    retry_backoff_max=60,
    max_retries=10,
)
def resolve_delivery(delivery_id: int):
    """Resolve the images of an accepted webhook delivery and create its releases; look again
    later while an image is not pushed yet or the registry fails for now (intake's rules)."""
    from django.utils import timezone

    from .intake import resolve_delivery as resolve

    delivery = resolve(delivery_id)
    if delivery.outcome == delivery.Outcome.ACCEPTED and delivery.next_resolve_at:
        wait = (delivery.next_resolve_at - timezone.now()).total_seconds()
        resolve_delivery.apply_async((delivery_id,), countdown=max(0.0, wait))


def enqueue_delivery(delivery_id: int):
    # robust: the row is committed and the reconciler finds it if the broker is away now.
    transaction.on_commit(lambda: resolve_delivery.delay(delivery_id), robust=True)


@shared_task(acks_late=True, ignore_result=True)
def reconcile_deliveries():
    """Beat: pick up accepted deliveries whose next look is overdue (a lost message, a dead
    worker), so nothing answered "accepted" is left behind."""
    from .intake import overdue

    for delivery_id in overdue():
        resolve_delivery.delay(delivery_id)


@shared_task(acks_late=True, ignore_result=True)
def catch_up():
    """Beat: ask GitHub for the builds Gantry missed while it was down or unreachable."""
    from .catchup import catch_up as run

    run()


# --- back to GitHub (statuses, protection) -------------------------------------------
# A failing GitHub must never fail a deployment: these retry with backoff on 429/5xx/network,
# then give up quietly, leaving the error on the row for people to see.
GITHUB_MAX_RETRIES = 6


def _retry_github(task, exc, give_up):
    from celery.utils.time import get_exponential_backoff_interval

    from .client import GitHubError

    if (
        isinstance(exc, ImproperlyConfigured)
        or (isinstance(exc, GitHubError) and not exc.retryable)
        or (task.request.retries >= task.max_retries)
    ):
        give_up(exc)
        return
    wait = getattr(exc, "retry_after", None) or get_exponential_backoff_interval(
        factor=5, retries=task.request.retries, maximum=600, full_jitter=True
    )
    # A documented wait (Retry-After, the rate limit's reset) is honoured in full.
    raise task.retry(countdown=max(1, wait), exc=exc)


@shared_task(bind=True, acks_late=True, ignore_result=True, max_retries=GITHUB_MAX_RETRIES)
def report_to_github(self, deployment_id: int):
    """Send the GitHub deployment statuses a deployment owes, oldest first."""
    from . import statuses
    from .client import GitHubError

    try:
        statuses.report(deployment_id)
    except (GitHubError, statuses.Busy, DatabaseError, ImproperlyConfigured) as exc:
        _retry_github(self, exc, lambda error: statuses.give_up(deployment_id, error))


def enqueue_github_report(deployment_id: int):
    # robust: a broker that is away must not turn a committed state change into an error.
    transaction.on_commit(lambda: report_to_github.delay(deployment_id), robust=True)


@shared_task(bind=True, acks_late=True, ignore_result=True, max_retries=GITHUB_MAX_RETRIES)
def answer_protection_rule(self, rule_id: int):
    """Send Gantry's verdict on a GitHub deployment protection rule, once."""
    from . import protection
    from .client import GitHubError

    try:
        protection.answer(rule_id)
    except (GitHubError, protection.Busy, DatabaseError, ImproperlyConfigured) as exc:
        _retry_github(self, exc, lambda error: protection.give_up(rule_id, error))


def enqueue_protection_answer(rule_id: int):
    transaction.on_commit(lambda: answer_protection_rule.delay(rule_id), robust=True)


@shared_task(acks_late=True, ignore_result=True)
def sweep_protection_rules():
    """Beat: reject the rules no release reached in time, report deadlocks seen since, and send
    again the verdicts whose answer message was lost."""
    from . import protection

    owed = protection.expire_waiting() + protection.report_problems() + protection.unanswered()
    for rule_id in dict.fromkeys(owed):
        answer_protection_rule.delay(rule_id)  # sends the verdict, or the status report
