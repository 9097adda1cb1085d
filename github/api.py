"""The API's webhook deliveries (mounted by portal/api.py): the Deliveries page as JSON, and
Retry, through the same rules and audit as the page (intake.retry)."""

from datetime import datetime

from django.http import Http404
from ninja import Field, Router, Schema
from ninja.pagination import paginate

from portal.apitools import ApiError, Id, Pages, Slug, errors, needs

from .intake import RetryRefused, retry
from .models import WebhookDelivery
from .views import filtered

router = Router()


class DeliveryOut(Schema):
    id: int
    guid: str | None
    event: str
    action: str
    repository: str
    outcome: WebhookDelivery.Outcome
    detail: str
    source: str = Field(description='"webhook", or "catch_up" for a build catch-up found')
    attempts: int
    run_id: int | None
    received_at: datetime
    last_attempt_at: datetime | None
    releases: list[int]
    can_retry: bool

    @staticmethod
    def resolve_releases(delivery):
        return [release.pk for release in delivery.releases.all()]


@router.get(
    "deliveries/",
    response={200: list[DeliveryOut], **errors(400, 401, 403)},
    tags=["deliveries"],
    auth=needs("github.view_webhookdelivery", "view webhook deliveries"),
    url_name="api-deliveries",
)
@paginate(Pages)
def list_deliveries(
    request,
    outcome: WebhookDelivery.Outcome | None = None,
    event: Slug | None = None,
    repository: str | None = None,
    guid: str | None = None,
):
    """Webhook deliveries, newest first. Unsigned calls are left out unless `outcome` asks."""
    params = {"outcome": outcome, "event": event, "repository": repository, "guid": guid}
    return filtered({k: v for k, v in params.items() if v})[0]


@router.post(
    "deliveries/{id}/retry",
    response={200: DeliveryOut, **errors(400, 401, 403, 404, 409)},
    tags=["deliveries"],
    auth=needs("github.retry_webhookdelivery", "retry webhook deliveries"),
    url_name="api-delivery-retry",
)
def retry_delivery(request, id: Id):
    """Decide a failed, invalid or ignored delivery again from the payload Gantry kept, as if
    GitHub had redelivered it now. Audited."""
    if not WebhookDelivery.objects.filter(pk=id).exists():
        raise Http404(f"no delivery {id}")
    try:
        retry(id, request.auth, request=request)
    except RetryRefused as exc:
        raise ApiError(409, str(exc)) from None
    return WebhookDelivery.objects.prefetch_related("releases").get(pk=id)
