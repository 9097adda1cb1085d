"""What the dashboards show, built from stored rows in a fixed number of queries.

Pages never probe: they read the latest samples the workers stored. The number of queries does
not grow with the number of components (each kind of row is fetched for all of them at once).
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db.models import F, Q, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from .models import (
    Component,
    Environment,
    HealthEvent,
    ProbeSample,
    StatSample,
    Status,
    freeze_in_force,
)
from .monitoring import uptime_since

SERVICE_TIERS = {
    Component.Tier.FRONTEND,
    Component.Tier.BACKEND,
    Component.Tier.DATABASE,
    Component.Tier.CACHE,
}
HISTORY = 40  # samples per tile chart
# Kinds whose newest sample is all a page needs: each holds its own history (or none).
LATEST_ONLY = (StatSample.Kind.MIG, StatSample.Kind.CLOUD)


@dataclass
class Tile:
    component: Component
    uptime: float | None = None
    uptime_hours: float = 0.0  # how much data the uptime covers, up to its 24 h
    latencies: list = field(default_factory=list)
    statuses: list = field(default_factory=list)
    times: list = field(default_factory=list)  # when each of the samples above was taken
    stat: StatSample | None = None
    stat_history: list = field(default_factory=list)
    last: dict | None = None  # the latest probe result within the window
    mig: StatSample | None = None  # the latest instance-group reading
    cloud: StatSample | None = None  # the latest Cloud Monitoring reading (an hour of charts)
    deployment: object | None = None  # the deployment in progress, if any

    @property
    def health(self):
        return getattr(self.component, "health", None)

    @property
    def status(self) -> str:
        return self.health.status if self.health else Status.UNKNOWN

    @property
    def clocks(self) -> list[str]:
        return [timezone.localtime(at).strftime("%H:%M:%S") for at in self.times]

    @property
    def uptime_span(self) -> str:
        """Over how long the uptime was measured: "24 h" only once there is a day of data."""
        if self.uptime_hours >= 23.9:
            return "24 h"
        if self.uptime_hours >= 1:
            return f"{self.uptime_hours:.0f} h"
        return f"{max(self.uptime_hours * 60, 1):.0f} min"

    @property
    def never_probed(self) -> bool:
        return self.last is None

    @property
    def figures(self) -> dict:
        return (self.stat.data.get("figures") or {}) if self.stat else {}

    def history(self, figure: str) -> list:
        return [(s.get("figures") or {}).get(figure) for s in self.stat_history]


@dataclass
class Section:
    title: str
    tiles: list[Tile]


@dataclass
class EnvironmentView:
    environment: Environment
    sections: list[Section]
    events: list
    deployments: list
    freeze: tuple | None = None  # (window, until) while deploys are frozen
    networks: int = 0

    @property
    def tiles(self):
        return [t for s in self.sections for t in s.tiles]

    @property
    def deploying(self) -> list:
        """Deployments under way: promoting, rolling out, verifying, rolling back."""
        return [d for d in self.deployments if d.is_active]

    @property
    def waiting(self) -> list:
        """Deployments waiting for approval or for their turn, oldest first."""
        return [d for d in self.deployments if not d.is_active]

    @property
    def summary(self) -> dict:
        counts = defaultdict(int)
        for tile in self.tiles:
            counts[tile.status] += 1
        return dict(counts)


def _section_title(tiles, others, fallback):
    """The VPC's name when the section is exactly one VPC (prod); else the tier's (dev's VM)."""
    networks = {t.component.network_id: t.component.network for t in tiles}
    shared = networks.keys() & {t.component.network_id for t in others}
    return next(iter(networks.values())).title if len(networks) == 1 and not shared else fallback


def _newest_first(*partition):
    """1 for each group's newest row, 2 for the one before, …"""
    return Window(
        RowNumber(),
        partition_by=[F(name) for name in partition],
        order_by=[F("at").desc(), F("id").desc()],
    )


def build(environment: Environment, now=None) -> EnvironmentView:
    """The dashboard of one environment: two sections (service tier, AI tier) of tiles.

    The readings (tiles, uptime, events, the freeze in force) are the same for every viewer until
    the next sweep, so they are cached for GANTRY_DASHBOARD_CACHE_SECONDS under the environment's
    `readings_at`; deployments, which people start and approve, are read fresh on every call."""
    from deployments.models import Deployment

    if now is None:
        sections, events, networks, freeze = _shared(
            readings_key(environment), lambda: _readings(environment, timezone.now())
        )
    else:
        sections, events, networks, freeze = _readings(environment, now)
    tiles = {t.component.pk: t for section in sections for t in section.tiles}
    deployments = list(
        Deployment.objects.unfinished()
        .filter(component__environment=environment)
        .select_related("release__component__environment", "component")
        .order_by("created_at")
    )
    for deployment in deployments:
        tile = tiles.get(deployment.component_id)
        if tile and (tile.deployment is None or deployment.is_active):
            tile.deployment = deployment
    return EnvironmentView(environment, sections, events, deployments, freeze, networks)


def poll_version(environment: Environment) -> str:
    """What the tiles show, named: the stored readings and the unfinished deployments (one
    small query). Equal versions draw equal tiles (portal.polls)."""
    from deployments.models import Deployment

    deployments = (
        Deployment.objects.unfinished()
        .filter(component__environment=environment)
        .order_by("pk")
        .values_list("pk", "state", "reason", "state_changed_at", "release_id")
    )
    return repr((readings_key(environment), list(deployments)))


def readings_key(environment: Environment) -> str:
    """New whenever a sweep or a collector stores readings of the environment."""
    stamp = environment.readings_at.timestamp() if environment.readings_at else "never"
    return f"dashboard:{environment.pk}:{stamp}"


def _shared(key: str, make):
    """`make()`, or what it gave another request less than GANTRY_DASHBOARD_CACHE_SECONDS ago.

    When that has lapsed, one request makes it again while the others keep serving the older
    value, so a crowd polling in step never rebuilds it all at once."""
    seconds = settings.GANTRY_DASHBOARD_CACHE_SECONDS
    if seconds <= 0:
        return make()
    now = time.time()
    kept = cache.get(key)
    if kept is not None:
        made_at, value = kept
        fresh = 0 <= now - made_at < seconds
        if fresh or not cache.add(f"{key}:making", 1, timeout=max(seconds, 1)):
            return value
    value = make()
    cache.set(key, (time.time(), value), timeout=seconds * 10)
    cache.delete(f"{key}:making")
    return value


def _readings(environment: Environment, now) -> tuple[list[Section], list, int, tuple | None]:
    """What the workers stored: tiles with their samples, figures and uptime; recent events;
    and what rarely changes: the number of networks, the deploy freeze in force."""
    components = list(
        environment.components.select_related("network", "health", "environment").order_by(
            "position", "name"
        )
    )
    tiles = {c.pk: Tile(c) for c in components}
    for pk, (value, first) in uptime_since(list(tiles), now=now).items():
        tiles[pk].uptime = value
        if first is not None:
            tiles[pk].uptime_hours = (now - first).total_seconds() / 3600
    window = now - timedelta(hours=1)
    # Only the rows a tile shows: its last HISTORY samples and figures, and its latest
    # instance-group reading. An hour holds hundreds of each per component; loading them all
    # (and decoding the figures' JSON) cost more than the rest of the page.
    samples = (
        ProbeSample.objects.filter(component_id__in=list(tiles), at__gte=window)
        .annotate(newest=_newest_first("component_id"))
        .filter(newest__lte=HISTORY)
        .order_by("at", "id")
        .values_list("component_id", "status", "latency_ms", "detail", "at")
    )
    for pk, status, latency, detail, at in samples:
        tile = tiles[pk]
        tile.statuses.append(status)
        tile.latencies.append(latency)
        tile.times.append(at)
        tile.last = {"status": status, "latency_ms": latency, "detail": detail, "at": at}
    stats = (
        StatSample.objects.filter(component_id__in=list(tiles), at__gte=window)
        .annotate(newest=_newest_first("component_id", "kind"))
        .filter(Q(newest=1) | (Q(newest__lte=HISTORY) & ~Q(kind__in=LATEST_ONLY)))
        .order_by("at", "id")
    )
    for stat in stats:
        tile = tiles[stat.component_id]
        if stat.kind == StatSample.Kind.MIG:
            tile.mig = stat
            continue
        if stat.kind == StatSample.Kind.CLOUD:
            tile.cloud = stat
            continue
        tile.stat_history.append(stat.data)
        tile.stat = stat
    for tile in tiles.values():
        tile.statuses, tile.latencies = tile.statuses[-HISTORY:], tile.latencies[-HISTORY:]
        tile.times = tile.times[-HISTORY:]
        tile.stat_history = tile.stat_history[-HISTORY:]
    service = [t for t in tiles.values() if t.component.tier in SERVICE_TIERS]
    ai = [t for t in tiles.values() if t.component.tier not in SERVICE_TIERS]
    sections = [
        Section(_section_title(service, ai, "Service tier"), service),
        Section(_section_title(ai, service, "AI tier"), ai),
    ]
    events = list(
        HealthEvent.objects.filter(component__environment=environment)
        .select_related("component")
        .order_by("-at", "-id")[:10]
    )
    networks = environment.networks.count()
    return [s for s in sections if s.tiles], events, networks, freeze_in_force(environment, now)


def component_history(component: Component, hours=24, buckets=96, now=None) -> dict:
    """Latency (average) and status (worst) per time bucket over the last hours.

    Buckets are aligned on the clock (every `hours / buckets` since the epoch), the last one
    holding now, so a settled bucket never changes: what they hold is remembered once, and each
    drawing reads only the samples of the buckets still filling (a few dozen rows, not a day's).
    With `now` given (tests) nothing is remembered."""
    return _history(component, hours, buckets, now or timezone.now(), remember=now is None)


# A bucket is settled once no sample can still be stored into it: a sweep stores each probe
# within its timeout of the probe's time, far less than this.
SETTLED_AFTER = timedelta(minutes=5)
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_RANK = {Status.UP: 0, Status.DEGRADED: 1, Status.UNKNOWN: 2, Status.DOWN: 3}


def _history(component: Component, hours, buckets, now, remember=False) -> dict:
    width = timedelta(hours=hours) / buckets
    filling = _EPOCH + ((now - _EPOCH) // width) * width
    start = filling - (buckets - 1) * width
    settled = max(start, _EPOCH + ((now - SETTLED_AFTER - _EPOCH) // width) * width)
    if remember:
        key = f"history:{component.pk}:{start.timestamp()}:{settled.timestamp()}:{width}"
        older = cache.get(key)
        if older is None:
            older = _buckets(component, start, settled, width)
            cache.set(key, older, timeout=int(width.total_seconds()) * 2)
    else:
        older = _buckets(component, start, settled, width)
    latency, statuses = older
    newer = _buckets(component, settled, filling + width, width)
    return {
        "latency": latency + newer[0],
        "statuses": statuses + newer[1],
        "start": start,
        "end": now,
        "width": width,
    }


def _buckets(component: Component, start, end, width) -> tuple[list, list]:
    """(average latency, worst status) of each bucket of `width` from `start` to `end`."""
    count = round((end - start) / width)
    latency = [[] for _ in range(count)]
    worst = [None] * count
    rows = ProbeSample.objects.filter(component=component, at__gte=start, at__lt=end)
    for at, status, ms in rows.values_list("at", "status", "latency_ms"):
        i = int((at - start) // width)
        if ms is not None:
            latency[i].append(ms)
        if worst[i] is None or _RANK[status] > _RANK[worst[i]]:
            worst[i] = status
    return (
        [round(sum(v) / len(v), 1) if v else None for v in latency],
        [s or "none" for s in worst],
    )
