"""DORA figures from Gantry's own rows: how often and how fast changes reach an environment,
how often they fail and how long a failure lasts. docs/dora.md has the definitions, what
Gantry cannot know, and the DORA 2024 tiers with their source.

A window is the `days` before `now` (both passed in, so tests use back-dated rows). All the
rows a window needs are read in one query (`fetch`), then every figure, for every component,
environment and trend bucket, is computed from those rows in Python: the page, the API and
/metrics cost the same few queries however many deployments or components there are.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, Exists, Max, OuterRef, Q
from django.db.models.functions import Coalesce

from deployments.models import Deployment
from environments.models import Component, Environment

S = Deployment.State
WINDOWS = (7, 30, 90)
DEFAULT_WINDOW = 30
# The outcomes that reached (or tried to reach) the environment. Cancelled, superseded and
# rejected deployments never changed what ran, so no figure counts them.
OUTCOMES = (S.SUCCEEDED, S.FAILED, S.ROLLED_BACK)
FAILURES = (S.FAILED, S.ROLLED_BACK)
HOUR, DAY = 3600.0, 86400.0


class BadWindow(ValueError):
    pass


def parse_window(text: str | None) -> int:
    """?days= as one of WINDOWS (DEFAULT_WINDOW when absent); BadWindow says what is allowed."""
    if text in (None, ""):
        return DEFAULT_WINDOW
    allowed = ", ".join(str(d) for d in WINDOWS)
    try:
        days = int(text)
    except (TypeError, ValueError):
        raise BadWindow(f"days must be one of {allowed}, not {text!r}") from None
    if days not in WINDOWS:
        raise BadWindow(f"days must be one of {allowed}, not {days}")
    return days


def fix_hours() -> float:
    return float(settings.GANTRY_DORA_FIX_HOURS)


# --- tiers ------------------------------------------------------------------------------------

TIERS = ("elite", "high", "medium", "low")


def frequency_tier(per_day: float | None) -> str | None:
    """DORA 2024: elite on demand (several a day), high daily to weekly, medium weekly to
    monthly, low less often. More than one a day is elite; once a day exactly is high."""
    if per_day is None:
        return None
    if per_day > 1:
        return "elite"
    if per_day >= 1 / 7:
        return "high"
    if per_day >= 1 / 30:
        return "medium"
    return "low"


def lead_time_tier(seconds: float | None) -> str | None:
    """DORA 2024: elite under a day, high under a week, medium under a month, low longer."""
    if seconds is None:
        return None
    if seconds < DAY:
        return "elite"
    if seconds < 7 * DAY:
        return "high"
    if seconds < 30 * DAY:
        return "medium"
    return "low"


def fail_rate_tier(rate: float | None) -> str | None:
    """DORA 2024's typical fail rates are elite 5 %, high 20 %, medium 10 %, low 40 %: medium's
    is better than high's, so a fail rate alone never says medium. At most 5 % is elite, at
    most 20 % high, anything above low."""
    if rate is None:
        return None
    if rate <= 0.05:
        return "elite"
    if rate <= 0.20:
        return "high"
    return "low"


def recovery_tier(seconds: float | None) -> str | None:
    """DORA 2024: elite under an hour, high and medium both under a day, low a week to a month.
    Under a day is high (the better of the two that share it); a day or more is low."""
    if seconds is None:
        return None
    if seconds < HOUR:
        return "elite"
    if seconds < DAY:
        return "high"
    return "low"


# --- rows -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One finished deployment, with just the columns the figures need."""

    id: int
    component_id: int
    state: str
    created_at: datetime
    finished_at: datetime
    committed_at: datetime  # its release's commit time, else when the release was created
    redeploy: bool  # an earlier deployment of the same release reached an outcome


def version(now: datetime) -> str:
    """What the figures depend on, named: the minute (the windows end now) and the latest and
    number of deployments that reached an outcome. One query."""
    outcomes = Deployment.objects.filter(state__in=OUTCOMES).aggregate(
        last=Max("finished_at"), count=Count("id")
    )
    return repr((now.replace(second=0, microsecond=0), outcomes, fix_hours()))


def fetch(since: datetime, now: datetime, hours: float | None = None) -> list[Row]:
    """Every deployment that reached an outcome (succeeded, failed, rolled back) and finished
    after `since` minus the fix period (a fix in the window may follow a failure just before
    it) and no later than `now`. One query, whatever the number of rows."""
    hours = fix_hours() if hours is None else hours
    earlier = Deployment.objects.filter(
        release_id=OuterRef("release_id"), state__in=OUTCOMES
    ).filter(
        Q(created_at__lt=OuterRef("created_at"))
        | Q(created_at=OuterRef("created_at"), pk__lt=OuterRef("pk"))
    )
    rows = (
        Deployment.objects.filter(
            state__in=OUTCOMES,
            finished_at__gt=since - timedelta(hours=hours),
            finished_at__lte=now,
        )
        .annotate(
            redeploy=Exists(earlier),
            committed_at=Coalesce("release__committed_at", "release__created_at"),
        )
        .order_by("component_id", "finished_at", "id")
        .values_list(
            "id",
            "component_id",
            "state",
            "created_at",
            "finished_at",
            "committed_at",
            "redeploy",
        )
    )
    return [Row(*values) for values in rows]


# --- figures ----------------------------------------------------------------------------------


@dataclass
class Facts:
    """What the figures are made of, for any set of components over any stretch of time:
    sums and samples that merge by adding, so an environment is the sum of its components."""

    deployments: int = 0
    succeeded: int = 0
    failed: int = 0
    rework: int = 0
    lead_times: list[float] = field(default_factory=list)
    recoveries: list[float] = field(default_factory=list)
    unrecovered: int = 0

    def add(self, other: Facts) -> None:
        self.deployments += other.deployments
        self.succeeded += other.succeeded
        self.failed += other.failed
        self.rework += other.rework
        self.lead_times += other.lead_times
        self.recoveries += other.recoveries
        self.unrecovered += other.unrecovered


@dataclass
class Figures:
    """The five figures of one scope over `days` (None: no data), with their tiers."""

    days: float
    facts: Facts

    @property
    def has_data(self) -> bool:
        return self.facts.deployments > 0

    @property
    def deployment_frequency(self) -> float | None:
        """Succeeded deployments per day."""
        return self.facts.succeeded / self.days if self.has_data and self.days else None

    @property
    def lead_time(self) -> float | None:
        """Median seconds from commit (Release.committed_at, else created_at) to succeeded."""
        return statistics.median(self.facts.lead_times) if self.facts.lead_times else None

    @property
    def change_fail_rate(self) -> float | None:
        return self.facts.failed / self.facts.deployments if self.has_data else None

    @property
    def recovery_time(self) -> float | None:
        """Median seconds from a failure to the next success of its component."""
        return statistics.median(self.facts.recoveries) if self.facts.recoveries else None

    @property
    def rework_rate(self) -> float | None:
        return self.facts.rework / self.facts.deployments if self.has_data else None

    @property
    def tiers(self) -> dict[str, str | None]:
        return {
            "deployment_frequency": frequency_tier(self.deployment_frequency),
            "lead_time": lead_time_tier(self.lead_time),
            "change_fail_rate": fail_rate_tier(self.change_fail_rate),
            "recovery_time": recovery_tier(self.recovery_time),
            "rework_rate": None,  # DORA 2024 publishes no tiers for it
        }


@dataclass
class Bucket:
    start: datetime
    end: datetime
    figures: Figures


@dataclass
class Scope:
    """An environment or a component: its figures over the window and its trend."""

    name: str
    title: str
    figures: Figures
    buckets: list[Bucket]
    components: list[Scope] = field(default_factory=list)


def bucket_bounds(since: datetime, now: datetime, days: int) -> list[tuple[datetime, datetime]]:
    """Per day for a week, per week for longer windows, ending at `now`; the oldest bucket is
    cut at `since` (a 30-day window has a 2-day bucket, then four weeks)."""
    size = timedelta(days=1 if days <= 7 else 7)
    bounds, end = [], now
    while end > since:
        start = max(end - size, since)
        bounds.append((start, end))
        end = start
    return bounds[::-1]


def classify(rows: list[Row], since: datetime, now: datetime, hours: float) -> list[tuple]:
    """One component's rows (oldest first) as (when, Facts) pairs, one per deployment in the
    window and one per recovery episode, dated by its deployment or its first failure.

    - A deployment counts when it finished in (since, now]. It failed when it ended failed or
      rolled back.
    - Lead time: a succeeded deployment's finished_at minus its release's commit time (GitHub's
      head_commit.timestamp), or its created_at where GitHub gave none.
    - Rework: it redeploys a release that already reached an outcome here (a redeploy or a
      manual rollback to an older build), or it was asked for (created_at) within `hours`
      after a failed or rolled-back deployment of the component finished (a fix).
    - Recovery: from the first failure after a success to the next success. Failures in a
      row are one episode; one with no success yet counts as unrecovered.
    """
    out: list[tuple] = []
    fix = timedelta(hours=hours)
    last_failure: datetime | None = None
    episode: datetime | None = None
    for row in rows:
        failed = row.state in FAILURES
        if since < row.finished_at <= now:
            facts = Facts(deployments=1, failed=int(failed), succeeded=int(not failed))
            after_failure = last_failure is not None and (
                last_failure <= row.created_at <= last_failure + fix
            )
            facts.rework = int(row.redeploy or after_failure)
            if not failed:
                facts.lead_times.append(
                    max((row.finished_at - row.committed_at).total_seconds(), 0)
                )
            out.append((row.finished_at, facts))
        if failed:
            last_failure = row.finished_at
            episode = episode or row.finished_at
        elif episode is not None:
            if since < episode <= now:
                out.append(
                    (episode, Facts(recoveries=[(row.finished_at - episode).total_seconds()]))
                )
            episode = None
    if episode is not None and since < episode <= now:
        out.append((episode, Facts(unrecovered=1)))
    return out


def _scope(name, title, dated, since, now, days, bounds) -> Scope:
    total = Facts()
    per_bucket = [Facts() for _ in bounds]
    for when, facts in dated:
        total.add(facts)
        for i, (start, end) in enumerate(bounds):
            if start < when <= end:
                per_bucket[i].add(facts)
                break
    buckets = [
        Bucket(start, end, Figures((end - start).total_seconds() / DAY, facts))
        for (start, end), facts in zip(bounds, per_bucket, strict=True)
    ]
    return Scope(name, title, Figures(days, total), buckets)


def report(
    now: datetime,
    days: int = DEFAULT_WINDOW,
    environment: str | None = None,
    rows: list[Row] | None = None,
) -> list[Scope]:
    """Every environment (or the one named) with its components, over the `days` before `now`.

    Pass `rows` from a wider `fetch` to compute several windows from one read (/metrics does).
    Three queries: environments, components, and the rows.
    """
    since = now - timedelta(days=days)
    hours = fix_hours()
    environments = Environment.objects.order_by("position", "name")
    if environment is not None:
        environments = environments.filter(name=environment)
    environments = list(environments.values_list("pk", "name", "display_name"))
    components = defaultdict(list)
    for pk, env_id, name, title in (
        Component.objects.filter(environment_id__in=[e[0] for e in environments])
        .order_by("position", "name")
        .values_list("pk", "environment_id", "name", "display_name")
    ):
        components[env_id].append((pk, name, title))
    if rows is None:
        rows = fetch(since, now, hours)
    else:  # a wider read: keep what this window's own fetch would have read, so both agree
        rows = [r for r in rows if since - timedelta(hours=hours) < r.finished_at <= now]
    by_component = defaultdict(list)
    for row in rows:
        by_component[row.component_id].append(row)
    bounds = bucket_bounds(since, now, days)
    scopes = []
    for env_id, env_name, display_name in environments:
        dated_env = []
        children = []
        for pk, name, title in components[env_id]:
            dated = classify(by_component.get(pk, []), since, now, hours)
            dated_env += dated
            children.append(_scope(name, title or name, dated, since, now, days, bounds))
        scope = _scope(env_name, display_name or env_name, dated_env, since, now, days, bounds)
        scope.components = children
        scopes.append(scope)
    return scopes
