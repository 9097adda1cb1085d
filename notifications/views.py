from django.contrib.auth.decorators import permission_required
from django.core.paginator import Paginator
from django.shortcuts import render

from .models import Channel, Notification


@permission_required("notifications.view_notification", raise_exception=True)
def notification_list(request):
    """Recent notifications, newest first, and how each channel is doing. Why a delivery
    failed is shown only to those who may change channels: it can name internal hosts."""
    notifications = Notification.objects.select_related("channel__environment")
    state = request.GET.get("state")
    if state in Notification.State.values:
        notifications = notifications.filter(state=state)
    else:
        state = None
    context = {
        "page": Paginator(notifications, 100).get_page(request.GET.get("page")),
        "channels": Channel.objects.select_related("environment"),
        "states": Notification.State.choices,
        "selected": state,
        "show_errors": request.user.has_perm("notifications.change_channel"),
    }
    return render(request, "notifications/notification_list.html", context)
