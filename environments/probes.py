"""Health probes: one async function per probe kind, run concurrently, each with its own timeout.

Workers call these (deployment verification, and the beat-driven probe sweep); pages never do.
Where a probe connects is decided by `target()`: the component's own host and port, unless
settings point it elsewhere (GANTRY_STACK_URL for the sandbox's HTTP stack, GANTRY_PROBE_TARGETS
for TCP-level probes such as Redis and MySQL).
"""

from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import aiohttp
import redis.asyncio as aioredis
from django.conf import settings
from django.utils import timezone
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from .models import Component

UP, DOWN, UNKNOWN = "up", "down", "unknown"


@dataclass
class ProbeResult:
    status: str
    latency_ms: float | None = None
    detail: str = ""
    checked_at: str = field(default_factory=lambda: timezone.now().isoformat())

    @property
    def ok(self) -> bool:
        return self.status == UP

    def as_dict(self) -> dict:
        return asdict(self)


class ProbeFailed(Exception):
    """The target answered, but not as expected; the message says how."""


def probe_targets() -> dict[str, tuple[str, int]]:
    """GANTRY_PROBE_TARGETS: 'prod/redis=127.0.0.1:6379,dev/redis=…' → {'prod/redis': (h, p)}."""
    targets = {}
    for item in settings.GANTRY_PROBE_TARGETS.split(","):
        if "=" in item:
            key, address = item.strip().split("=", 1)
            host, _, port = address.rpartition(":")
            targets[key] = (host, int(port))
    return targets


def address(component: Component) -> tuple[str, int] | None:
    override = probe_targets().get(f"{component.environment.name}/{component.name}")
    if override:
        return override
    if settings.GANTRY_STACK_URL:
        return None  # sandbox mode: never aim a real address the sandbox does not serve
    return component.host, component.port


def http_url(component: Component) -> str | None:
    path = component.probe_path or "/"
    if settings.GANTRY_STACK_URL:
        base = settings.GANTRY_STACK_URL.rstrip("/")
        return f"{base}/{component.environment.name}/{component.name}{path}"
    where = address(component)
    return f"http://{where[0]}:{where[1]}{path}" if where else None


def http_session(timeout: float) -> aiohttp.ClientSession:
    """One session for a whole sweep, and nothing from the environment (no proxies) between
    Gantry and what it probes, nor from one target to the next (no cookie jar). Its connections
    are not limited here: probe_all bounds how many probes run at once, and a probe waiting for
    a connection would count that wait."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
        timeout=aiohttp.ClientTimeout(total=timeout),
        trust_env=False,
        cookie_jar=aiohttp.DummyCookieJar(),
    )


async def _http(component: Component, session: aiohttp.ClientSession, timeout: float) -> str:
    url = http_url(component)
    if url is None:
        raise LookupError("no address to probe")
    async with session.get(url, allow_redirects=False) as response:
        body = await response.read()
        status = response.status
    expected = component.probe_expect_status
    if component.probe_kind == Component.ProbeKind.CHROMA:
        expected = 200
    if status != expected:
        raise ProbeFailed(f"HTTP {status}, expected {expected}")
    want = component.probe_expect_json
    if component.probe_kind == Component.ProbeKind.CHROMA:
        want = {}
    if want:
        try:
            body = json.loads(body)
        except ValueError:
            raise ProbeFailed("answer is not JSON") from None
        wrong = {
            k: body.get(k)
            for k, v in want.items()
            if not isinstance(body, dict) or body.get(k) != v
        }
        if wrong:
            raise ProbeFailed(f"JSON {wrong} does not match {want}")
    return f"HTTP {status}"


async def _tcp(component: Component, timeout: float) -> str:
    where = address(component)
    if where is None:
        raise LookupError("no address to probe (set GANTRY_PROBE_TARGETS)")
    reader, writer = await asyncio.wait_for(asyncio.open_connection(*where), timeout)
    try:
        if component.probe_kind == Component.ProbeKind.MYSQL:
            # The server speaks first: a handshake packet whose payload starts with version 10.
            header = await asyncio.wait_for(reader.readexactly(5), timeout)
            if header[4] == 0xFF:
                raise ProbeFailed("server refused the connection (error packet)")
            if header[4] != 10:
                raise ProbeFailed(f"unexpected handshake protocol {header[4]}")
            return "handshake v10"
        return "connected"
    finally:
        writer.close()


async def _redis(component: Component, timeout: float) -> str:
    where = address(component)
    if where is None:
        raise LookupError("no address to probe (set GANTRY_PROBE_TARGETS)")
    client = aioredis.Redis(
        host=where[0],
        port=where[1],
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),  # one attempt: a probe reports, it does not insist
    )
    try:
        if not await client.ping():
            raise ProbeFailed("PING did not answer PONG")
        return "PONG"
    finally:
        await client.aclose()


async def probe(component: Component, session, timeout: float) -> ProbeResult:
    """Probe one component; never raises: every failure becomes a result with its reason.
    Its latency and its timeout both count from here, when it connects."""
    started = time.perf_counter()
    kind = component.probe_kind
    try:
        if kind in (Component.ProbeKind.HTTP, Component.ProbeKind.CHROMA):
            detail = await asyncio.wait_for(_http(component, session, timeout), timeout)
        elif kind == Component.ProbeKind.REDIS:
            detail = await asyncio.wait_for(_redis(component, timeout), timeout)
        else:
            detail = await asyncio.wait_for(_tcp(component, timeout), timeout)
    except LookupError as exc:
        return ProbeResult(UNKNOWN, detail=str(exc))
    except TimeoutError:
        return ProbeResult(DOWN, detail=f"timed out after {timeout:g}s")
    except ProbeFailed as exc:
        latency = round((time.perf_counter() - started) * 1000, 1)
        return ProbeResult(DOWN, latency, str(exc))
    except Exception as exc:  # connection refused, DNS, protocol errors: all mean "down"
        return ProbeResult(DOWN, detail=f"{type(exc).__name__}: {exc}"[:300])
    return ProbeResult(UP, round((time.perf_counter() - started) * 1000, 1), detail)


async def probe_all(
    components, timeout: float | None = None, concurrency: int | None = None
) -> dict[int, ProbeResult]:
    """Probe every component, at most GANTRY_PROBE_CONCURRENCY at once; one slow target never
    delays the others.

    A probe's clock starts when its turn comes, not when the sweep began: on a machine too
    busy to open a thousand connections at once, the sweep takes longer, and no target is
    reported down for the time it waited behind the others (nor for a descriptor limit)."""
    timeout = timeout or settings.GANTRY_PROBE_TIMEOUT
    turns = asyncio.Semaphore(concurrency or settings.GANTRY_PROBE_CONCURRENCY)
    components = list(components)

    async def in_turn(component: Component, session) -> ProbeResult:
        async with turns:
            return await probe(component, session, timeout)

    async with http_session(timeout) as session:
        results = await asyncio.gather(*(in_turn(c, session) for c in components))
    return {c.pk: r for c, r in zip(components, results, strict=True)}


def run_blocking(coroutine):
    """Run a coroutine to its end from synchronous code (Celery tasks, the engine).

    A thread that already runs an event loop (Playwright's sync API leaves one behind, so may an
    eventlet worker) cannot start another, so the coroutine then runs on a short-lived thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def probe_now(components, timeout: float | None = None) -> dict[int, ProbeResult]:
    """Probe the components now and wait for every result."""
    return run_blocking(probe_all(list(components), timeout))
