"""Benchmark: one probe sweep over N HTTP endpoints that each answer after a delay.

The old shell loop probed one endpoint at a time (N x delay). Gantry probes many at once
(GANTRY_PROBE_CONCURRENCY), so a sweep should take about one delay plus its own overhead. This
measures the whole sweep as the worker runs it: the probes, then storing N samples, health rows
and events. Beside each sweep, in the same run, the floor: a bare asyncio client (streams, no
library) sending the same N requests to the same server, all at once.

    .venv/bin/python bench/probe_sweep.py [--endpoints 1000] [--delay 0.1] [--runs 5]

Target (issue 17): every probe reported up, and the sweep's median wall time within 1.5x of
(delay + the bare client's median), measured side by side; CPU seconds per probe of this
process (the worker) are reported beside it. It uses a throw-away SQLite database under a
temporary folder and an asyncio HTTP server in its own process on a free loopback port, and
prints (and writes bench/out/probe_sweep.json) the medians and spread.
"""

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


async def serve_slowly(delay: float, ready: multiprocessing.Queue):
    """HTTP/1.1 server answering every request with 200 after `delay` seconds."""

    async def handle(reader, writer):
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                await asyncio.sleep(delay)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=4096)
    ready.put(server.sockets[0].getsockname()[1])
    async with server:
        await server.serve_forever()


class SlowServer:
    """The slow server in its own process, as a real service would be."""

    def __init__(self, delay: float):
        self.ready = multiprocessing.Queue()
        self.process = multiprocessing.Process(
            target=lambda: asyncio.run(serve_slowly(delay, self.ready)), daemon=True
        )

    def __enter__(self):
        self.process.start()
        self.port = self.ready.get(timeout=10)
        return self

    def __exit__(self, *exc):
        self.process.kill()


async def bare_client(port: int, count: int) -> int:
    """`count` GET requests at once with asyncio's own streams; how many got a 200."""

    async def one(n: int) -> bool:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(f"GET /bench/c{n}/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            await writer.drain()
            status = await reader.readuntil(b"\r\n")
            await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(2)
            return status.startswith(b"HTTP/1.1 200")
        finally:
            writer.close()

    return sum(await asyncio.gather(*(one(n) for n in range(count))))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoints", type=int, default=1000)
    parser.add_argument("--delay", type=float, default=0.1)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", default=str(ROOT / "bench" / "out" / "probe_sweep.json"))
    args = parser.parse_args()

    var = tempfile.mkdtemp(prefix="gantry-bench-")
    os.environ.update(
        {"GANTRY_VAR_DIR": var, "DATABASE_URL": "", "DJANGO_SETTINGS_MODULE": "portal.settings"}
    )
    import django

    django.setup()
    import logging

    from django.conf import settings
    from django.core.management import call_command

    from environments import monitoring
    from environments.models import Component, Environment, Network, ProbeSample

    logging.disable(logging.INFO)
    call_command("migrate", verbosity=0)
    env = Environment.objects.create(
        name="bench", gcp_project="bench", region="r1", zones=["r1-a"], registry="r/bench"
    )
    net = Network.objects.create(environment=env, name="net", vpc="bench-vpc")
    Component.objects.bulk_create(
        Component(
            environment=env,
            network=net,
            name=f"c{i}",
            tier="frontend",
            port=80,
            probe_kind="http",
            probe_path="/",
            deploy_kind="none",
            position=i,
        )
        for i in range(args.endpoints)
    )
    timings, bare, cpu = [], [], []
    with SlowServer(args.delay) as server:
        settings.GANTRY_STACK_URL = f"http://127.0.0.1:{server.port}"
        for _ in range(args.runs):
            started = time.perf_counter()
            answered = asyncio.run(bare_client(server.port, args.endpoints))
            bare.append(time.perf_counter() - started)
            if answered != args.endpoints:
                raise SystemExit(f"the bare client got {answered} of {args.endpoints} answers")
            started, cpu_started = time.perf_counter(), time.process_time()
            monitoring.sweep(env.pk)
            timings.append(time.perf_counter() - started)
            cpu.append(time.process_time() - cpu_started)

    up = ProbeSample.objects.filter(status="up").count()
    total = ProbeSample.objects.count()
    median, floor = statistics.median(timings), statistics.median(bare)
    result = {
        "benchmark": "probe_sweep",
        "endpoints": args.endpoints,
        "delay_s": args.delay,
        "runs": args.runs,
        "concurrency": settings.GANTRY_PROBE_CONCURRENCY,
        "timeout_s": settings.GANTRY_PROBE_TIMEOUT,
        "median_s": round(median, 3),
        "min_s": round(min(timings), 3),
        "max_s": round(max(timings), 3),
        "bare_client_median_s": round(floor, 3),
        "ratio": round(median / (args.delay + floor), 2),
        "cpu_ms_per_probe": round(1000 * statistics.median(cpu) / args.endpoints, 3),
        "serial_estimate_s": round(args.endpoints * args.delay, 1),
        "samples_up": up,
        "samples_total": total,
        "target": "every probe up; median <= 1.5 x (delay + bare client median)",
    }
    result["meets_target"] = result["ratio"] <= 1.5 and up == total
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    print(
        f"probe sweep: {result['median_s']} s for {args.endpoints} probes; bare client "
        f"{result['bare_client_median_s']} s; ratio {result['ratio']} (target <= 1.5); "
        f"{up} of {total} up; {result['cpu_ms_per_probe']} ms CPU per probe: "
        f"{'met' if result['meets_target'] else 'MISSED'}"
    )


if __name__ == "__main__":
    multiprocessing.set_start_method("fork")
    main()
