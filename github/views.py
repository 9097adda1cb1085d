"""The Deliveries page: GitHub's webhook calls as Gantry received them, and Retry."""

from datetime import timedelta
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from .intake import RetryRefused, retry
from .models import CatchUp, WebhookDelivery

Outcome = WebhookDelivery.Outcome
PER_PAGE = 50


def filtered(params) -> tuple[object, dict]:
    """Deliveries by the page's filters (outcome, event, repository, delivery id), and the
    filters that applied. Unsigned calls (rejected, or too large to check) are left out unless
    asked for by outcome, so a flood of forged calls never pushes real deliveries off the page."""
    deliveries = WebhookDelivery.objects.prefetch_related("releases").select_related(
        "protection_rule"
    )
    chosen = {}
    outcome = params.get("outcome", "")
    if outcome in Outcome.values:
        deliveries = deliveries.filter(outcome=outcome)
        chosen["outcome"] = outcome
    else:
        deliveries = deliveries.exclude(guid__isnull=True)
    for name, lookup in (("event", "event"), ("repository", "repository__iexact")):
        if value := params.get(name, "").strip()[:140]:
            deliveries = deliveries.filter(**{lookup: value})
            chosen[name] = value
    if guid := params.get("guid", "").strip()[:64]:
        deliveries = deliveries.filter(guid=guid)
        chosen["guid"] = guid
    return deliveries, chosen


@permission_required("github.view_webhookdelivery", raise_exception=True)
def delivery_list(request):
    deliveries, chosen = filtered(request.GET)
    since = timezone.now() - timedelta(hours=24)
    context = {
        "page": Paginator(deliveries, PER_PAGE).get_page(request.GET.get("page")),
        "chosen": chosen,
        "query": urlencode(chosen),
        "outcomes": Outcome.choices,
        "unsigned": WebhookDelivery.objects.filter(
            guid__isnull=True, received_at__gte=since
        ).count(),
        "catch_ups": CatchUp.objects.all(),
        "can_retry": request.user.has_perm("github.retry_webhookdelivery"),
    }
    return render(request, "github/delivery_list.html", context)


@require_POST
@permission_required("github.retry_webhookdelivery", raise_exception=True)
def delivery_retry(request, pk):
    delivery = get_object_or_404(WebhookDelivery, pk=pk)
    try:
        delivery = retry(delivery.pk, request.user, request=request)
    except RetryRefused as exc:
        messages.error(request, f"Delivery {delivery.guid}: {exc}.")
    else:
        messages.success(
            request, f"Delivery {delivery.guid} retried: {delivery.get_outcome_display().lower()}."
        )
    return redirect(f"{reverse('deliveries')}?{urlencode({'guid': delivery.guid})}")
