"""The GitHub webhook: check the signature, decide what the delivery is, record it once.

The view answers within milliseconds: it only checks, decides and records (`intake.decide`,
`intake.store`). A delivery is decided first and then written once, in one INSERT whose unique
`guid` answers a repeated delivery (even two arriving at once), so a crash half-way writes
nothing and GitHub may send it again; one that ended failed, invalid or ignored is decided again
when GitHub redelivers it. Resolving image digests (a registry call) and creating releases happen
in the `resolve_delivery` task. A `deployment_protection_rule` request is recorded for Gantry's
approval (protection.py). Both of GitHub's content types are read: JSON, and the form-encoded
`payload=` that is GitHub's default.
"""

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from .intake import Decision, current_routes, decide, store
from .models import WebhookDelivery
from .payloads import PayloadError, decode_body, signature_ok

Outcome = WebhookDelivery.Outcome
# GitHub caps a webhook payload at 25 MB and does not send larger ones; Django's own limit for
# request bodies (DATA_UPLOAD_MAX_MEMORY_SIZE, 2.5 MB) stays for every other view.
MAX_BODY = 25 * 1024 * 1024


def _read_body(request) -> bytes | None:
    """The raw body, or None when it is over MAX_BODY (read from the stream, so Django's
    smaller limit for form posts does not apply here)."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > MAX_BODY:
        return None
    body = request.read(MAX_BODY + 1)
    return None if len(body) > MAX_BODY else body


def _unsigned(guid: str, event: str, remote_addr, status: int, outcome: str, why: str):
    """Keep a trace of a call Gantry could not trust: no payload, and the id it claimed only in
    `claimed_guid`, so it can never block the real delivery with that id."""
    WebhookDelivery.objects.create(
        claimed_guid=guid, event=event, outcome=outcome, detail=why, remote_addr=remote_addr
    )
    return JsonResponse({"error": why}, status=status)


@csrf_exempt
@login_not_required
@require_POST
def github_webhook(request):
    guid = request.headers.get("X-GitHub-Delivery", "")[:64]
    event = request.headers.get("X-GitHub-Event", "")[:64]
    remote_addr = request.META.get("REMOTE_ADDR")
    body = _read_body(request)
    if body is None:
        why = f"body is over GitHub's 25 MB limit for webhook payloads ({MAX_BODY} bytes)"
        return _unsigned(guid, event, remote_addr, 413, Outcome.INVALID, why)
    secret = settings.GANTRY_GITHUB_WEBHOOK_SECRET
    if not signature_ok(secret, body, request.headers.get("X-Hub-Signature-256")):
        why = "missing or wrong X-Hub-Signature-256" if secret else "no webhook secret configured"
        return _unsigned(guid, event, remote_addr, 401, Outcome.REJECTED, why)
    if not guid:
        return JsonResponse({"error": "missing X-GitHub-Delivery header"}, status=400)
    try:
        payload = decode_body(request.content_type or "", body)
    except PayloadError as exc:
        decision = Decision(400, Outcome.INVALID, str(exc))
    else:
        decision = decide(event, payload, current_routes())
    delivery = store(guid, event, decision, remote_addr=remote_addr)
    if delivery is None:
        return JsonResponse({"delivery": guid, "outcome": "duplicate"}, status=200)
    status = decision.status
    if decision.rule is not None and delivery.outcome != Outcome.RECORDED:
        status = 200
    return JsonResponse(
        {"delivery": delivery.guid, "outcome": delivery.outcome, "detail": delivery.detail},
        status=status,
    )
