"""Locust users for bench/dashboard_load.py (run by it; not imported by Gantry).

Each user is signed in by the session cookie the bench made for it (BENCH_SESSIONS: a JSON file
of session keys) and checks every answer's status and content, so a redirect to the sign-in page
counts as an error, not as a fast success.

DashboardUser asks in turn, one request per wait, for what a person with the dashboards open
loads: the overview page (what runs where) and its HTMX fragment, one environment's page and its
fragment, one component's page (with its history), the DORA insights and the deployments and
releases lists. FloorUser asks the
same server for the cheapest view that still goes through the whole middleware stack with a
session: GET /login/ when signed in answers a redirect to / and renders nothing.
"""

import itertools
import json
import os
import random
from pathlib import Path

from locust import FastHttpUser, between, constant, task

SESSIONS = json.loads(Path(os.environ["BENCH_SESSIONS"]).read_text())
TARGETS = json.loads(os.environ["BENCH_TARGETS"])  # {"prod": ["frontend", …], "dev": […]}
COOKIE = os.environ.get("BENCH_SESSION_COOKIE", "sessionid")
WAIT = float(os.environ.get("BENCH_WAIT", "1"))
_next = itertools.count()
HTMX = {"HX-Request": "true"}


class SignedIn(FastHttpUser):
    abstract = True
    wait_time = between(WAIT / 2, WAIT * 1.5) if WAIT else constant(0)

    def on_start(self):
        index = next(_next)
        self.cookie = {"Cookie": f"{COOKIE}={SESSIONS[index % len(SESSIONS)]}"}
        self.environment_name = sorted(TARGETS)[index % len(TARGETS)]
        self.component = random.Random(index).choice(TARGETS[self.environment_name])

    def get(self, path, name, marker, htmx=False):
        headers = {**self.cookie, **(HTMX if htmx else {})}
        with self.client.get(
            path, headers=headers, name=name, allow_redirects=False, catch_response=True
        ) as response:
            if response.status_code != 200:
                response.failure(f"status {response.status_code}")
            elif marker not in (response.text or ""):
                response.failure(f"{marker!r} not in the answer")


class DashboardUser(SignedIn):
    def on_start(self):
        super().on_start()
        env, component = self.environment_name, self.component
        self.cycle = itertools.cycle(
            [
                ("/", "overview page", 'id="overview"', False),
                ("/", "overview fragment (HX)", 'id="overview"', True),
                (f"/environments/{env}/", "environment page", f'id="tiles-{env}"', False),
                (f"/environments/{env}/", "environment fragment (HX)", f'id="tiles-{env}"', True),
                (
                    f"/environments/{env}/components/{component}/",
                    "component page",
                    "Latency, last 24 h",
                    False,
                ),
                ("/insights/", "DORA insights", "Delivery insights (DORA)", False),
                ("/deployments/", "deployments list", "newest first", False),
                ("/releases/", "releases list", "newest first", False),
            ]
        )

    @task
    def poll(self):
        self.get(*next(self.cycle))


class FloorUser(SignedIn):
    @task
    def poll(self):
        with self.client.get(
            "/login/",
            headers=self.cookie,
            name="signed-in /login/ (redirect)",
            allow_redirects=False,
            catch_response=True,
        ) as response:
            if response.status_code != 302 or response.headers.get("Location") != "/":
                response.failure(f"status {response.status_code}, not a redirect to /")
