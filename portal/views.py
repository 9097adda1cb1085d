from django.contrib.auth.decorators import login_not_required
from django.http import HttpResponse, JsonResponse
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
