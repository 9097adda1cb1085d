"""demo/keep_up.py: a demo process that exits by itself is started again, and counted; one that
is told to stop ends the wrapper with it."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.sqlite_is_enough
# Only a bound against hanging, never a measure of speed.
PATIENCE = 120


def wait_for(predicate, process):
    deadline = time.monotonic() + PATIENCE
    while not predicate():
        assert process.poll() is None, "keep_up ended by itself"
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_a_crashed_process_is_started_again_and_a_stopped_one_is_not(tmp_path):
    # The child crashes on its first run (no marker yet) and then stays up until it is told.
    marker = tmp_path / "ran-once"
    child = (
        "import pathlib, sys, time\n"
        f"m = pathlib.Path({str(marker)!r})\n"
        "if not m.exists():\n"
        "    m.touch(); sys.exit(3)\n"
        "pathlib.Path(str(m) + '.up').touch()\n"
        "time.sleep(600)\n"
    )
    env = {**os.environ, "GANTRY_VAR_DIR": str(tmp_path)}
    wrapper = subprocess.Popen(
        [sys.executable, "-m", "demo.keep_up", "worker", sys.executable, "-c", child],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: Path(f"{marker}.up").exists(), wrapper)
        wrapper.send_signal(signal.SIGTERM)
        code = wrapper.wait(PATIENCE)
    finally:
        wrapper.kill()

    restarts = (tmp_path / "demo" / "restarts.log").read_text().splitlines()
    assert len(restarts) == 1 and restarts[0].endswith("worker exited with 3")
    assert code == 128 + signal.SIGTERM  # the child's own end, passed on; no restart
    assert "worker exited with 3; starting it again in 1 s" in wrapper.stdout.read()
