from django.contrib.auth.decorators import permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from portal import lists

from .filters import AuditFilterForm, filter_events
from .models import AuditEvent


@permission_required("audit.view_auditevent", raise_exception=True)
def audit_list(request: HttpRequest) -> HttpResponse:
    """The audit log, newest first, by audit.filters.filter_events, 50 a page."""
    form = lists.bound(AuditFilterForm, request.GET)
    chosen = lists.chosen(form)
    events = filter_events(AuditEvent.objects.all(), form.cleaned_data)
    context = {"form": form, "chosen": chosen, **lists.paged(events, request.GET, chosen)}
    return render(request, "audit/audit_list.html", context)
