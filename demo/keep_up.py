"""Keep one of the demo's processes up: run it again when it exits by itself.

honcho stops every process when one of them exits, so a worker that died would take web, beat
and the sandbox with it. Under this wrapper a crash costs a restart (after 1 s, doubling to
30 s while it keeps crashing within a minute of starting), and each restart is appended to
var/demo/restarts.log, which the soak check (bench/soak.py) counts. SIGTERM and SIGINT, from
honcho or Ctrl-C, go to the process and end the wrapper with it.

    python -m demo.keep_up NAME COMMAND [ARGS...]
"""

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

FIRST_WAIT = 1.0
LONGEST_WAIT = 30.0
STEADY_AFTER = 60.0


def restarts_log() -> Path:
    var = Path(os.environ.get("GANTRY_VAR_DIR") or Path(__file__).resolve().parent.parent / "var")
    return var / "demo" / "restarts.log"


def record(name: str, code: int) -> None:
    path = restarts_log()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as log:
        log.write(f"{datetime.now(UTC).isoformat()} {name} exited with {code}\n")


def main(name: str, command: list[str]) -> int:
    stopping = False
    child: subprocess.Popen | None = None

    def stop(signum, frame):
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    wait = FIRST_WAIT
    while True:
        started = time.monotonic()
        child = subprocess.Popen(command)
        code = child.wait()
        if code < 0:  # ended by a signal: the shell's way of saying which
            code = 128 - code
        if stopping:
            return code
        record(name, code)
        wait = FIRST_WAIT if time.monotonic() - started > STEADY_AFTER else wait
        print(f"keep_up: {name} exited with {code}; starting it again in {wait:g} s", flush=True)
        time.sleep(wait)
        if stopping:
            return code
        wait = min(wait * 2, LONGEST_WAIT)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2:]))
