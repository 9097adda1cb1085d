from django.contrib.auth.decorators import permission_required
from django.core.paginator import Paginator
from django.shortcuts import render

from .models import AuditEvent


@permission_required("audit.view_auditevent", raise_exception=True)
def audit_list(request):
    events = AuditEvent.objects.all()
    for field in ("actor", "action", "object_type", "object_id"):
        if value := request.GET.get(field):
            events = events.filter(**{field: value})
    page = Paginator(events, 100).get_page(request.GET.get("page"))
    return render(request, "audit/audit_list.html", {"page": page, "filters": request.GET})
