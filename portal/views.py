from django.contrib.auth.decorators import login_not_required
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from . import health


@require_GET
@never_cache
@login_not_required
def healthz(request):
    healthy, body = health.report()
    return JsonResponse(body, status=200 if healthy else 503)
