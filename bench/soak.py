"""Soak check: the demo stack (`make demo`, embedded default: SQLite, the SQLite broker, the
sandbox) under a steady stream of webhooks, probes and deployments, for 30 minutes.

It starts `make demo` on its own ports with a fresh var folder (var/bench/soak), then, until the
time is up: every --every seconds a signed `workflow_run` delivery of a new build (its image
pushed to the sandbox registry first), alternating develop (dev deploys at once) and main (prod
waits); every minute the approver signs in and approves what waits, through the page's form.
Beat probes both environments every 5 s meanwhile. Then it waits for the stack to settle and
checks:
- 0 crashes: no demo process exited by itself (demo/keep_up.py logs each restart) and honcho
  still runs;
- every delivery resolved (none left "accepted"), each into its release; every deployment ended
  or waiting for a person; the health check answers ok and the worker's heartbeat is fresh.

    .venv/bin/python bench/soak.py [--minutes 30] [--every 10] [--port 8620] [--sandbox-port 8920]

Writes bench/out/soak.json; exits 1 if a check fails.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, write

VAR = ROOT / "var" / "bench" / "soak"
SECRET = "demo-webhook-secret"
BUILDS = {"develop": ("nemo-team/nemo-api", "backend"), "main": ("nemo-team/nemo-web", "frontend")}
# How long the stack may take to settle once the stream stops (a bound, not a target).
SETTLE = 600


def start_demo(port: int, sandbox_port: int, log) -> subprocess.Popen:
    env = {**os.environ, "GANTRY_VAR_DIR": str(VAR)}
    for name in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE"):
        env.pop(name, None)
    command = ["make", "demo", f"PORT={port}", f"SANDBOX_PORT={sandbox_port}"]
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def wait_healthy(base: str, demo: subprocess.Popen, patience: float = 600) -> None:
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        if demo.poll() is not None:
            raise SystemExit(f"make demo ended with {demo.returncode}; see {VAR}/demo.log")
        try:
            if httpx.get(f"{base}/healthz", timeout=5).json().get("status") == "ok":
                return
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(1)
    raise SystemExit(f"the demo did not answer /healthz within {patience:g} s")


class Stream:
    """The builds GitHub Actions would report, and the person who approves them."""

    def __init__(self, base: str, sandbox: str):
        from github.payloads import sign

        self.sign = sign
        self.base, self.sandbox = base, sandbox
        self.http = httpx.Client(timeout=30)
        self.person = httpx.Client(base_url=base, timeout=30, follow_redirects=False)
        self.sent: dict[str, int] = {}
        self.approved = 0
        self.n = 0

    def build(self, branch: str) -> None:
        from environments.models import Component, Repository

        self.n += 1
        full_name, component_name = BUILDS[branch]
        sha = f"{int(time.time() * 1000):012x}{self.n:028x}"[-40:]
        repository = Repository.objects.get(full_name=full_name)
        component = Component.objects.filter(name=component_name).first()
        image = f"{repository.registry}/{component.image}:{sha}"
        self.http.post(f"{self.sandbox}/_sandbox/images", json={"image": image}).raise_for_status()
        payload = {
            "action": "completed",
            "workflow_run": {
                "id": 7_000_000 + self.n,
                "name": "build",
                "head_branch": branch,
                "head_sha": sha,
                "event": "push",
                "head_repository": {"full_name": full_name},
                "run_number": self.n,
                "run_attempt": 1,
                "status": "completed",
                "conclusion": "success",
                "html_url": f"https://github.com/{full_name}/actions/runs/{7_000_000 + self.n}",
                "actor": {"login": "dev-alice"},
                "triggering_actor": {"login": "dev-alice"},
                "head_commit": {
                    "id": sha,
                    "message": f"Soak build {self.n}",
                    "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
                },
                "display_title": f"Soak build {self.n}",
            },
            "workflow": {"name": "build"},
            "repository": {"full_name": full_name},
            "sender": {"login": "dev-alice"},
        }
        body = json.dumps(payload).encode()
        guid = f"soak-{self.n}"
        response = self.http.post(
            f"{self.base}/webhooks/github/",
            content=body,
            headers={
                "Content-Type": "application/json",
                "X-GitHub-Event": "workflow_run",
                "X-GitHub-Delivery": guid,
                "X-Hub-Signature-256": self.sign(SECRET, body),
            },
        )
        self.sent[guid] = response.status_code

    def sign_in(self) -> None:
        self.person.cookies.clear()
        page = self.person.get("/login/")
        token = self.person.cookies["csrftoken"]
        response = self.person.post(
            "/login/",
            data={"username": "approver", "password": "gantry-demo", "csrfmiddlewaretoken": token},
            headers={"Referer": f"{self.base}/login/"},
        )
        if response.status_code != 302:
            raise SystemExit(f"the approver could not sign in: {response.status_code} {page}")

    def approve_waiting(self) -> None:
        from deployments.models import Deployment

        waiting = Deployment.objects.filter(state=Deployment.State.PENDING_APPROVAL)
        for pk in waiting.values_list("pk", flat=True):
            response = self.person.post(
                f"/deployments/{pk}/decide/",
                data={
                    "decision": "approve",
                    "csrfmiddlewaretoken": self.person.cookies["csrftoken"],
                },
                headers={"Referer": f"{self.base}/deployments/{pk}/"},
            )
            self.approved += response.status_code == 302


def settle(deadline: float) -> dict:
    """Wait until nothing is left to do but wait for people; returns the database's counts."""
    from deployments.models import Deployment
    from github.models import WebhookDelivery

    S = Deployment.State
    while True:
        accepted = WebhookDelivery.objects.filter(outcome=WebhookDelivery.Outcome.ACCEPTED)
        running = Deployment.objects.exclude(state__in=[*Deployment.FINAL, S.PENDING_APPROVAL])
        if (not accepted.exists() and not running.exists()) or time.monotonic() > deadline:
            break
        time.sleep(2)
    deployments = {}
    for state in Deployment.objects.values_list("state", flat=True):
        deployments[state] = deployments.get(state, 0) + 1
    deliveries = {}
    for outcome in WebhookDelivery.objects.values_list("outcome", flat=True):
        deliveries[outcome] = deliveries.get(outcome, 0) + 1
    return {"deliveries": deliveries, "deployments": deployments}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--every", type=float, default=10, help="seconds between deliveries")
    parser.add_argument("--port", type=int, default=8620)
    parser.add_argument("--sandbox-port", type=int, default=8920)
    parser.add_argument("--out", default="bench/out/soak.json")
    args = parser.parse_args()

    import shutil

    shutil.rmtree(VAR, ignore_errors=True)
    VAR.mkdir(parents=True)
    base = f"http://127.0.0.1:{args.port}"
    sandbox = f"http://127.0.0.1:{args.sandbox_port}"
    log = open(VAR / "demo.log", "w")  # noqa: SIM115 - closed at the end
    demo = start_demo(args.port, args.sandbox_port, log)
    started = datetime.now(UTC)
    try:
        wait_healthy(base, demo)
        os.environ.update(GANTRY_VAR_DIR=str(VAR), DJANGO_SETTINGS_MODULE="portal.settings")
        os.environ.pop("DATABASE_URL", None)
        os.environ.pop("REDIS_URL", None)
        import django

        django.setup()
        stream = Stream(base, sandbox)
        stream.sign_in()
        end = time.monotonic() + args.minutes * 60
        last_approval = time.monotonic()
        branches = ("develop", "main")
        print(f"soak: {args.minutes:g} min against {base}, a delivery every {args.every:g} s")
        while time.monotonic() < end and demo.poll() is None:
            stream.build(branches[stream.n % 2])
            if time.monotonic() - last_approval >= 60:
                stream.approve_waiting()
                last_approval = time.monotonic()
            time.sleep(args.every)
        stream.approve_waiting()
        counts = settle(time.monotonic() + SETTLE)
        from deployments.models import Approval

        approvals = Approval.objects.filter(decision=Approval.Decision.APPROVE).count()
        health = httpx.get(f"{base}/healthz", timeout=10).json()
        honcho_up = demo.poll() is None
    finally:
        os.killpg(demo.pid, signal.SIGINT)
        try:
            demo.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(demo.pid, signal.SIGKILL)
        log.close()

    restarts_log = VAR / "demo" / "restarts.log"
    restarts = restarts_log.read_text().splitlines() if restarts_log.exists() else []
    heartbeat = health.get("worker_heartbeat")
    fresh = bool(heartbeat) and datetime.fromisoformat(heartbeat) > datetime.now(UTC) - timedelta(
        minutes=2
    )
    answered = {}
    for status in stream.sent.values():
        answered[status] = answered.get(status, 0) + 1
    result = {
        "started": started.isoformat(),
        "minutes": args.minutes,
        "deliveries_sent": len(stream.sent),
        "answered": answered,
        "approvals_sent": stream.approved,
        "approvals_recorded": approvals,
        **counts,
        "restarts": restarts,
        "honcho_up_at_the_end": honcho_up,
        "healthz": health.get("status"),
        "worker_heartbeat_fresh": fresh,
    }
    problems = []
    if restarts or not honcho_up:
        problems.append(f"crashes: {restarts or 'honcho ended'}")
    if counts["deliveries"].get("accepted") or set(answered) - {202}:
        problems.append(f"deliveries not all resolved: {counts['deliveries']}, answers {answered}")
    if counts["deliveries"].get("released", 0) != len(stream.sent):
        problems.append(f"{len(stream.sent)} sent, {counts['deliveries']} recorded")
    # The sandbox injects no faults here: every deployment succeeds, is superseded by a newer
    # build, or waits for a person.
    if stream.approved and not approvals:
        problems.append(f"{stream.approved} approvals sent, none recorded")
    if set(counts["deployments"]) - {"succeeded", "superseded", "pending_approval"}:
        problems.append(f"deployments not as expected: {counts['deployments']}")
    if health.get("status") != "ok" or not fresh:
        problems.append(f"health {health}")
    result["problems"] = problems
    write(args.out, result)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
