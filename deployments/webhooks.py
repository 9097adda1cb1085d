"""The GitHub webhook: check the signature, record the delivery, turn good builds into work.

The view answers within milliseconds: it only checks and records. Resolving image digests
(a registry call) and creating releases happen in the `resolve_delivery` task. A
`deployment_protection_rule` request is recorded for Gantry's approval (github_protection).
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
from .intake import triage
from .models import WebhookDelivery
from .tasks import enqueue_delivery

Outcome = WebhookDelivery.Outcome


def _answer(delivery, status, message):
    return JsonResponse(
        {"delivery": delivery.guid, "outcome": delivery.outcome, "detail": message}, status=status
    )


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
    if WebhookDelivery.objects.filter(guid=guid).exists():
        return JsonResponse({"delivery": guid, "outcome": "duplicate"}, status=200)
    try:
        with transaction.atomic():
            delivery = WebhookDelivery.objects.create(
                guid=guid, event=event, outcome=Outcome.INVALID, remote_addr=remote_addr
            )
    except IntegrityError:  # the same delivery, arriving twice at once
        return JsonResponse({"delivery": guid, "outcome": "duplicate"}, status=200)
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # Recursion: nested too deep
        delivery.finish(Outcome.INVALID, f"body is not JSON: {exc}")
        return _answer(delivery, 400, delivery.detail)
    if event == "ping":
        delivery.finish(Outcome.PONG, "pong")
        return _answer(delivery, 200, "pong")
    if event == "deployment_protection_rule":
        return _protection_rule(delivery, payload)
    if event != "workflow_run":
        delivery.finish(Outcome.IGNORED, f"event {event!r} is not handled")
        return _answer(delivery, 200, delivery.detail)
    try:
        run = WorkflowRun.from_payload(payload)
    except PayloadError as exc:
        delivery.finish(Outcome.INVALID, str(exc))
        return _answer(delivery, 400, str(exc))
    delivery.action, delivery.repository = run.action, run.repository
    decision = triage(run)
    if decision.ignored:
        delivery.outcome, delivery.detail = Outcome.IGNORED, decision.ignored
        delivery.save()
        return _answer(delivery, 200, decision.ignored)
    names = ", ".join(str(c) for c in decision.components)
    with transaction.atomic():
        delivery.outcome, delivery.payload = Outcome.ACCEPTED, payload
        delivery.detail = f"resolving images for {names}"
        delivery.save()
        enqueue_delivery(delivery.pk)
    return _answer(delivery, 202, delivery.detail)


def _protection_rule(delivery, payload):
    try:
        ask = ProtectionRuleRequest.from_payload(payload)
    except PayloadError as exc:
        delivery.finish(Outcome.INVALID, str(exc))
        return _answer(delivery, 400, str(exc))
    with transaction.atomic():
        github_protection.record(delivery, ask, payload)
    status = 202 if delivery.outcome == Outcome.RECORDED else 200
    return _answer(delivery, status, delivery.detail)
