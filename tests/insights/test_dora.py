"""The DORA figures on hand-built, back-dated rows whose answers are known."""

from datetime import timedelta

import pytest

from environments.charts import trend
from insights import dora

from .conftest import NOW, ago

pytestmark = pytest.mark.django_db
HOUR, DAY = 3600, 86400


def scope(days=30, environment="prod", component=None, now=NOW):
    [env] = dora.report(now, days, environment=environment)
    if component is None:
        return env
    return next(c for c in env.components if c.name == component)


def test_deployment_frequency_counts_succeeded_deployments_per_day(deployed):
    for day in (1, 5, 29):
        deployed(ago(days=day))
    deployed(ago(days=2), state="failed")
    deployed(ago(days=3), state="cancelled")  # never changed what ran
    deployed(ago(days=31))  # before the window
    deployed(ago(days=-1))  # after `now`: not yet, for this report
    deployed(ago(days=4), component="frontend")
    backend = scope(component="backend").figures
    assert backend.facts.succeeded == 3 and backend.facts.deployments == 4
    assert backend.deployment_frequency == pytest.approx(3 / 30)
    assert backend.tiers["deployment_frequency"] == "medium"
    assert scope().figures.deployment_frequency == pytest.approx(4 / 30)  # the environment


def test_lead_time_is_the_median_from_release_created_to_succeeded(deployed):
    for hours in (2, 4, 30):
        deployed(ago(days=1), built=ago(days=1, hours=hours))
    deployed(ago(days=1), state="failed", built=ago(days=40))  # only successes have one
    figures = scope(component="backend").figures
    assert figures.lead_time == 4 * HOUR
    assert figures.tiers["lead_time"] == "elite"


def test_lead_time_counts_from_the_commit_where_github_gave_its_time(deployed):
    deployed(ago(days=1), built=ago(days=1, hours=1), committed=ago(days=1, hours=26))
    deployed(ago(days=1), built=ago(days=1, hours=1), committed=ago(days=1, hours=30))
    deployed(ago(days=1), built=ago(days=1, hours=2))  # no commit time: from the build
    figures = scope(component="backend").figures
    assert figures.lead_time == 26 * HOUR
    assert figures.tiers["lead_time"] == "high"


def test_change_fail_rate_counts_failed_and_rolled_back(deployed):
    deployed(ago(days=1), state="failed")
    deployed(ago(days=2), state="rolled_back")
    deployed(ago(days=3))
    deployed(ago(days=4))
    figures = scope(component="backend").figures
    assert figures.change_fail_rate == 0.5
    assert figures.tiers["change_fail_rate"] == "low"


def test_recovery_runs_from_the_first_failure_to_the_next_success(deployed):
    deployed(ago(days=5, hours=3), state="failed")
    deployed(ago(days=5, hours=2), state="rolled_back")  # same episode
    deployed(ago(days=5))  # recovered: 3 h after the first failure
    deployed(ago(days=2, hours=1), state="failed")
    deployed(ago(days=2, hours=0.5))  # 30 min
    deployed(ago(days=1), state="failed")  # not yet recovered
    figures = scope(component="backend").figures
    assert sorted(figures.facts.recoveries) == [30 * 60, 3 * HOUR]
    assert figures.recovery_time == pytest.approx((30 * 60 + 3 * HOUR) / 2)
    assert figures.facts.unrecovered == 1
    assert figures.tiers["recovery_time"] == "high"


def test_recovery_is_per_component(deployed):
    deployed(ago(days=2), state="failed", component="frontend")
    deployed(ago(days=1))  # backend's success does not recover the frontend
    figures = scope().figures
    assert figures.recovery_time is None and figures.facts.unrecovered == 1


def test_rework_is_redeploys_and_fixes_within_the_fix_hours(deployed, settings):
    first = deployed(ago(days=10))
    deployed(ago(days=9), of=first)  # a redeploy of a release that ran: rework
    failed = deployed(ago(days=5), state="failed")
    deployed(ago(days=5) + timedelta(hours=3), created=ago(days=5) + timedelta(hours=2))  # fix
    deployed(ago(days=2), created=ago(days=5) + timedelta(hours=30))  # 30 h later: planned
    figures = scope(component="backend").figures
    assert figures.facts.rework == 2 and figures.facts.deployments == 5
    assert figures.rework_rate == pytest.approx(2 / 5)
    assert figures.tiers["rework_rate"] is None  # DORA 2024 sets no tiers for it

    settings.GANTRY_DORA_FIX_HOURS = 48
    assert scope(component="backend").figures.facts.rework == 3
    assert failed.state == "failed"


def test_a_cancelled_first_attempt_does_not_make_a_redeploy(deployed):
    cancelled = deployed(ago(days=3), state="cancelled")
    deployed(ago(days=2), of=cancelled)
    assert scope(component="backend").figures.facts.rework == 0


def test_a_fix_may_follow_a_failure_just_before_the_window(deployed):
    deployed(ago(days=7, hours=2), state="failed")
    deployed(ago(days=6, hours=23), created=ago(days=7, hours=1))
    figures = scope(7, component="backend").figures
    assert figures.facts.deployments == 1 and figures.facts.rework == 1
    assert figures.facts.recoveries == []  # the failure itself lies outside the window


@pytest.mark.parametrize(("days", "succeeded"), [(7, 1), (30, 2), (90, 3)])
def test_windows(deployed, days, succeeded):
    for age in (3, 20, 60, 100):
        deployed(ago(days=age))
    figures = scope(days, component="backend").figures
    assert figures.facts.succeeded == succeeded
    assert figures.deployment_frequency == pytest.approx(succeeded / days)


def test_no_deployments_is_no_data(seed_topology):
    for figures in (scope().figures, scope(component="redis").figures):
        assert not figures.has_data
        assert figures.deployment_frequency is None
        assert figures.lead_time is None
        assert figures.change_fail_rate is None
        assert figures.recovery_time is None
        assert figures.rework_rate is None
        assert set(figures.tiers.values()) == {None}


def test_every_environment_and_component_is_reported(seed_topology):
    scopes = dora.report(NOW)
    assert [s.name for s in scopes] == ["prod", "dev"]
    assert {c.name for c in scopes[0].components} >= {"frontend", "backend", "redis"}


def test_buckets_per_day_for_a_week_and_per_week_beyond(deployed):
    deployed(ago(hours=30))
    week = scope(7, component="backend")
    assert len(week.buckets) == 7
    assert [b.figures.facts.succeeded for b in week.buckets] == [0, 0, 0, 0, 0, 1, 0]
    assert week.buckets[-1].end == NOW and week.buckets[0].start == ago(days=7)
    assert week.buckets[0].figures.lead_time is None  # an empty bucket has no value
    month = scope(30, component="backend")
    assert [round((b.end - b.start).total_seconds() / DAY) for b in month.buckets] == [
        2,
        7,
        7,
        7,
        7,
    ]
    assert len(scope(90).buckets) == 13


@pytest.mark.parametrize(
    ("function", "value", "tier"),
    [
        (dora.frequency_tier, 3.0, "elite"),
        (dora.frequency_tier, 1.0, "high"),
        (dora.frequency_tier, 1 / 7, "high"),
        (dora.frequency_tier, 0.1, "medium"),
        (dora.frequency_tier, 1 / 30, "medium"),
        (dora.frequency_tier, 0.01, "low"),
        (dora.frequency_tier, 0.0, "low"),
        (dora.lead_time_tier, 23 * HOUR, "elite"),
        (dora.lead_time_tier, 2 * DAY, "high"),
        (dora.lead_time_tier, 10 * DAY, "medium"),
        (dora.lead_time_tier, 45 * DAY, "low"),
        (dora.fail_rate_tier, 0.05, "elite"),
        (dora.fail_rate_tier, 0.10, "high"),
        (dora.fail_rate_tier, 0.20, "high"),
        (dora.fail_rate_tier, 0.25, "low"),
        (dora.recovery_tier, 59 * 60, "elite"),
        (dora.recovery_tier, 5 * HOUR, "high"),
        (dora.recovery_tier, 3 * DAY, "low"),
        (dora.recovery_tier, None, None),
    ],
)
def test_tiers(function, value, tier):
    assert function(value) == tier


@pytest.mark.parametrize(("text", "days"), [(None, 30), ("", 30), ("7", 7), ("90", 90)])
def test_parse_window(text, days):
    assert dora.parse_window(text) == days


@pytest.mark.parametrize("text", ["14", "abc", "-7", "30.0"])
def test_bad_window(text):
    with pytest.raises(dora.BadWindow, match="7, 30, 90"):
        dora.parse_window(text)


def test_a_wider_read_gives_the_same_figures(deployed):
    """/metrics reads 90 days once and computes every window from it."""
    deployed(ago(days=8), state="failed")
    deployed(ago(days=6, hours=12), created=ago(days=7, hours=23))
    deployed(ago(days=3), state="failed")
    deployed(ago(days=2))
    wide = dora.fetch(ago(days=90), NOW)
    for days in dora.WINDOWS:
        own = scope(days, component="backend").figures.facts
        [env] = dora.report(NOW, days, environment="prod", rows=wide)
        assert next(c for c in env.components if c.name == "backend").figures.facts == own


def populate(deployed, n):
    for i in range(n):
        for component in ("backend", "frontend", "ai-server"):
            state = ("succeeded", "failed", "rolled_back")[i % 3]
            deployed(ago(days=i % 80, hours=i % 7), state=state, component=component)


def test_query_count_does_not_grow_with_deployments(deployed, django_assert_num_queries):
    populate(deployed, 2)
    with django_assert_num_queries(3):
        dora.report(NOW, 90)
    populate(deployed, 20)
    with django_assert_num_queries(3):
        scopes = dora.report(NOW, 90)
    assert scopes[0].figures.facts.deployments == 66


def test_trend_chart_leaves_empty_buckets_empty():
    svg = str(
        trend(
            [("mon", 1.0), ("tue", None), ("wed", 2.0), ("thu", 3.0)],
            "lead time",
            "h",
            axis=("1 Jun", "5 Jun"),
        )
    )
    assert svg.count("<polyline") == 1  # wed-thu; mon stands alone, tue breaks the line
    assert svg.count("<circle") == 3
    assert "<title>tue: no data</title>" in svg and "<title>thu: 3 h</title>" in svg
    assert "1 Jun" in svg and "5 Jun" in svg and ">3</text>" in svg and ">h</text>" in svg
    bars = str(trend([("mon", 0.0), ("tue", 2.0)], "deploys", "per day", bars=True))
    assert bars.count('fill="currentColor"/>') == 1  # a zero is no bar, still a tooltip
    assert "<title>mon: 0 per day</title>" in bars
