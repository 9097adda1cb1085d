"""/insights/: the DORA figures of every environment and component, read from stored rows."""

from dataclasses import dataclass

from django.contrib.auth.decorators import permission_required
from django.shortcuts import render
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.safestring import SafeString

from environments.charts import trend
from portal.polls import drawn

from . import dora

FIGURES = (
    # (key, name, unit for the chart's scale)
    ("deployment_frequency", "Deployment frequency", "per day"),
    ("lead_time", "Change lead time", "h"),
    ("change_fail_rate", "Change fail rate", "%"),
    ("recovery_time", "Failed deployment recovery time", "h"),
    ("rework_rate", "Rework rate", "%"),
)
BADGES = {
    "elite": "status-up",
    "high": "status-up",
    "medium": "status-degraded",
    "low": "status-down",
}


def duration(seconds: float | None) -> str:
    """Seconds as people read them: 40 s, 25 min, 5.5 h, 3.2 days."""
    if seconds is None:
        return "no data"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def shown(key: str, figures: dora.Figures) -> str:
    """One figure as text; 'no data' when its scope had nothing to count."""
    value = getattr(figures, key)
    if value is None:
        return "no data"
    if key == "deployment_frequency":
        return f"{value:.2f} per day"
    if key in ("lead_time", "recovery_time"):
        return duration(value)
    return f"{value * 100:.0f} %"


def scale(key: str, value: float | None) -> float | None:
    """A figure in its chart unit (hours, percent)."""
    if value is None:
        return None
    if key in ("lead_time", "recovery_time"):
        return value / 3600
    if key in ("change_fail_rate", "rework_rate"):
        return value * 100
    return value


@dataclass
class Cell:
    text: str
    tier: str | None

    @property
    def badge(self) -> str:
        return BADGES.get(self.tier or "", "")


@dataclass
class Line:
    name: str
    cell: Cell
    detail: str
    chart: SafeString


def cells(figures: dora.Figures) -> list[Cell]:
    tiers = figures.tiers
    return [Cell(shown(key, figures), tiers[key]) for key, _, _ in FIGURES]


def detail(key: str, facts: dora.Facts) -> str:
    return {
        "deployment_frequency": f"{facts.succeeded} succeeded",
        "lead_time": f"median of {len(facts.lead_times)}",
        "change_fail_rate": f"{facts.failed} of {facts.deployments} failed or rolled back",
        "recovery_time": "; ".join(
            ([f"median of {len(facts.recoveries)}"] if facts.recoveries else [])
            + ([f"{facts.unrecovered} not yet recovered"] if facts.unrecovered else [])
        ),
        "rework_rate": f"{facts.rework} of {facts.deployments} unplanned",
    }[key]


def lines(scope: dora.Scope, days: int) -> list[Line]:
    per = "day" if days <= 7 else "week"
    when = [f"{b.start:%d %b %H:%M} to {b.end:%d %b %H:%M}" for b in scope.buckets]
    axis = (f"{scope.buckets[0].start:%d %b}", f"{scope.buckets[-1].end:%d %b}")
    out = []
    for (key, name, unit), cell in zip(FIGURES, cells(scope.figures), strict=True):
        values = [scale(key, getattr(b.figures, key)) for b in scope.buckets]
        if key == "deployment_frequency":  # no deployment is a count of 0, not a gap
            values = [v or 0.0 for v in values]
        chart = trend(
            list(zip(when, values, strict=True)),
            f"{name} in {scope.title}, per {per}, last {days} days",
            unit,
            fmt=lambda v: f"{v:.2g}" if v < 10 else f"{v:.0f}",
            bars=key == "deployment_frequency",
            axis=axis,
        )
        facts = scope.figures.facts
        unrecovered = key == "recovery_time" and facts.unrecovered
        said = detail(key, facts) if cell.text != "no data" or unrecovered else ""
        out.append(Line(name, cell, said, chart))
    return out


def _draw(days: int, now, context: dict) -> str:
    scopes = dora.report(now, days)
    environments = [
        {
            "scope": scope,
            "lines": lines(scope, days),
            "components": [(c, cells(c.figures)) for c in scope.components],
            "buckets": [(b, cells(b.figures)) for b in scope.buckets],
        }
        for scope in scopes
    ]
    return render_to_string(
        "insights/_insights.html",
        context
        | {
            "days": days,
            "now": now,
            "per": "day" if days <= 7 else "week",
            "figures": [name for _, name, _ in FIGURES],
            "environments": environments,
        },
    )


@permission_required(
    ("deployments.view_deployment", "environments.view_environment"), raise_exception=True
)
def insights(request):
    """Every environment's DORA figures over ?days=7|30|90 (default 30), with tiers, weekly
    (or daily) trends and a row per component, drawn once per version for everyone
    (dora.version: a minute, or a deployment finishing). A bad ?days= is a 400 saying what is
    allowed."""
    context = {"windows": dora.WINDOWS, "fix_hours": dora.fix_hours()}
    try:
        days = dora.parse_window(request.GET.get("days"))
    except dora.BadWindow as exc:
        return render(request, "insights/insights.html", context | {"error": str(exc)}, status=400)
    now = timezone.now()
    version = repr((days, dora.version(now)))
    _, body = drawn(f"insights:{days}", version, lambda: _draw(days, now, context))
    context |= {"days": days, "body": body}
    return render(request, "insights/insights.html", context)
