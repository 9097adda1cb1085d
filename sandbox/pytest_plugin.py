"""Pytest fixtures: a sandbox per test on a free loopback port, torn down afterwards.

    sandbox                the running Sandbox (`.url`, `.reset()`, `.inject_fault(kind, **spec)`,
                           `.advance(seconds)`, `.mig(project, name)`, `.history(project, mig)`,
                           `.state()`, `.world`, `.github`: the fake GitHub's state, at
                           `.url + "/github"`)
    sandbox_factory        sandbox_factory(speed=0, boot_time=…) for a sandbox with other options
    sandbox_settings       `sandbox`, with Django's GANTRY_* endpoint settings pointing at it

Tests run at SPEED simulated seconds per real second: a 20 s boot takes 10 ms.

The fake GitHub is held to GitHub's contract: when a test that started a sandbox ends, every
call it made to /github is checked against @octokit/openapi (tests/contract/github_artifacts.py)
— the request body against the operation's requestBody schema, the fake's answer against the
response schema for its status — and every webhook the fake delivered against
@octokit/openapi-webhooks. A mismatch fails the test at teardown. When the artifacts were not
fetched (`make github-artifacts`) the check is left out. A test that sends GitHub bad requests on
purpose marks itself `@pytest.mark.github_bad_requests`: then calls the fake refused with a 4xx
are not held to the request schema (their answers still are).

Compute and Cloud Build are held to Google's discovery documents the same way: the sandbox
answers a request they refuse with a 400 itself, and at teardown every 2xx answer it recorded
(`Sandbox.gcp_calls`) is checked against the method's response schema (sandbox/discovery.py).
Without google-api-python-client the check is left out.
"""

from __future__ import annotations

import pytest


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "github_bad_requests: the test sends the fake GitHub invalid requests on purpose; calls "
        "it refused with a 4xx are not checked against @octokit/openapi's request schemas",
    )


def github_contract_problems(github, bad_requests_ok: bool = False) -> list[str]:
    """Every recorded /github call and delivered webhook checked against GitHub's artifacts; the
    problems found, one line each (empty when the artifacts are absent)."""
    try:
        from tests.contract import github_artifacts as contract
    except ImportError:
        return []
    if not contract.available():
        return []
    problems = []
    for call in list(github.calls):
        if "status" not in call:
            continue
        where = f"{call['method']} {call['path']}"
        refused = 400 <= call["status"] < 500
        checks = [
            (
                "response",
                contract.validate_response,
                (call["method"], call["path"], call["status"], call["response"]),
            )
        ]
        if not (bad_requests_ok and refused):
            checks.insert(
                0,
                (
                    "request",
                    contract.validate_request,
                    (call["method"], call["path"], call["body"]),
                ),
            )
        for what, check, args in checks:
            try:
                check(*args)
            except AssertionError as exc:
                problems.append(f"{where} ({what}, answered {call['status']}): {exc}")
    for delivery in list(github.deliveries):
        name = "-".join(p for p in (delivery["event"], delivery["action"]) if p).replace("_", "-")
        try:
            contract.validate_webhook(name, delivery["request"]["payload"])
        except AssertionError as exc:
            problems.append(f"delivery {delivery['id']} ({name}): {exc}")
    return problems


def gcp_contract_problems(box) -> list[str]:
    """Every 2xx Compute/Cloud Build answer the sandbox recorded, against the response schema
    in Google's discovery documents (empty when google-api-python-client is absent)."""
    from sandbox import discovery

    return discovery.recorded_problems(box.gcp_calls) if discovery.available() else []


SPEED = 2000.0
TEST_OPTIONS = {"speed": SPEED, "boot_time": 20.0, "wait_timeout": 0.2}


@pytest.fixture
def sandbox_factory(request):
    from sandbox.server import Sandbox

    started = []

    def start(**options):
        box = Sandbox(host="127.0.0.1", port=0, **(TEST_OPTIONS | options)).start()
        started.append(box)
        return box

    yield start
    for box in started:
        box.stop()
    bad_requests_ok = request.node.get_closest_marker("github_bad_requests") is not None
    problems = [
        line for box in started for line in github_contract_problems(box.github, bad_requests_ok)
    ]
    gcp_problems = [line for box in started for line in gcp_contract_problems(box)]
    failures = []
    if problems:
        failures.append(
            "the fake GitHub saw calls GitHub's contract refuses:\n" + "\n".join(problems)
        )
    if gcp_problems:
        failures.append(
            "the sandbox answered Compute/Cloud Build calls with bodies Google's discovery "
            "documents refuse:\n" + "\n".join(gcp_problems)
        )
    if failures:
        pytest.fail("\n\n".join(failures), pytrace=False)


@pytest.fixture
def sandbox(sandbox_factory):
    return sandbox_factory()


@pytest.fixture
def sandbox_settings(sandbox, settings):
    for name, value in sandbox.urls().items():
        setattr(settings, name, value)
    return sandbox
