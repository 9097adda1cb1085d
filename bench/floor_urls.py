"""The webhook bench's floor: a bare Django view that checks the same HMAC signature and writes
the delivery with one INSERT in one transaction, beside Gantry's own URLs (bench/floor_settings.py).
Not used by Gantry."""

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import connection, transaction
from django.http import JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from github.payloads import signature_ok
from portal.urls import handler500  # noqa: F401 (Gantry's own error page, as in production)
from portal.urls import urlpatterns as gantry

TABLE = "bench_bare_delivery"
CREATE = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} (id bigserial PRIMARY KEY, guid varchar(64) NOT NULL, "
    "event varchar(40) NOT NULL, body text NOT NULL, at timestamptz NOT NULL DEFAULT now())"
)


@login_not_required
@csrf_exempt
def bare_webhook(request):
    header = request.headers.get("X-Hub-Signature-256")
    if not signature_ok(settings.GANTRY_GITHUB_WEBHOOK_SECRET, request.body, header):
        return JsonResponse({"outcome": "rejected"}, status=401)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {TABLE} (guid, event, body) VALUES (%s, %s, %s)",
            [
                request.headers.get("X-GitHub-Delivery", ""),
                request.headers.get("X-GitHub-Event", ""),
                request.body.decode(errors="replace"),
            ],
        )
    return JsonResponse({"outcome": "accepted"}, status=202)


urlpatterns = [path("bench/bare-webhook/", bare_webhook), *gantry]
