"""Figures for the dashboards: Redis INFO and the LLM server's Prometheus metrics.

Counters only ever grow, so rates and ratios come from the difference between this sample and
the previous one (hit ratio *now*, not since the server started). Metric names for the LLM
server are set per component in the topology (`options.metrics`), defaulting to the names below.
"""

from __future__ import annotations

import asyncio
import math
import re

import redis.asyncio as aioredis
from django.conf import settings
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from .models import Component, Environment, StatSample
from .probes import address, http_session, http_url, run_blocking

# Each counter is a sample name, optionally with label matchers: name{label="v",other=~"re"}.
DEFAULT_LLM_METRICS = {
    "requests": "nemo_ai_requests_total",
    "errors": 'nemo_ai_requests_total{status=~"5.."}',
    "cache_hits": "nemo_ai_cache_hits_total",
    "cache_misses": "nemo_ai_cache_misses_total",
    "tokens": "nemo_ai_generated_tokens_total",
    "latency": "nemo_ai_inference_latency_seconds",
}
SELECTOR = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?$")
MATCHER = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|=)\s*"((?:[^"\\]|\\.)*)"\s*')
REDIS_FIELDS = (
    "keyspace_hits",
    "keyspace_misses",
    "used_memory",
    "maxmemory",
    "evicted_keys",
    "instantaneous_ops_per_sec",
    "connected_clients",
    "total_commands_processed",
)


def ratio(part, whole):
    return round(100.0 * part / whole, 1) if whole else None


def rate(now, before, key, seconds):
    if before is None or key not in now or key not in before or seconds <= 0:
        return None
    delta = now[key] - before[key]
    return round(delta / seconds, 3) if delta >= 0 else None  # a restart resets counters


# --- Redis --------------------------------------------------------------------------------------


async def read_redis(component: Component, timeout: float) -> tuple[dict, list[str]]:
    where = address(component)
    if where is None:
        return {}, ["no address for this Redis (set GANTRY_PROBE_TARGETS)"]
    client = aioredis.Redis(
        host=where[0],
        port=where[1],
        db=int(component.options.get("db", 0)),
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        info = await client.info()
        queues, own_hits, own_misses = {}, 0, 0
        for key in component.options.get("queues", []):
            kind = await client.type(key)
            kind = kind.decode() if isinstance(kind, bytes) else kind
            length = {
                "list": client.llen,
                "stream": client.xlen,
                "zset": client.zcard,
                "set": client.scard,
            }.get(kind)
            if kind == "none":
                own_misses += 1
            else:
                own_hits += 1 + bool(length)
            queues[key] = await length(key) if length else 0
    except Exception as exc:
        return {}, [f"Redis unreachable: {type(exc).__name__}: {exc}"[:300]]
    finally:
        await client.aclose()
    raw = {field: info.get(field, 0) for field in REDIS_FIELDS}
    raw["keys"] = {db: v.get("keys", 0) for db, v in info.items() if db.startswith("db")}
    raw["queues"] = queues
    # Our own lookups above come after INFO, so they land in the next interval's counters.
    raw["own_hits"], raw["own_misses"] = own_hits, own_misses
    return raw, []


def redis_figures(raw: dict, before: dict | None, seconds: float) -> dict:
    hits, misses = raw["keyspace_hits"], raw["keyspace_misses"]
    figures = {
        "hit_ratio_lifetime": ratio(hits, hits + misses),
        "memory_used": raw["used_memory"],
        "memory_max": raw["maxmemory"] or None,
        "memory_pct": ratio(raw["used_memory"], raw["maxmemory"]) if raw["maxmemory"] else None,
        "ops_per_sec": raw["instantaneous_ops_per_sec"],
        "clients": raw["connected_clients"],
        "evicted_keys": raw["evicted_keys"],
        "keys": sum(raw["keys"].values()),
        "queues": raw["queues"],
        "hit_ratio": None,
        "evictions_per_sec": None,
    }
    if before:
        d_hits = hits - before["keyspace_hits"] - before.get("own_hits", 0)
        d_misses = misses - before["keyspace_misses"] - before.get("own_misses", 0)
        if d_hits >= 0 and d_misses >= 0:
            figures["hit_ratio"] = ratio(d_hits, d_hits + d_misses)
        figures["evictions_per_sec"] = rate(raw, before, "evicted_keys", seconds)
    return figures


# --- LLM server (Prometheus text) ---------------------------------------------------------------


def selector(spec: str):
    """'name{a="x",b=~"y.*"}' -> (name, [(label, is_regex, value)]); ValueError if malformed."""
    match = SELECTOR.match(spec.strip())
    if not match:
        raise ValueError(f"bad metric selector {spec!r}")
    name, body = match.groups()
    matchers = []
    for part in filter(None, (body or "").split(",")):
        found = MATCHER.fullmatch(part)
        if not found:
            raise ValueError(f"bad label matcher {part!r} in {spec!r}")
        label, op, value = found.groups()
        matchers.append((label, op == "=~", value))
    return name, matchers


def _matches(labels: dict, matchers) -> bool:
    for label, is_regex, value in matchers:
        actual = labels.get(label, "")
        if (re.fullmatch(value, actual) is None) if is_regex else actual != value:
            return False
    return True


def parse_metrics(text: str, names: dict) -> tuple[dict, list[str]]:
    """Counters summed over the label sets they select, and the latency histogram's
    cumulative buckets."""
    wanted = [(key, *selector(spec)) for key, spec in names.items() if key != "latency"]
    latency = names["latency"]
    raw = {"buckets": {}}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            for key, name, matchers in wanted:
                if sample.name == name and _matches(sample.labels, matchers):
                    raw[key] = raw.get(key, 0.0) + sample.value
            if sample.name == f"{latency}_bucket":
                le = sample.labels.get("le", "+Inf")
                raw["buckets"][le] = raw["buckets"].get(le, 0.0) + sample.value
    missing = [f"metric {names[k]} missing" for k in names if k != "latency" and k not in raw]
    if not raw["buckets"]:
        missing.append(f"metric {latency} (histogram) missing")
    return raw, missing


def quantile(q: float, buckets: dict[str, float]) -> float | None:
    """histogram_quantile over cumulative buckets {le: count}, linear within a bucket."""
    bounds = sorted(((math.inf if le == "+Inf" else float(le)), n) for le, n in buckets.items())
    if not bounds or bounds[-1][1] <= 0:
        return None
    rank = q * bounds[-1][1]
    previous_bound, previous_count = 0.0, 0.0
    for bound, count in bounds:
        if count >= rank:
            if math.isinf(bound):
                return previous_bound
            if count == previous_count:
                return bound
            return previous_bound + (bound - previous_bound) * (rank - previous_count) / (
                count - previous_count
            )
        previous_bound, previous_count = bound, count
    return previous_bound


def llm_figures(raw: dict, before: dict | None, seconds: float) -> dict:
    figures = {
        k: None
        for k in (
            "requests_per_sec",
            "tokens_per_sec",
            "error_pct",
            "cache_hit_ratio",
            "p50_ms",
            "p95_ms",
        )
    }
    buckets = raw.get("buckets", {})
    if before:
        figures["requests_per_sec"] = rate(raw, before, "requests", seconds)
        figures["tokens_per_sec"] = rate(raw, before, "tokens", seconds)
        d = {
            k: raw.get(k, 0) - before.get(k, 0)
            for k in ("requests", "errors", "cache_hits", "cache_misses")
        }
        if min(d.values()) >= 0:
            figures["error_pct"] = ratio(d["errors"], d["requests"])
            figures["cache_hit_ratio"] = ratio(d["cache_hits"], d["cache_hits"] + d["cache_misses"])
        old = before.get("buckets", {})
        delta = {le: n - old.get(le, 0) for le, n in buckets.items()}
        if delta and min(delta.values()) >= 0 and max(delta.values()) > 0:
            buckets = delta
    for q, key in ((0.5, "p50_ms"), (0.95, "p95_ms")):
        value = quantile(q, buckets)
        figures[key] = round(value * 1000, 1) if value is not None else None
    return figures


async def read_llm(component, session, timeout: float) -> tuple[dict, list]:
    names = {**DEFAULT_LLM_METRICS, **component.options.get("metrics", {})}
    path = component.options.get("metrics_path", "/metrics")
    base = http_url(component)
    if base is None:
        return {}, ["no address for the metrics endpoint"]
    url = base.removesuffix(component.probe_path or "/").rstrip("/") + path
    try:
        async with session.get(url) as response:
            response.raise_for_status()
            text = await response.text()
        return parse_metrics(text, names)
    except Exception as exc:
        return {}, [f"metrics unreachable: {type(exc).__name__}: {exc}"[:300]]


# --- Collecting ---------------------------------------------------------------------------------


def stat_kind(component: Component) -> str | None:
    if component.probe_kind == Component.ProbeKind.REDIS:
        return StatSample.Kind.REDIS
    if "metrics_path" in component.options or "metrics" in component.options:
        return StatSample.Kind.LLM
    return None


async def _read_all(components, timeout):
    async with http_session(timeout) as session:
        jobs = [
            read_redis(c, timeout)
            if stat_kind(c) == StatSample.Kind.REDIS
            else read_llm(c, session, timeout)
            for c in components
        ]
        return await asyncio.gather(*jobs)


def collect(environment_id: int) -> list[StatSample]:
    """Read Redis and LLM figures of one environment at once and store a sample each."""
    components = [
        c
        for c in Component.objects.filter(environment_id=environment_id).select_related(
            "environment"
        )
        if stat_kind(c)
    ]
    if not components:
        return []
    readings = run_blocking(_read_all(components, settings.GANTRY_PROBE_TIMEOUT))
    now = timezone.now()
    samples = []
    for component, (raw, problems) in zip(components, readings, strict=True):
        kind = stat_kind(component)
        before = (
            StatSample.objects.filter(component=component, kind=kind, ok=True)
            .order_by("-at", "-id")
            .first()
        )
        ok = bool(raw) and not (kind == StatSample.Kind.REDIS and problems)
        data = {"raw": raw}
        if raw:
            seconds = (now - before.at).total_seconds() if before else 0
            previous = before.data.get("raw") if before else None
            compute = redis_figures if kind == StatSample.Kind.REDIS else llm_figures
            data["figures"] = compute(raw, previous, seconds)
        samples.append(
            StatSample(component=component, kind=kind, at=now, ok=ok, data=data, problems=problems)
        )
    stored = StatSample.objects.bulk_create(samples)
    Environment.readings_stored(environment_id, now)
    return stored
