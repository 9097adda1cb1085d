"""Run the real Redis one of the demo's Redis components stands for, on its loopback port.

    python -m demo.redis_server ENV/COMPONENT

The port comes from GANTRY_PROBE_TARGETS (the Makefile sets it; the probes read the same
variable), so the demo names each address once. The process becomes redis-server itself (exec),
so honcho's and keep_up's signals reach Redis, which keeps nothing on disk. Without redis-server
installed (or with no address for the component, which the Makefile leaves out then) it says so
and idles: honcho stops every process when one exits, and the component stays unknown, with
the probe saying it has no address.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys

from sandbox.mysql import is_loopback, parse_targets


def command(key: str, targets: str, server: str | None) -> list[str] | str:
    """redis-server's argv for `key`, or why it cannot run."""
    where = parse_targets(targets).get(key)
    if server is None:
        return f"redis-server is not installed (make redis-server): {key} stays unknown"
    if where is None:
        return f"GANTRY_PROBE_TARGETS gives {key} no address: it stays unknown"
    host, port = where
    if not is_loopback(host):
        return f"{key}: the demo's Redis listens on loopback only, not {host}"
    return [
        server,
        "--bind", host,
        "--port", str(port),
        "--save", "",
        "--appendonly", "no",
        "--protected-mode", "yes",
    ]  # fmt: skip


def main(key: str) -> int:
    argv = command(key, os.environ.get("GANTRY_PROBE_TARGETS", ""), shutil.which("redis-server"))
    if isinstance(argv, str):
        print(f"redis_server: {argv}", flush=True)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: sys.exit(0))
        while True:
            signal.pause()
    os.execv(argv[0], argv)
    return 1  # not reached


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1]))
