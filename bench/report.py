"""The report `make bench` ends with: one line per benchmark from the JSON each left in
bench/out/, written to bench/out/report.md and printed. docs/benchmarks.md quotes these figures
with the commands, the machine and what was learnt from them."""

import json
import os
import platform
import sys
from datetime import date
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"


def _verdict(data: dict) -> str:
    if data.get("ok") is False or data.get("violations"):
        return f"FAILED: {len(data.get('violations') or [])} violations"
    if "meets_target" in data:
        return "target met" if data["meets_target"] else "target missed"
    return "ok"


def probe_sweep(d):
    if "ratio" not in d:  # written before the bare client was measured beside it
        return f"{d['endpoints']} endpoints: median {d['median_s']} s"
    return (
        f"{d['endpoints']} endpoints: median {d['median_s']} s, bare client "
        f"{d['bare_client_median_s']} s: ratio {d['ratio']}x (target <= 1.5); "
        f"{d['samples_up']} of {d['samples_total']} up; {d['cpu_ms_per_probe']} ms CPU per probe"
    )


def orchestration(d):
    return f"{d['components']} rolling deployments: median {d['median_s']} s ({d['runs']} runs)"


def dashboard_load(d):
    dash, floor = d["median"]["dashboard"], d["median"]["floor"]
    cpu = "gantry_cpu_ms_per_request"
    return (
        f"{d['users']} users: dashboard p95 {dash['p95_ms']} ms, floor p95 {floor['p95_ms']} ms "
        f"({d['p95_ratio']}x, target <= 3); CPU per request {dash.get(cpu)} / "
        f"{floor.get(cpu)} ms ({d.get('cpu_ratio')}x, target <= 3); {dash['rps']} req/s, "
        f"{dash['errors']} errors"
    )


def webhook_burst(d):
    m = d["median"]
    line = (
        f"{d['deliveries']} deliveries, {d['connections']} connections: "
        f"{m['deliveries_per_s']}/s, p99 {m['p99_ms']} ms"
    )
    if "throughput_ratio" in d:
        line += (
            f"; floor view {m['floor_deliveries_per_s']}/s, p99 {m['floor_p99_ms']} ms: "
            f"throughput {d['throughput_ratio']}x (target >= 0.5), p99 {d['p99_ratio']}x "
            f"(target <= 3); gunicorn CPU per delivery {m['gunicorn_cpu_ms_per_delivery']} / "
            f"{m['floor_cpu_ms_per_delivery']} ms"
        )
    return line


def _ends(d):
    outcomes = ", ".join(f"{n} {state}" for state, n in d["outcomes"].items())
    spread = d["duration_s"]
    return f"{outcomes}; p50/p95/max {spread['p50']}/{spread['p95']}/{spread['max']} s"


def fault_campaign(d):
    return f"{d['deployments']} deployments (seed {d['seed']}): {_ends(d)}"


def worker_kills(d):
    return f"{d['deployments']} deployments, {d['kills']} kills: {_ends(d)}"


LINES = {
    f.__name__: f
    for f in (
        probe_sweep,
        orchestration,
        dashboard_load,
        webhook_burst,
        fault_campaign,
        worker_kills,
    )
}


def main() -> int:
    rows, failed = [], False
    for name, line in LINES.items():
        path = OUT / f"{name}.json"
        if not path.exists():
            rows.append(f"| {name} | not run | |")
            continue
        data = json.loads(path.read_text())
        verdict = _verdict(data)
        failed |= verdict.startswith("FAILED")
        rows.append(f"| {name} | {line(data)} | {verdict} |")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    text = "\n".join(
        [
            f"# Gantry benchmarks, {date.today():%Y-%m-%d}",
            "",
            f"{platform.node()}: {os.cpu_count()} CPUs, {platform.platform()}, "
            f"Python {platform.python_version()}; load average now {load}.",
            "",
            "| benchmark | figures | verdict |",
            "|---|---|---|",
            *rows,
            "",
        ]
    )
    OUT.mkdir(exist_ok=True)
    (OUT / "report.md").write_text(text)
    print(text)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
