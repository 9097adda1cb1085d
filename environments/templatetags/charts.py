from datetime import datetime

from django import template
from django.utils import timezone
from django.utils.safestring import mark_safe

from environments.charts import Chart, clock, compare, lines, trend

register = template.Library()


@register.simple_tag
def status_strip(statuses, label="", width=160, times=None):
    return Chart(width, 36).bars(statuses, label, times)


@register.simple_tag
def latency_trend(latencies, times, label="latency", width=160, height=64):
    """The last probes' latency in ms, with its scale, the time of the first and last probe,
    and a tooltip per probe; a probe with no latency (refused, timed out) leaves a gap."""
    if not latencies:
        return mark_safe('<span class="muted">no probes yet</span>')
    clocks = [timezone.localtime(at).strftime("%H:%M:%S") for at in times]
    return trend(
        list(zip(clocks, latencies, strict=True)),
        label,
        "ms",
        fmt=lambda v: f"{v:.0f}",
        axis=(clock(times[0]), clock(times[-1])),
        width=width,
        height=height,
    )


def history_times(history: dict) -> list[str]:
    """The start of each bucket of dashboard.component_history, as HH:MM."""
    buckets = len(history["latency"])
    width = history.get("width") or (history["end"] - history["start"]) / max(buckets, 1)
    return [clock(history["start"] + width * i) for i in range(buckets)]


@register.simple_tag
def history_trend(history, label="", width=720, height=140):
    """A component's 24 h of bucketed latency; an hour without probes is empty, not a line."""
    times = history_times(history)
    return trend(
        list(zip(times, history["latency"], strict=True)),
        label,
        "ms",
        fmt=lambda v: f"{v:.0f}",
        axis=(clock(history["start"]), clock(history["end"])),
        width=width,
        height=height,
    )


@register.simple_tag
def history_strip(history, label="", width=720):
    return Chart(width, 36).bars(history["statuses"], label, history_times(history))


@register.filter
def bytes_human(value):
    if value in (None, ""):
        return "—"
    value = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return value


@register.simple_tag
def canary_chart(verdict: dict):
    """A canary judgement's metric: its canary and baseline samples side by side."""
    name, unit = verdict["metric"], verdict.get("unit", "")
    return compare(verdict.get("canary", []), verdict.get("baseline", []), f"{name}, {unit}", unit)


@register.filter
def signed_percent(fraction):
    """0.31 → '+31 %'."""
    return "" if fraction is None else f"{float(fraction) * 100:+.0f} %"


@register.simple_tag
def cloud_chart(chart: dict, window: list, width=320, height=120):
    """One chart of a Cloud Monitoring reading (environments/cloud.py)."""
    start, end = (datetime.fromisoformat(at) for at in window)
    return lines(
        chart["series"],
        chart["title"],
        chart["unit"],
        (start, end),
        target=chart.get("target"),
        width=width,
        height=height,
    )
