"""The overview's live fragment (what runs where, then each environment at a glance), named with
its version and drawing for portal.polls; drawn ahead when a sweep stores new readings."""

from __future__ import annotations

from django.template.loader import render_to_string

from environments import dashboard
from environments.models import Environment
from portal.polls import draw_ahead, watched

from . import matrix


def overview() -> tuple[str, str, object]:
    """(name, version, draw) of the home page's overview."""

    def draw() -> str:
        views = [dashboard.build(environment) for environment in Environment.objects.all()]
        return render_to_string(
            "environments/_overview.html", {"views": views, "matrix": matrix.build()}
        )

    return "overview", matrix.poll_version(), draw


def on_new_readings(sender, environment_id: int, **kwargs) -> None:
    if watched(["overview"]):
        draw_ahead(*overview())
