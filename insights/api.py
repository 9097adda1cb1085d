"""GET /api/insights/dora (mounted by portal/api.py): the figures /insights/ shows, as JSON."""

from datetime import datetime

from django.http import Http404
from django.utils import timezone
from ninja import Field, Query, Router, Schema
from pydantic import field_validator
from pydantic_core import PydanticCustomError

from environments.models import Environment
from portal.apitools import Slug, errors, needs

from . import dora

router = Router(
    tags=["insights"], auth=needs("deployments.view_deployment", "view deployment insights")
)


class DoraTiersOut(Schema):
    deployment_frequency: str | None
    lead_time: str | None
    change_fail_rate: str | None
    recovery_time: str | None
    rework_rate: str | None = Field(description="always null: DORA 2024 sets no rework tiers")


class DoraFiguresOut(Schema):
    deployments: int = Field(description="succeeded, failed or rolled back in the window")
    succeeded: int
    failed: int = Field(description="failed or rolled back")
    rework: int = Field(description="unplanned: redeploys of a release, or fixes after a failure")
    unrecovered: int = Field(description="failure episodes with no success since")
    deployment_frequency_per_day: float | None
    lead_time_seconds: float | None = Field(description="median, commit → succeeded")
    change_fail_rate: float | None = Field(description="0 to 1")
    recovery_time_seconds: float | None = Field(description="median, failure → next success")
    rework_rate: float | None = Field(description="0 to 1")
    tiers: DoraTiersOut


class DoraBucketOut(Schema):
    start: datetime
    end: datetime
    figures: DoraFiguresOut


class DoraComponentOut(Schema):
    name: str
    title: str
    figures: DoraFiguresOut


class DoraEnvironmentOut(Schema):
    name: str
    title: str
    figures: DoraFiguresOut
    buckets: list[DoraBucketOut] = Field(description="per day (7-day window) or per week")
    components: list[DoraComponentOut]


class DoraOut(Schema):
    days: int
    now: datetime
    fix_hours: float
    environments: list[DoraEnvironmentOut]


class DoraQuery(Schema):
    environment: Slug | None = Field(None, description="one environment's name; all by default")
    days: int = Field(
        dora.DEFAULT_WINDOW,
        description="the window, in days",
        json_schema_extra={"enum": list(dora.WINDOWS)},
    )

    @field_validator("days")
    @classmethod
    def _window(cls, value: int) -> int:
        try:
            return dora.parse_window(str(value))
        except dora.BadWindow as exc:
            raise PydanticCustomError("gantry", str(exc)) from None


def _figures(figures: dora.Figures) -> dict:
    facts = figures.facts
    return {
        "deployments": facts.deployments,
        "succeeded": facts.succeeded,
        "failed": facts.failed,
        "rework": facts.rework,
        "unrecovered": facts.unrecovered,
        "deployment_frequency_per_day": figures.deployment_frequency,
        "lead_time_seconds": figures.lead_time,
        "change_fail_rate": figures.change_fail_rate,
        "recovery_time_seconds": figures.recovery_time,
        "rework_rate": figures.rework_rate,
        "tiers": figures.tiers,
    }


@router.get(
    "dora", response={200: DoraOut, **errors(400, 401, 403, 404)}, url_name="api-insights-dora"
)
def dora_figures(request, query: Query[DoraQuery]):
    """DORA figures per environment and component over the last `days`, from stored rows (see
    docs/dora.md for the definitions and tiers); a figure with nothing to count is null."""
    if query.environment and not Environment.objects.filter(name=query.environment).exists():
        raise Http404(f"no environment {query.environment!r}")
    now = timezone.now()
    scopes = dora.report(now, query.days, environment=query.environment or None)
    return {
        "days": query.days,
        "now": now,
        "fix_hours": dora.fix_hours(),
        "environments": [
            {
                "name": scope.name,
                "title": scope.title,
                "figures": _figures(scope.figures),
                "buckets": [
                    {"start": b.start, "end": b.end, "figures": _figures(b.figures)}
                    for b in scope.buckets
                ],
                "components": [
                    {"name": c.name, "title": c.title, "figures": _figures(c.figures)}
                    for c in scope.components
                ],
            }
            for scope in scopes
        ],
    }
