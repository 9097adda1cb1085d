"""Small server-rendered SVG charts: no JavaScript, no CDN, readable in any browser."""

from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe


@dataclass
class Chart:
    width: int = 160
    height: int = 36

    def bars(self, statuses: list[str], label: str, times: list[str] | None = None):
        """One thin bar per sample, coloured by status: a history strip. With `times`, each bar
        has a tooltip saying when and what."""
        if not statuses:
            return format_html('<span class="muted">no samples yet</span>')
        step = self.width / len(statuses)
        times = times or [""] * len(statuses)
        rects = format_html_join(
            "",
            '<rect class="s-{}" x="{}" y="0" width="{}" height="{}"><title>{}</title></rect>',
            (
                (
                    s,
                    round(i * step, 2),
                    round(max(step - 0.5, 0.5), 2),
                    self.height // 3,
                    f"{when}: {s}" if when else s,
                )
                for i, (s, when) in enumerate(zip(statuses, times, strict=True))
            ),
        )
        return format_html(
            '<svg class="strip" viewBox="0 0 {} {}" width="{}" height="{}" role="img">'
            "<title>{}</title>{}</svg>",
            self.width,
            self.height // 3,
            self.width,
            self.height // 3,
            label,
            rects,
        )


def trend(
    buckets: list[tuple[str, float | None]],
    label: str,
    unit: str,
    *,
    fmt=None,
    bars: bool = False,
    axis: tuple[str, str] = ("", ""),
    width: int = 320,
    height: int = 120,
):
    """A trend over time buckets, with axes: the value scale (0 and the top, in `unit`) on the
    left, the time scale (`axis`: first bucket's start, last bucket's end) below. Each bucket
    has a `<title>` tooltip ("label: value"). A bucket whose value is None is empty: no bar, no
    point, and the line breaks there. `bars` draws counts, where 0 is a value, not a gap."""
    fmt = fmt or (lambda v: f"{v:g}")
    left, right, top_pad, bottom = 34.0, 6.0, 16.0, 18.0
    plot_w, plot_h = width - left - right, height - top_pad - bottom
    known = [v for _, v in buckets if v is not None]
    top = max(known, default=0) or 1.0
    n = max(len(buckets), 1)
    slot = plot_w / n
    base = top_pad + plot_h

    def y(value: float) -> float:
        return round(base - plot_h * value / top, 1)

    def x(i: int) -> float:
        return round(left + slot * (i + 0.5), 1)

    marks, tips, run, runs = [], [], [], []
    for i, (when, value) in enumerate(buckets):
        shown = "no data" if value is None else f"{fmt(value)} {unit}".strip()
        tips.append(
            (round(left + slot * i, 1), top_pad, round(slot, 1), plot_h, f"{when}: {shown}")
        )
        if value is None:
            if run:
                runs.append(run)
            run = []
            continue
        if bars:
            h = round(plot_h * value / top, 1)
            marks.append(
                (
                    "rect",
                    round(left + slot * i + slot * 0.15, 1),
                    round(base - h, 1),
                    round(slot * 0.7, 1),
                    h,
                )
            )
        else:
            run.append((x(i), y(value)))
    if run:
        runs.append(run)
    shapes = format_html_join(
        "",
        '<rect x="{}" y="{}" width="{}" height="{}" fill="currentColor"/>',
        (m[1:] for m in marks if m[4] > 0),
    )
    shapes += format_html_join(
        "",
        '<polyline class="line" points="{}"/>',
        ((" ".join(f"{px},{py}" for px, py in r),) for r in runs if len(r) > 1),
    )
    shapes += format_html_join(
        "", '<circle class="line" cx="{}" cy="{}" r="2.5"/>', (p for r in runs for p in r)
    )
    hover = format_html_join(
        "",
        '<rect x="{}" y="{}" width="{}" height="{}" fill="currentColor" fill-opacity="0">'
        "<title>{}</title></rect>",
        tips,
    )
    axes = _axes(
        (left, right, top_pad, base, width, height),
        unit,
        fmt(top) if known else "",
        axis,
    )
    return _svg("trend", width, height, label, axes, shapes, hover)


def compare(canary: list[float], baseline: list[float], label: str, unit: str, width: int = 320):
    """Canary against baseline on one value scale: a row of marks per side, one per sample
    (each with a `<title>`), and a bar at each side's median. The scale starts at 0, so a
    shift reads as the distance it is."""
    left, right, row, pad = 62.0, 8.0, 18.0, 4.0
    height = int(pad + 2 * row + 16)
    plot_w = width - left - right
    known = [*canary, *baseline]
    top = max(known, default=0) or 1.0

    def x(value: float) -> float:
        return round(left + plot_w * value / top, 1)

    def side(values: list[float], name: str, y: float):
        if not values:
            return format_html(
                '<text x="{}" y="{}" font-size="10" fill="currentColor">no data</text>',
                left + 4,
                y + row / 2 + 3,
            )
        ordered = sorted(values)
        middle = ordered[len(ordered) // 2]
        if len(ordered) % 2 == 0:
            middle = (ordered[len(ordered) // 2 - 1] + middle) / 2
        marks = format_html_join(
            "",
            '<circle cx="{}" cy="{}" r="2.5" fill-opacity="0.6" fill="currentColor">'
            "<title>{}: {} {}</title></circle>",
            ((x(v), y + row / 2, name, f"{v:.3g}", unit) for v in values),
        )
        return marks + format_html(
            '<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="currentColor" stroke-width="2">'
            "<title>{} median: {} {}</title></line>",
            x(middle),
            y + 2,
            x(middle),
            y + row - 2,
            name,
            f"{middle:.3g}",
            unit,
        )

    base = pad + 2 * row
    frame = format_html(
        '<g fill="currentColor" font-size="10">'
        '<text x="{}" y="{}" text-anchor="end">canary</text>'
        '<text x="{}" y="{}" text-anchor="end">baseline</text>'
        '<text x="{}" y="{}" text-anchor="middle">0</text>'
        '<text x="{}" y="{}" text-anchor="end">{} {}</text></g>'
        '<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="currentColor"/>',
        left - 6,
        pad + row / 2 + 3,
        left - 6,
        pad + row * 1.5 + 3,
        left,
        height - 2,
        width - right,
        height - 2,
        f"{top:.3g}" if known else "",
        unit if known else "",
        left,
        base,
        width - right,
        base,
    )
    return _svg(
        "compare",
        width,
        height,
        label,
        frame,
        side(canary, "canary", pad),
        side(baseline, "baseline", pad + row),
    )


def lines(
    series: list[dict],
    label: str,
    unit: str,
    window: tuple[datetime, datetime],
    *,
    target: float | None = None,
    width: int = 320,
    height: int = 120,
):
    """Several series over one time window, each a line with its name in a legend, on axes:
    the value scale (0 to the top, in `unit`) on the left, the window's start and end times
    below; `target` is drawn as a dashed line (an autoscaler's CPU target). Each point has a
    `<title>`; a minute with no point leaves a gap."""
    left, right, top_pad, bottom = 34.0, 6.0, 16.0, 18.0
    plot_w, plot_h = width - left - right, height - top_pad - bottom
    start, end = window
    span = max((end - start).total_seconds(), 1.0)
    parsed = [
        (one.get("name", ""), [(datetime.fromisoformat(at), v) for at, v in one["points"]])
        for one in series
    ]
    values = [v for _, points in parsed for _, v in points]
    top = max([*values, target or 0], default=0) or 1.0
    base = top_pad + plot_h

    def x(at: datetime) -> float:
        return round(left + plot_w * (at - start).total_seconds() / span, 1)

    def y(value: float) -> float:
        return round(base - plot_h * value / top, 1)

    shapes = mark_safe("")
    for index, (name, points) in enumerate(parsed):
        runs, run, last = [], [], None
        for at, value in points:
            if last is not None and (at - last).total_seconds() > 90:  # a missing minute
                runs.append(run)
                run = []
            run.append((at, value))
            last = at
        runs.append(run)
        shapes += format_html_join(
            "",
            '<polyline class="l{}" points="{}"/>',
            ((index % 4, " ".join(f"{x(at)},{y(v)}" for at, v in r)) for r in runs if len(r) > 1),
        )
        shapes += format_html_join(
            "",
            '<circle class="l{}" cx="{}" cy="{}" r="1.5"><title>{}{}: {} {}</title></circle>',
            (
                (index % 4, x(at), y(v), f"{name} " if name else "", clock(at), f"{v:.3g}", unit)
                for r in runs
                for at, v in r
            ),
        )
    if target is not None:
        shapes += format_html(
            '<line class="target" x1="{}" y1="{}" x2="{}" y2="{}">'
            "<title>target: {} {}</title></line>",
            left,
            y(target),
            width - right,
            y(target),
            f"{target:g}",
            unit,
        )
    legend = format_html_join(
        "",
        '<tspan class="k{}" dx="8">■ {}</tspan>',
        ((i % 4, name) for i, (name, _) in enumerate(parsed) if name),
    )
    axes = _axes(
        (left, right, top_pad, base, width, height),
        unit,
        f"{top:.3g}" if values else "",
        (clock(start), clock(end)),
        legend,
    )
    empty = (
        format_html(
            '<text x="{}" y="{}" font-size="11" fill="currentColor">no data</text>',
            left + 8,
            top_pad + plot_h / 2,
        )
        if not values
        else ""
    )
    return _svg("lines", width, height, label, axes, shapes, empty)


def clock(at: datetime) -> str:
    """A time of day on a chart's axis or in its tooltip: local hours and minutes."""
    return timezone.localtime(at).strftime("%H:%M")


def _axes(frame: tuple, unit: str, top: str, times: tuple[str, str], legend=""):
    """The value axis (0 and `top`, in `unit`, then any legend) and the time axis (its first
    and last labels) of a chart; `frame` is (left, right, top_pad, base, width, height)."""
    left, right, top_pad, base, width, height = frame
    return format_html(
        '<g fill="none" stroke="currentColor" stroke-width="1">'
        '<line x1="{}" y1="{}" x2="{}" y2="{}"/><line x1="{}" y1="{}" x2="{}" y2="{}"/></g>'
        '<g fill="currentColor" font-size="10">'
        '<text x="{}" y="10" text-anchor="start">{}{}</text>'
        '<text x="{}" y="{}" text-anchor="end">{}</text>'
        '<text x="{}" y="{}" text-anchor="end">0</text>'
        '<text x="{}" y="{}" text-anchor="start">{}</text>'
        '<text x="{}" y="{}" text-anchor="end">{}</text></g>',
        left,
        top_pad,
        left,
        base,
        left,
        base,
        width - right,
        base,
        left + 4,
        unit,
        legend,
        left - 4,
        top_pad + 4,
        top,
        left - 4,
        base,
        left,
        height - 4,
        times[0],
        width - right,
        height - 4,
        times[1],
    )


def _svg(kind: str, width: int, height: int, label: str, *parts):
    """A chart's <svg>: its kind as a class, its label as the accessible name, then its parts."""
    return format_html(
        '<svg class="chart {}" viewBox="0 0 {} {}" width="{}" height="{}" role="img">'
        "<title>{}</title>{}</svg>",
        kind,
        width,
        height,
        width,
        height,
        label,
        format_html_join("", "{}", ((part,) for part in parts)),
    )
