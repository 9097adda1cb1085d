"""Charts a person can read (issue 14, item 13): a scale with its unit, a time scale, a tooltip
per point or bar, and an empty period drawn as empty, never bridged by a line."""

import re
from datetime import UTC, datetime, timedelta

from environments.templatetags.charts import history_strip, history_trend, latency_trend

START = datetime(2026, 12, 3, 0, 0, tzinfo=UTC)


def history(latency, statuses=None):
    return {
        "latency": latency,
        "statuses": statuses or ["up"] * len(latency),
        "start": START,
        "end": START + timedelta(minutes=15 * len(latency)),
    }


def test_the_history_chart_has_axes_units_times_and_tooltips(settings):
    settings.TIME_ZONE = "UTC"
    svg = str(history_trend(history([10.0, 20.0, None, None, 40.0, 30.0]), "latency"))
    assert ">ms</text>" in svg and ">40</text>" in svg and ">0</text>" in svg
    assert ">00:00</text>" in svg and ">01:30</text>" in svg
    assert "<title>00:15: 20 ms</title>" in svg and "<title>00:30: no data</title>" in svg
    lines = re.findall(r'<polyline class="line" points="([^"]+)"', svg)
    assert [len(points.split()) for points in lines] == [2, 2], "the gap breaks the line"


def test_a_period_with_no_data_at_all_draws_no_line(settings):
    svg = str(history_trend(history([None] * 4), "latency"))
    assert "<polyline" not in svg and svg.count("no data") == 4


def test_the_status_strip_says_when_each_bar_was(settings):
    settings.TIME_ZONE = "UTC"
    svg = str(history_strip(history([1.0, 2.0], ["up", "down"]), "status"))
    assert "<title>00:00: up</title>" in svg and "<title>00:15: down</title>" in svg


def test_the_tile_chart_has_its_unit_and_the_probes_times(settings):
    settings.TIME_ZONE = "UTC"
    times = [START + timedelta(seconds=15 * i) for i in range(3)]
    svg = str(latency_trend([5.0, None, 7.0], times))
    assert ">ms</text>" in svg and ">00:00</text>" in svg
    assert "<title>00:00:30: 7 ms</title>" in svg and "<title>00:00:15: no data</title>" in svg
    assert "no probes yet" in str(latency_trend([], []))
