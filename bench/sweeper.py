"""The workers' side of the dashboard bench (run by bench/dashboard_load.py as its own process,
with the web server's production settings; not imported by Gantry).

Stamps each environment's readings as new at its probe interval, as the beat's sweeps do, by
the same `Environment.readings_stored` they call, so the dashboards are drawn ahead here for
whoever is looking, exactly as in a Celery worker. Prints "ready" once Django is set up, then
runs until its standard input closes, then prints the CPU seconds it used after "ready".
"""

import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    django.setup()
    from environments.models import Environment

    intervals = dict(Environment.objects.values_list("pk", "probe_interval"))
    stopping = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stopping.set()), daemon=True).start()
    started = time.process_time()
    print("ready", flush=True)
    due = {pk: time.monotonic() + interval for pk, interval in intervals.items()}
    while not stopping.wait(0.2):
        for pk, at in due.items():
            if time.monotonic() >= at:
                Environment.readings_stored(pk)
                due[pk] = at + intervals[pk]
    print(f"cpu_s {time.process_time() - started:.3f}", flush=True)


if __name__ == "__main__":
    main()
