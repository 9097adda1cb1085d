import sys

from django.contrib.auth.decorators import login_not_required
from django.db import InterfaceError, OperationalError
from django.http import HttpResponse, HttpResponseServerError, JsonResponse
from django.template import loader
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from . import health
from . import metrics as gantry_metrics


@require_GET
@never_cache
@login_not_required
def healthz(request):
    healthy, body = health.report()
    return JsonResponse(body, status=200 if healthy else 503)


@require_GET
@never_cache
@login_not_required
def metrics(request):
    """Prometheus's scrape. Checked here, not by LoginRequiredMiddleware: Prometheus has no
    session, so it shows a bearer token (GANTRY_METRICS_TOKEN) instead."""
    allowed = gantry_metrics.scrape_allowed(request)
    if allowed is None:
        response = HttpResponse("Sign in or send the metrics token.\n", status=401)
        response["WWW-Authenticate"] = 'Bearer realm="gantry-metrics"'
        return response
    if not allowed:
        return HttpResponse("Your role may not read metrics.\n", status=403)
    body, content_type = gantry_metrics.exposition()
    return HttpResponse(body, content_type=content_type)


# Seconds a client is asked to wait before trying again while the database is away.
RETRY_AFTER = 30


def server_error(request):
    """Django's 500 handler, which answers 503 while the database is away (a connection that
    failed or broke): the webhook and the API in JSON, so GitHub shows why (its catch-up and
    Redeliver recover the delivery), and people a page saying to try again. Rendered without
    the request: its context processors would ask the database for the user."""
    error = sys.exc_info()[1]
    if not isinstance(error, (OperationalError, InterfaceError)):
        return HttpResponseServerError(loader.get_template("500.html").render())
    why = "Gantry's database is unavailable; nothing was recorded. Try again shortly."
    if request.path.startswith(("/api/", "/webhooks/")):
        response = JsonResponse({"error": why}, status=503)
    else:
        response = HttpResponse(loader.get_template("503.html").render({"why": why}), status=503)
    response["Retry-After"] = str(RETRY_AFTER)
    return response
