"""Reachability checks behind /healthz: can this process reach its database and its broker?"""

import time

from django.conf import settings
from django.core.cache import cache
from django.db import connection

from .celery import app as celery_app

HEARTBEAT_KEY = "gantry:worker-heartbeat"


def _timed(check) -> dict:
    started = time.perf_counter()
    try:
        detail = check()
    except Exception as exc:  # any failure means "down"; the text is the useful part
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    result = {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 1)}
    if detail:
        result.update(detail)
    return result


def check_database() -> dict:
    def ping():
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        return {"vendor": connection.vendor}

    return _timed(ping)


def check_broker() -> dict:
    def ping():
        timeout = settings.GANTRY_HEALTHZ_TIMEOUT
        with celery_app.connection_for_write(connect_timeout=timeout) as conn:
            conn.ensure_connection(
                max_retries=1, interval_start=0, interval_step=0, timeout=timeout
            )
            _ = conn.default_channel  # the SQLite transport opens its file here
            return {"transport": conn.transport_cls}

    return _timed(ping)


def worker_heartbeat():
    """When a worker last ran the beat-scheduled heartbeat task (informational only)."""
    try:
        return cache.get(HEARTBEAT_KEY)
    except Exception:
        return None


def report() -> tuple[bool, dict]:
    checks = {"database": check_database(), "broker": check_broker()}
    healthy = all(c["ok"] for c in checks.values())
    body = {
        "status": "ok" if healthy else "unavailable",
        "checks": checks,
        "worker_heartbeat": worker_heartbeat(),
    }
    return healthy, body
