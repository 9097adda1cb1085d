"""The engine's tests under a CPU hog: they must pass on a machine busier than any CI run.

Starts `stress-ng --cpu 4` (four workers spinning on the machine's cores), runs the engine,
fault-campaign, GitHub-status and dashboard tests under it, stops stress-ng, and exits non-zero
if any test failed or errored, or if stress-ng was not running the whole time. Not part of
`make test`: run it with `make stress-check` (docs/benchmarks.md has the last result).

    .venv/bin/python bench/stress_check.py                  # SQLite, then PostgreSQL if it is up
    .venv/bin/python bench/stress_check.py --databases sqlite
    .venv/bin/python bench/stress_check.py --cpu 8 -- -k campaign   # pytest arguments after --

The tests run on SQLite, then (when its server answers on 127.0.0.1) on PostgreSQL with only the
tests that touch the database, as tests/matrix.py does: the Celery worker-thread tests and the
worker-kill test need a server database and are skipped on SQLite. Each run has its own var/
folder, Redis databases and PostgreSQL test database, so a `make test` beside it is not
disturbed. Logs go to var/stress-check/, the figures to bench/out/stress_check.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.matrix import DATABASES, REDIS, reachable  # noqa: E402

TESTS = [
    "tests/deployments",  # the engine, the fault campaign, the worker-kill test
    "tests/github/test_github_status.py",
    "tests/environments",  # the dashboards, the MIG panel, probes
    "tests/browser/test_dashboards.py",  # the dashboards in Chromium, refreshed by HTMX
]
# Redis databases per run (tests, notifications): apart from tests/matrix.py's 10..15.
REDIS_DBS = {"sqlite": (9, 8), "postgres": (7, 6), "mysql": (5, 4)}
LOGS = ROOT / "var" / "stress-check"
OUT = ROOT / "bench" / "out" / "stress_check.json"
# stress-ng stops by itself after this long, should this script die without stopping it.
STRESS_LIMIT = "3h"


def say(line: str) -> None:
    print(f"stress-check: {line}", flush=True)


def core_share(seconds: float = 2.0) -> float:
    """The share of one core a busy Python process gets now: CPU time over wall time while it
    spins (about 1.0 on an idle machine; stress-ng's hogs take their part of the rest)."""
    wall, cpu = time.perf_counter(), time.process_time()
    while time.perf_counter() - wall < seconds:
        sum(range(10_000))
    return (time.process_time() - cpu) / (time.perf_counter() - wall)


class Stress:
    """stress-ng in its own process group (stopped by that group's id), and the load it makes."""

    def __init__(self, cpu: int):
        self.cpu = cpu
        self.process: subprocess.Popen | None = None
        self.loads: list[float] = []
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)

    def start(self) -> None:
        binary = shutil.which("stress-ng")
        if not binary:
            raise SystemExit("stress-ng is not installed (make stress-check installs it)")
        command = [binary, "--cpu", str(self.cpu), "--timeout", STRESS_LIMIT, "--quiet"]
        with (LOGS / "stress-ng.log").open("w") as log:
            self.process = subprocess.Popen(
                command, start_new_session=True, stdout=log, stderr=subprocess.STDOUT
            )
        time.sleep(2.0)  # its workers spin up
        if not self.running():
            raise SystemExit(f"stress-ng exited at once (code {self.process.returncode})")
        self._sampler.start()

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _sample(self) -> None:
        while not self._stop.wait(5.0):
            self.loads.append(os.getloadavg()[0])

    def stop(self) -> None:
        self._stop.set()
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)


def run_env(name: str, url: str) -> dict:
    tests_db, notify_db = REDIS_DBS[name]
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "GANTRY_VAR_DIR": str(ROOT / "var" / f"stress-{name}"),
        "GANTRY_TEST_REDIS_URL": f"{REDIS}/{tests_db}",
        "GANTRY_TEST_NOTIFY_REDIS_URL": f"{REDIS}/{notify_db}",
        "GANTRY_SCREENSHOT_DIR": str(LOGS / f"screenshots-{name}"),
    }
    if name != "sqlite":
        env["GANTRY_TEST_DB_ONLY"] = "1"
    return env


def own_database(url: str) -> str:
    """The server's URL with a database name of the check's own (pytest-django makes test_<it>),
    so a `make test` on the same server at the same time keeps its test database."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=(parts.path.rstrip("/") or "/gantry") + "_stress"))


def counts(junit: Path) -> dict:
    """passed / failed / errors / skipped from pytest's JUnit XML."""
    if not junit.exists():
        return {"tests": 0, "passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    suites = ET.parse(junit).getroot()
    suite = suites if suites.tag == "testsuite" else suites.find("testsuite")
    tests, failed, errors, skipped = (
        int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")
    )
    return {
        "tests": tests,
        "passed": tests - failed - errors - skipped,
        "failed": failed,
        "errors": errors,
        "skipped": skipped,
        "failing": [
            f"{case.get('classname')}::{case.get('name')}"
            for case in suite.iter("testcase")
            if case.find("failure") is not None or case.find("error") is not None
        ],
    }


def run_tests(name: str, url: str, extra: list[str], stress: Stress) -> dict:
    junit = LOGS / f"{name}.xml"
    log = LOGS / f"{name}.log"
    junit.unlink(missing_ok=True)
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfEs"]
    command += ["--durations=15"]
    command += ["--junitxml", str(junit), *TESTS, *extra]
    say(f"{name}: {' '.join(command[1:])}  (log: {log.relative_to(ROOT)})")
    started = time.monotonic()
    with log.open("w") as out:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=run_env(name, url),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            for line in process.stdout:
                out.write(line)
                sys.stdout.write(line)
            code = process.wait()
        except BaseException:  # interrupted: the tests stop too
            process.terminate()
            process.wait(timeout=60)
            raise
    seconds = time.monotonic() - started
    result = {
        "database": name,
        "exit_code": code,
        "seconds": round(seconds, 1),
        "stress_ran_throughout": stress.running(),
        **counts(junit),
    }
    say(
        f"{name}: {result['passed']} passed, {result['failed']} failed, {result['errors']} "
        f"errors, {result['skipped']} skipped in {seconds:.0f} s (pytest exit {code})"
    )
    return result


def interrupt(signum, frame):
    """SIGTERM and SIGHUP (make stopped, the terminal closed) end the check like Ctrl-C does:
    stress-ng is stopped on the way out."""
    raise KeyboardInterrupt


def main() -> int:
    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGHUP, interrupt)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu", type=int, default=4, help="stress-ng CPU workers (default 4)")
    parser.add_argument(
        "--databases",
        nargs="+",
        default=["sqlite", "postgres"],
        choices=["sqlite", *DATABASES],
        help="where to run the tests (default: sqlite postgres; an unreachable server is "
        "left out with the reason)",
    )
    parser.add_argument("pytest_args", nargs="*", help="passed to pytest (after --)")
    args = parser.parse_args()

    runs = {}
    skipped = {}
    for name in args.databases:
        if name == "sqlite":
            runs[name] = ""
        elif why := reachable(DATABASES[name]):
            skipped[name] = why
            say(f"left out the {name} run: {why}")
        else:
            runs[name] = own_database(DATABASES[name])
    LOGS.mkdir(parents=True, exist_ok=True)

    calm = core_share()
    loaded = None
    stress = Stress(args.cpu)
    began = time.monotonic()
    results = []
    interrupted = False
    try:
        stress.start()
        loaded = core_share()
        say(
            f"stress-ng --cpu {args.cpu} running (pid {stress.process.pid}) on "
            f"{os.cpu_count()} cores: a busy process gets {loaded:.0%} of a core "
            f"({calm:.0%} before stress-ng started)"
        )
        for name, url in runs.items():
            results.append(run_tests(name, url, args.pytest_args, stress))
    except KeyboardInterrupt:
        interrupted = True
    finally:
        stress.stop()
    seconds = time.monotonic() - began
    say("stress-ng stopped")

    total = {key: sum(r[key] for r in results) for key in ("passed", "failed", "errors")}
    loads = stress.loads or [0.0]
    problems = [f"{r['database']}: {t}" for r in results for t in r.get("failing", [])]
    problems += [
        f"{r['database']}: pytest exited {r['exit_code']}" for r in results if r["exit_code"] != 0
    ]
    problems += [
        f"{r['database']}: stress-ng was not running to the end"
        for r in results
        if not r["stress_ran_throughout"]
    ]
    if interrupted:
        problems.append("interrupted")
    if not results:
        problems.append("no test run")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(
        json.dumps(
            {
                "when": time.strftime("%Y-%m-%d %H:%M:%S"),
                "command": " ".join(["bench/stress_check.py", *sys.argv[1:]]),
                "stress": f"stress-ng --cpu {args.cpu}",
                "cores": os.cpu_count(),
                "core_share": {
                    "before": round(calm, 2),
                    "under_stress": loaded and round(loaded, 2),
                },
                "load_average_1min": {"mean": round(sum(loads) / len(loads), 2), "max": max(loads)},
                "tests": TESTS,
                "runs": results,
                "left_out": skipped,
                "seconds": round(seconds, 1),
                "problems": problems,
            },
            indent=2,
        )
        + "\n"
    )
    say(
        f"load average (1 min) during the runs: mean {sum(loads) / len(loads):.1f}, max "
        f"{max(loads):.1f} on {os.cpu_count()} cores"
    )
    verdict = "FAILED" if problems else "PASSED"
    say(
        f"{verdict}: {total['passed']} passed, {total['failed']} failed, {total['errors']} "
        f"errors in {seconds:.0f} s ({OUT.relative_to(ROOT)})"
    )
    for problem in problems:
        say(f"  {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
