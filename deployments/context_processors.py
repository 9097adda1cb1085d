"""Template context every page gets from the deployments app."""

from django.http import HttpRequest

from .inbox import Badge


def approvals_inbox(request: HttpRequest) -> dict:
    """`approvals_badge` for the top bar: lazy, so a page that does not draw it costs nothing."""
    return {"approvals_badge": Badge(getattr(request, "user", None))}
