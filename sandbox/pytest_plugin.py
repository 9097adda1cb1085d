"""Pytest fixtures: a sandbox per test on a free loopback port, torn down afterwards.

    sandbox                the running Sandbox (`.url`, `.reset()`, `.inject_fault(kind, **spec)`,
                           `.advance(seconds)`, `.mig(project, name)`, `.history(project, mig)`,
                           `.state()`, `.world`, `.github`: the fake GitHub's state, at
                           `.url + "/github"`)
    sandbox_factory        sandbox_factory(speed=0, boot_time=…) for a sandbox with other options
    sandbox_settings       `sandbox`, with Django's GANTRY_* endpoint settings pointing at it

Tests run at SPEED simulated seconds per real second: a 20 s boot takes 10 ms.
"""

from __future__ import annotations

import pytest

SPEED = 2000.0
TEST_OPTIONS = {"speed": SPEED, "boot_time": 20.0, "wait_timeout": 0.2}


@pytest.fixture
def sandbox_factory():
    from sandbox.server import Sandbox

    started = []

    def start(**options):
        box = Sandbox(host="127.0.0.1", port=0, **(TEST_OPTIONS | options)).start()
        started.append(box)
        return box

    yield start
    for box in started:
        box.stop()


@pytest.fixture
def sandbox(sandbox_factory):
    return sandbox_factory()


@pytest.fixture
def sandbox_settings(sandbox, settings):
    for name, value in sandbox.urls().items():
        setattr(settings, name, value)
    return sandbox
