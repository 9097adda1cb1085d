"""Blocking waits on GCP work, for tests only: the engine never blocks, it polls step by step."""

from __future__ import annotations

import time

import requests

from gcp.adapter import GcpAdapter, operation_state
from gcp.errors import BuildFailed, OperationFailed, OperationTimeout
from gcp.types import BuildState, OperationRef, OperationState

GCRANE = "gcr.io/go-containerregistry/gcrane"


def wait(gcp: GcpAdapter, ref: OperationRef | str, timeout: float = 30.0) -> OperationState:
    """Block on operations.wait until DONE; raise OperationFailed if it ended in error."""
    ref = OperationRef.parse(ref) if isinstance(ref, str) else ref
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise OperationTimeout(f"operation {ref} not done after {timeout:g}s")
        try:
            op = gcp._operation_call(ref, "wait", timeout=min(left, 150.0) + 1.0)
        except requests.Timeout:
            continue
        state = operation_state(op)
        if state.done:
            if state.errors:
                raise OperationFailed.of(state)
            return state


def wait_build(gcp: GcpAdapter, project: str, build_id: str, timeout: float = 30.0) -> BuildState:
    """Poll until the build finishes; raise BuildFailed unless it succeeded."""
    deadline = time.monotonic() + timeout
    while True:
        build = gcp.get_build(project, build_id)
        if build.finished:
            if build.status != "SUCCESS":
                raise BuildFailed(build.id, build.status, build.detail)
            return build
        if time.monotonic() >= deadline:
            raise OperationTimeout(f"build {build_id} still {build.status} after {timeout:g}s")
        time.sleep(0.002)


def copy_image(gcp: GcpAdapter, project: str, source: str, destination: str) -> str:
    return gcp.create_build(project, [{"name": GCRANE, "args": ["cp", source, destination]}])
