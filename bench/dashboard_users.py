"""Locust users for bench/dashboard_load.py (run by it; not imported by Gantry).

Each user is signed in by the session cookie the bench made for it (BENCH_SESSIONS: a JSON file
of session keys) and checks every answer's status and content, so a redirect to the sign-in page
counts as an error, not as a fast success.

DashboardUser visits, in turn, what a person with the dashboards open looks at: the overview
page (what runs where), then its HTMX fragment as the page polls it, three times; one
environment's page and three polls of its tiles; one component's page (with its history); the
DORA insights; the deployments and releases lists. One request per wait. A poll sends the
`If-None-Match` the browser's HTTP cache would (the ETag of that fragment's last answer) and
takes a 304 as the answer it is. Each user starts at its own place in the round (seeded by its
number), so 150 users do not ask for the same page in step. FloorUser asks the
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
# How often a page's live part polls while the person looks at it, before they move on.
POLLS = 3


class SignedIn(FastHttpUser):
    abstract = True
    wait_time = between(WAIT / 2, WAIT * 1.5) if WAIT else constant(0)

    def on_start(self):
        self.index = index = next(_next)
        self.cookie = {"Cookie": f"{COOKIE}={SESSIONS[index % len(SESSIONS)]}"}
        self.environment_name = sorted(TARGETS)[index % len(TARGETS)]
        self.component = random.Random(index).choice(TARGETS[self.environment_name])
        self.etags = {}

    def get(self, path, name, marker, htmx=False):
        headers = {**self.cookie, **(HTMX if htmx else {})}
        held = self.etags.get(path) if htmx else None
        if held:
            headers["If-None-Match"] = held
        with self.client.get(
            path, headers=headers, name=name, allow_redirects=False, catch_response=True
        ) as response:
            if response.status_code == 304 and held:
                return
            if response.status_code != 200:
                response.failure(f"status {response.status_code}")
            elif marker not in (response.text or ""):
                response.failure(f"{marker!r} not in the answer")
            elif htmx and response.headers.get("ETag"):
                self.etags[path] = response.headers["ETag"]


class DashboardUser(SignedIn):
    def on_start(self):
        super().on_start()
        env, component = self.environment_name, self.component
        overview_poll = ("/", "overview fragment (HX)", 'id="overview"', True)
        tiles_poll = (
            f"/environments/{env}/",
            "environment fragment (HX)",
            f'id="tiles-{env}"',
            True,
        )
        visits = [
            ("/", "overview page", 'id="overview"', False),
            *[overview_poll] * POLLS,
            (f"/environments/{env}/", "environment page", f'id="tiles-{env}"', False),
            *[tiles_poll] * POLLS,
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
        start = random.Random(f"start-{self.index}").randrange(len(visits))
        self.cycle = itertools.cycle(visits[start:] + visits[:start])

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
