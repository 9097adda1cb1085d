"""What Cloud Monitoring would have recorded about the services in front of and behind the
sandbox's VMs: the global HTTPS load balancer (per backend group of each backend service),
Cloud SQL for MySQL and Memorystore for Redis. One sample a simulated minute, hashed noise and
the daily swell, as the VMs' own series (sandbox/monitoring_data.py), for as long as the world
has existed (its seeded day included).

They follow the simulation rather than inventing a load of their own. A backend group's
requests are the per-minute increases of the Prometheus request counters of its instances that
the load balancer's health check passes (so instance count and load move them), split by each
instance's error share; a `down` fault on the component turns them all into 503s. Its latency
distributions are built from those instances' latency quantiles. The databases' and caches'
connections follow the project's load balancer request rate. Faults are read when the series
are, as for the VMs', so they shape past samples too.

Cloud SQL and Memorystore instances exist for the topology's MySQL (`tier: database`, probe
`mysql`) and Redis (`tier: cache`, probe `redis`) components that do not run as containers on
a `single_vm` host (prod's; dev's share the dev VM).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import lru_cache
from statistics import NormalDist

from . import links
from .faults import MAX_CONNECTIONS
from .monitoring_data import (
    DELTA,
    DISTRIBUTION,
    DOUBLE,
    GAUGE,
    GCE_INSTANCE,
    INT64,
    PROMETHEUS_TARGET,
    QUANTILES,
    SAMPLE_PERIOD,
    Labels,
    Metric,
    Subject,
    Vm,
    instances,
    latency,
    requests_served,
    swell,
    unit_hash,
)
from .seed import SEEDED_AGE, load_topology

HTTPS_LB_RULE, CLOUDSQL_DATABASE, REDIS_INSTANCE = (
    "https_lb_rule",
    "cloudsql_database",
    "redis_instance",
)
# The load balancer's latency histograms, as Google's HTTP(S) load balancing writes them (ms).
FINITE_BUCKETS, GROWTH, SCALE = 66, 1.4, 1.0
PROXY_MS = (5.0, 10.0)  # GFE proxy and client RTT on top of the backend: 5-15 ms a minute
ERROR_CODE = "503"  # what a 5xx is counted as
# Where the proxy that took a request stands: near the backends' region, clients being local.
CONTINENTS = {
    "asia": "Asia",
    "me": "Asia",
    "europe": "Europe",
    "australia": "Oceania",
    "africa": "Africa",
}


# --- distributions --------------------------------------------------------------------------


@dataclass(frozen=True)
class Distribution:
    """A google.api.Distribution on the load balancer's exponential buckets: bucket 0 is the
    underflow (below SCALE), 1..FINITE_BUCKETS the finite ones, the last the overflow."""

    count: int
    mean: float
    sum_of_squared_deviation: float
    bucket_counts: tuple[int, ...]  # FINITE_BUCKETS + 2 of them

    @staticmethod
    def bounds(index: int) -> tuple[float, float]:
        """[lower, upper) of a bucket; the underflow starts at 0 (latencies are not negative)."""
        lower = 0.0 if index == 0 else SCALE * GROWTH ** (index - 1)
        upper = SCALE * GROWTH**index if index <= FINITE_BUCKETS else math.inf
        return lower, upper

    def percentile(self, q: float) -> float:
        """The q-th percentile (0..100), linear within its bucket as Cloud Monitoring
        interpolates; in the overflow bucket, its lower bound."""
        rank, seen = q / 100 * self.count, 0
        for index, count in enumerate(self.bucket_counts):
            if count and seen + count >= rank:
                lower, upper = self.bounds(index)
                if math.isinf(upper):
                    return lower
                return lower + (upper - lower) * max(0.0, rank - seen) / count
            seen += count
        return 0.0

    @staticmethod
    def merge(items: list[Distribution]) -> Distribution:
        """The distribution of all their values together: counts add bucket by bucket, the
        squared deviations add with each part's offset from the joint mean."""
        count = sum(d.count for d in items)
        if not count:
            return Distribution(0, 0.0, 0.0, (0,) * (FINITE_BUCKETS + 2))
        mean = sum(d.count * d.mean for d in items) / count
        deviation = sum(d.sum_of_squared_deviation + d.count * (d.mean - mean) ** 2 for d in items)
        buckets = tuple(map(sum, zip(*(d.bucket_counts for d in items), strict=True)))
        return Distribution(count, mean, deviation, buckets)


# One request's latency relative to its instance's p50: log-normal below p95, a wider
# log-normal tail above, so p50, p95 and p99 are exactly the instance's quantiles.
_NORMAL = NormalDist()
Z95, Z99 = _NORMAL.inv_cdf(0.95), _NORMAL.inv_cdf(0.99)
P95, P99 = QUANTILES["0.95"], QUANTILES["0.99"]
SIGMA_BODY = math.log(P95) / Z95
SIGMA_TAIL = math.log(P99 / P95) / (Z99 - Z95)


def _partial_moment(power: int) -> float:
    """E[X^power] of that shape (p50 = 1), in closed form: ∫ e^(s z) φ(z) over each piece."""
    body, tail = power * SIGMA_BODY, power * SIGMA_TAIL
    below = math.exp(body**2 / 2) * _NORMAL.cdf(Z95 - body)
    above = P95**power * math.exp(tail**2 / 2 - tail * Z95) * (1 - _NORMAL.cdf(Z95 - tail))
    return below + above


SHAPE_MEAN = _partial_moment(1)
SHAPE_VARIANCE = _partial_moment(2) - SHAPE_MEAN**2
EDGES = tuple(SCALE * GROWTH**i for i in range(FINITE_BUCKETS + 1))  # the finite buckets' bounds


def shape_cdf(ratio: float) -> float:
    """P(latency < ratio * p50)."""
    if ratio <= 0:
        return 0.0
    if ratio > P95:
        return _NORMAL.cdf(Z95 + math.log(ratio / P95) / SIGMA_TAIL)
    return _NORMAL.cdf(math.log(ratio) / SIGMA_BODY)


def distribution(parts: list[tuple[float, float]], shift: float) -> Distribution | None:
    """`parts` (requests, p50 in ms) of one minute, each instance's latencies of that shape,
    all `shift` ms later (the proxy's share): their histogram, in whole requests."""
    weight = sum(n for n, _ in parts)
    count = round(weight)
    if count <= 0:
        return None
    means = [(n, p50 * SHAPE_MEAN + shift, p50**2 * SHAPE_VARIANCE) for n, p50 in parts]
    mean = sum(n * m for n, m, _ in means) / weight
    deviation = count * sum(n * (v + (m - mean) ** 2) for n, m, v in means) / weight
    below = [
        round(count * sum(n * shape_cdf((edge - shift) / p50) for n, p50 in parts) / weight)
        for edge in EDGES
    ]
    buckets = [below[0], *(b - a for a, b in itertools.pairwise(below))]
    return Distribution(count, mean, deviation, (*buckets, count - below[-1]))


# --- the load balancer (https_lb_rule) ------------------------------------------------------


@dataclass(frozen=True)
class Backend:
    """One instance group behind one global backend service of the HTTPS load balancer, with
    the members the load balancer sends traffic to (its health check passes them)."""

    project: str
    service: str
    group: str
    region: str
    vms: tuple[Vm, ...]
    down: bool  # a `down` fault names the service's component: every request is a 503
    created_at: float

    def series_labels(self, resource_type: str) -> tuple[Labels, Labels]:
        continent = CONTINENTS.get(self.region.split("-")[0], "America")
        return {"proxy_continent": continent}, {
            "project_id": self.project,
            "region": "global",
            "url_map_name": f"{self.project}-url-map",
            "forwarding_rule_name": f"{self.project}-https-forwarding-rule",
            "target_proxy_name": f"{self.project}-https-proxy",
            "matched_url_path_rule": "UNMATCHED",
            "backend_target_name": self.service,
            "backend_target_type": "BACKEND_SERVICE",
            "backend_name": self.group,
            "backend_type": "INSTANCE_GROUP",
            "backend_scope": self.region,
            "backend_scope_type": "REGION",
        }


def requests_in_minute(vm: Vm, minute: int) -> float:
    """What the instance's request counter grew by in the minute up to `minute`: the difference
    from the sample before, or the whole count when the counter started since."""
    now = requests_served(vm, minute)
    if now is None:
        return 0.0
    t = minute * SAMPLE_PERIOD
    before = requests_served(vm, minute - 1)
    if before is not None and vm.serving_since(t - SAMPLE_PERIOD) == vm.serving_since(t):
        return now - before
    return now


@lru_cache(maxsize=16_384)
def traffic(backend: Backend, minute: int) -> dict[str, tuple[tuple[float, float], ...]]:
    """The minute's requests by response code class ("200", "500"): (requests, p50 in ms) of
    each instance that served some."""
    by_class: dict[str, list[tuple[float, float]]] = {"200": [], "500": []}
    for vm in backend.vms:
        served = requests_in_minute(vm, minute)
        if served <= 0:
            continue
        p50 = latency(vm, {"quantile": "0.5"}, minute)
        if p50 is None:
            continue
        errors = 1.0 if backend.down else vm.error_rate
        by_class["200"].append((served * (1 - errors), p50 * 1000))
        by_class["500"].append((served * errors, p50 * 1000))
    return {k: tuple((n, p) for n, p in v if n > 0) for k, v in by_class.items()}


def lb_request_count(backend: Backend, labels: Labels, minute: int) -> int | None:
    """Requests of one class in the minute; no point when there were none (as Google)."""
    count = round(sum(n for n, _ in traffic(backend, minute)[labels["response_code_class"]]))
    return count or None


def lb_latencies(total: bool):
    """The minute's latency histogram of one class: the backend's, or (total) with the
    proxy's 5-15 ms on top."""

    def sample(backend: Backend, labels: Labels, minute: int) -> Distribution | None:
        parts = list(traffic(backend, minute)[labels["response_code_class"]])
        shift = 0.0
        if total:
            shift = PROXY_MS[0] + PROXY_MS[1] * unit_hash(backend.group, minute, "proxy")
        return distribution(parts, shift)

    return sample


def project_rps(backends: tuple[Backend, ...], minute: int) -> float:
    """Requests a second through the project's load balancer in that minute."""
    served = sum(n for b in backends for part in traffic(b, minute).values() for n, _ in part)
    return served / SAMPLE_PERIOD


# --- Cloud SQL (cloudsql_database) and Memorystore (redis_instance) -------------------------


@dataclass(frozen=True)
class Database:
    """A Cloud SQL for MySQL instance, loaded by the project's load balancer traffic."""

    project: str
    instance: str
    region: str
    backends: tuple[Backend, ...]
    created_at: float
    connections: int | None = None  # a `db_connections` fault pins the count near it…
    max_connections: int = MAX_CONNECTIONS  # …below this limit

    @property
    def database_id(self) -> str:
        return f"{self.project}:{self.instance}"

    def series_labels(self, resource_type: str) -> tuple[Labels, Labels]:
        return {}, {
            "project_id": self.project,
            "database_id": self.database_id,
            "region": self.region,
        }

    def pressure(self) -> float:
        """0..1: how near its connection limit a `db_connections` fault holds it."""
        return 0.0 if self.connections is None else self.connections / self.max_connections


@dataclass(frozen=True)
class Cache:
    """A Memorystore for Redis instance (basic tier: one node), used as the load goes."""

    project: str
    name: str
    region: str
    backends: tuple[Backend, ...]
    created_at: float

    def series_labels(self, resource_type: str) -> tuple[Labels, Labels]:
        return {}, {
            "project_id": self.project,
            "region": self.region,
            "instance_id": f"projects/{self.project}/locations/{self.region}/instances/{self.name}",
            "node_id": "node-0",
        }


def _noise(key: str, minute: int, salt: str) -> float:
    return unit_hash(key, minute, salt) - 0.5  # -0.5..0.5


def sql_cpu(db: Database, labels: Labels, minute: int) -> float:
    """0..1: a little idle work, more with the request rate, much more near the limit."""
    rps = project_rps(db.backends, minute)
    busy = 0.06 + 0.05 * unit_hash(db.database_id, "cpu-base") + 0.0012 * rps
    value = busy + 0.5 * db.pressure() + 0.04 * _noise(db.database_id, minute, "cpu")
    return round(min(1.0, max(0.01, value)), 4)


def sql_connections(db: Database, labels: Labels, minute: int) -> int:
    """~20-80 with the request rate; near the fault's count (never above its limit)."""
    noise = _noise(db.database_id, minute, "connections")
    if db.connections is not None:
        pinned = db.connections + round(0.01 * db.connections * noise)
        return max(0, min(db.max_connections, pinned))
    return max(1, round(15 + 0.2 * project_rps(db.backends, minute) + 6 * noise))


def sql_memory(db: Database, labels: Labels, minute: int) -> float:
    """0..1: mostly the InnoDB buffer pool, a little more by day and per connection."""
    t = minute * SAMPLE_PERIOD
    value = (
        0.55
        + 0.08 * unit_hash(db.database_id, "memory-base")
        + 0.05 * swell(t)
        + 0.15 * db.pressure()
        + 0.02 * _noise(db.database_id, minute, "memory")
    )
    return round(min(1.0, value), 4)


def redis_hit_ratio(cache: Cache, labels: Labels, minute: int) -> float:
    """0.86-0.96: a little lower at the day's peak, when more keys are cold."""
    t = minute * SAMPLE_PERIOD
    base = 0.9 + 0.04 * unit_hash(cache.name, "hit-base")
    return round(base - 0.02 * swell(t) + 0.04 * _noise(cache.name, minute, "hits"), 4)


def redis_memory(cache: Cache, labels: Labels, minute: int) -> float:
    t = minute * SAMPLE_PERIOD
    base = 0.3 + 0.1 * unit_hash(cache.name, "memory-base")
    return round(base + 0.08 * swell(t) + 0.02 * _noise(cache.name, minute, "memory"), 4)


def redis_clients(cache: Cache, labels: Labels, minute: int) -> int:
    """The app instances' connection pools: ~15-40 with the request rate."""
    rps = project_rps(cache.backends, minute)
    return max(1, round(10 + 0.08 * rps + 4 * _noise(cache.name, minute, "clients")))


LB_LABELS = {"cache_result": "DISABLED"}


def _lb_variants(with_code: bool) -> tuple[Labels, ...]:
    return tuple(
        {"response_code_class": cls, **({"response_code": code} if with_code else {}), **LB_LABELS}
        for cls, code in (("200", "200"), ("500", ERROR_CODE))
    )


METRICS = {
    m.type: m
    for m in (
        Metric(
            "loadbalancing.googleapis.com/https/request_count",
            DELTA,
            INT64,
            "1",
            "Requests served by the external Application Load Balancer, by response code.",
            lb_request_count,
            variants=_lb_variants(True),
            resource_type=HTTPS_LB_RULE,
        ),
        Metric(
            "loadbalancing.googleapis.com/https/total_latencies",
            DELTA,
            DISTRIBUTION,
            "ms",
            "Latency from the proxy receiving the request to the client's ACK of the response.",
            lb_latencies(total=True),
            variants=_lb_variants(False),
            resource_type=HTTPS_LB_RULE,
        ),
        Metric(
            "loadbalancing.googleapis.com/https/backend_latencies",
            DELTA,
            DISTRIBUTION,
            "ms",
            "Latency from the proxy sending the request to the backend's last response byte.",
            lb_latencies(total=False),
            variants=_lb_variants(False),
            resource_type=HTTPS_LB_RULE,
        ),
        Metric(
            "cloudsql.googleapis.com/database/cpu/utilization",
            GAUGE,
            DOUBLE,
            "10^2.%",
            "Current CPU utilization of the Cloud SQL instance (0..1).",
            sql_cpu,
            resource_type=CLOUDSQL_DATABASE,
        ),
        Metric(
            "cloudsql.googleapis.com/database/network/connections",
            GAUGE,
            INT64,
            "1",
            "Connections to the Cloud SQL instance.",
            sql_connections,
            resource_type=CLOUDSQL_DATABASE,
        ),
        Metric(
            "cloudsql.googleapis.com/database/memory/utilization",
            GAUGE,
            DOUBLE,
            "10^2.%",
            "Memory utilization of the Cloud SQL instance (0..1).",
            sql_memory,
            resource_type=CLOUDSQL_DATABASE,
        ),
        Metric(
            "redis.googleapis.com/stats/cache_hit_ratio",
            GAUGE,
            DOUBLE,
            "1",
            "Cache hit ratio of the Memorystore instance, as a fraction.",
            redis_hit_ratio,
            variants=({"role": "primary"},),
            resource_type=REDIS_INSTANCE,
        ),
        Metric(
            "redis.googleapis.com/stats/memory/usage_ratio",
            GAUGE,
            DOUBLE,
            "1",
            "Memory used as a fraction of the Memorystore instance's maximum memory.",
            redis_memory,
            variants=({"role": "primary"},),
            resource_type=REDIS_INSTANCE,
        ),
        Metric(
            "redis.googleapis.com/clients/connected",
            GAUGE,
            INT64,
            "1",
            "Client connections to the Memorystore instance.",
            redis_clients,
            variants=({"role": "primary"},),
            resource_type=REDIS_INSTANCE,
        ),
    )
}


# --- what the world holds, copied out under its lock ----------------------------------------


@dataclass(frozen=True)
class Scene:
    """Every subject of a project's series, by the resource type its series are on."""

    vms: tuple[Vm, ...]
    backends: tuple[Backend, ...]
    databases: tuple[Database, ...]
    caches: tuple[Cache, ...]

    def subjects(self, resource_type: str) -> tuple[Subject, ...]:
        return {
            GCE_INSTANCE: self.vms,
            PROMETHEUS_TARGET: self.vms,
            HTTPS_LB_RULE: self.backends,
            CLOUDSQL_DATABASE: self.databases,
            REDIS_INSTANCE: self.caches,
        }[resource_type]


def scene(world, project: str) -> Scene:
    """The project's VMs, load balancer backends, databases and caches (under the lock)."""
    since = world.started_at - SEEDED_AGE
    environments = [
        (name, env) for name, env in world.environments.items() if env["project"] == project
    ]
    vms = tuple(instances(world, project))
    backends = tuple(lb_backends(world, project, environments, since, vms))
    databases, caches = [], []
    for env_name, env in environments:
        for name, component in managed_components(world, env_name):
            kind = (component.get("probe") or {}).get("kind")
            instance = f"{project}-{name}"
            if component.get("tier") == "database" and kind == "mysql":
                pinned = world.faults.db_connections(env_name, name)
                limits = {}
                if pinned:
                    limits = {"connections": pinned[0], "max_connections": pinned[1]}
                databases.append(
                    Database(project, instance, env["region"], backends, since, **limits)
                )
            elif component.get("tier") == "cache" and kind == "redis":
                caches.append(Cache(project, instance, env["region"], backends, since))
    return Scene(vms, backends, tuple(databases), tuple(caches))


def lb_backends(
    world, project: str, environments: list, since: float, vms: tuple[Vm, ...]
) -> list[Backend]:
    """Each (global backend service, instance group) pair the world's backend services name;
    `vms` are the project's VMs as `instances` copied them."""
    state = world.projects[project]
    by_name = {vm.name: vm for vm in vms}
    migs = {mig.group_path: mig for mig in state.migs.values()}
    owners = {
        spec.get("backend_service"): (env_name, name)
        for env_name, env in environments
        for name, spec in env["components"].items()
        if spec.get("backend_service")
    }
    found = []
    for path, service in sorted(state.backend_services.items()):
        if not path.startswith("global/"):
            continue  # a regional backend service is no part of the global HTTPS load balancer
        owner = owners.get(service["name"])
        down = bool(owner) and world.faults.down(*owner)
        for backend in service.get("backends", []):
            in_project, group = links.key(project, backend.get("group", ""))
            mig = migs.get(group) if in_project == project else None
            if mig is None:
                continue
            serving = tuple(
                by_name[i.name]
                for i in mig.instances
                if not world.faults.lb_unhealthy(
                    i.template, world.template_images(project, i.template), mig.name
                )
            )
            found.append(
                Backend(project, service["name"], mig.name, mig.region, serving, down, since)
            )
    return found


def managed_components(world, env_name: str) -> list[tuple[str, dict]]:
    """The environment's topology components Google runs as a managed service: not deployed
    by Gantry, and not a container on a host a `single_vm` component runs on."""
    try:
        topology = load_topology(world.topology_path)
    except OSError:
        return []
    components = ((topology.get("environments") or {}).get(env_name) or {}).get("components") or {}
    hosts = {
        c.get("host")
        for c in components.values()
        if (c.get("deploy") or {}).get("kind") == "single_vm"
    }
    return [
        (name, c)
        for name, c in components.items()
        if (c.get("deploy") or {}).get("kind", "none") == "none" and c.get("host") not in hosts
    ]
