from django import template

from environments.charts import Chart

register = template.Library()


@register.simple_tag
def sparkline(values, label="", width=160, height=36, top=None):
    return Chart(width, height).line(values, label, top)


@register.simple_tag
def status_strip(statuses, label="", width=160):
    return Chart(width, 36).bars(statuses, label)


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
