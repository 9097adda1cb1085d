"""The GitHub webhook: check the signature, record the delivery, turn good builds into work.

The view answers within milliseconds: it only checks, decides and records. Each delivery is
decided first and then written once, in one INSERT whose unique `guid` answers a repeated
delivery (even two arriving at once), so a crash half-way writes nothing and GitHub may send it
again. Resolving image digests (a registry call) and creating releases happen in the
`resolve_delivery` task. A `deployment_protection_rule` request is recorded for Gantry's approval
(github_protection).
"""

import json

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import IntegrityError, transaction
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from . import github_protection
from .github import PayloadError, ProtectionRuleRequest, WorkflowRun, signature_ok
from .intake import current_routes, triage
from .models import WebhookDelivery
from .tasks import enqueue_delivery

Outcome = WebhookDelivery.Outcome


def _answer(delivery, status):
    return JsonResponse(
        {"delivery": delivery.guid, "outcome": delivery.outcome, "detail": delivery.detail},
        status=status,
    )


def _duplicate(guid):
    return JsonResponse({"delivery": guid, "outcome": "duplicate"}, status=200)


@csrf_exempt
@login_not_required
@require_POST
def github_webhook(request):
    body = request.body
    guid = request.headers.get("X-GitHub-Delivery", "")[:64]
    event = request.headers.get("X-GitHub-Event", "")[:64]
    remote_addr = request.META.get("REMOTE_ADDR")
    secret = settings.GANTRY_GITHUB_WEBHOOK_SECRET
    if not signature_ok(secret, body, request.headers.get("X-Hub-Signature-256")):
        why = "missing or wrong X-Hub-Signature-256" if secret else "no webhook secret configured"
        WebhookDelivery.objects.create(
            claimed_guid=guid,
            event=event,
            outcome=Outcome.REJECTED,
            detail=why,
            remote_addr=remote_addr,
        )
        return JsonResponse({"error": why}, status=401)
    if not guid:
        return JsonResponse({"error": "missing X-GitHub-Delivery header"}, status=400)
    delivery = WebhookDelivery(guid=guid, event=event, remote_addr=remote_addr)
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # Recursion: nested too deep
        return _record(delivery, 400, Outcome.INVALID, f"body is not JSON: {exc}")
    if event == "ping":
        return _record(delivery, 200, Outcome.PONG, "pong")
    if event == "deployment_protection_rule":
        return _protection_rule(delivery, payload)
    if event != "workflow_run":
        return _record(delivery, 200, Outcome.IGNORED, f"event {event!r} is not handled")
    try:
        run = WorkflowRun.from_payload(payload)
    except PayloadError as exc:
        return _record(delivery, 400, Outcome.INVALID, str(exc))
    delivery.action, delivery.repository = run.action, run.repository
    decision = triage(run, current_routes())
    if decision.ignored:
        return _record(delivery, 200, Outcome.IGNORED, decision.ignored)
    delivery.payload = payload
    names = ", ".join(str(c) for c in decision.components)
    return _record(delivery, 202, Outcome.ACCEPTED, f"resolving images for {names}")


def _record(delivery, status, outcome, detail):
    """Write the decided delivery in one INSERT (an accepted one enqueued after it commits), or
    answer "duplicate" when its id is already there."""
    delivery.outcome, delivery.detail = outcome, detail
    try:
        with transaction.atomic():
            delivery.save(force_insert=True)
            if outcome == Outcome.ACCEPTED:
                enqueue_delivery(delivery.pk)
    except IntegrityError:  # the same delivery again, maybe arriving at the same moment
        return _duplicate(delivery.guid)
    return _answer(delivery, status)


def _protection_rule(delivery, payload):
    """The rule points at its delivery, so the row is inserted first, in the rule's transaction:
    both are written or neither."""
    try:
        ask = ProtectionRuleRequest.from_payload(payload)
    except PayloadError as exc:
        return _record(delivery, 400, Outcome.INVALID, str(exc))
    with transaction.atomic():
        delivery.outcome = Outcome.INVALID  # until github_protection.record decides
        try:
            with transaction.atomic():
                delivery.save(force_insert=True)
        except IntegrityError:
            return _duplicate(delivery.guid)
        github_protection.record(delivery, ask, payload)
    status = 202 if delivery.outcome == Outcome.RECORDED else 200
    return _answer(delivery, status)
