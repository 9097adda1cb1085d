"""Simulated time: the sandbox's clock runs `speed` times faster than the real one.

Every state change in the sandbox is scheduled in simulated seconds, so a test at speed 2000 and
a demo at speed 1 go through exactly the same sequence of states, only faster.
"""

from __future__ import annotations

import threading
import time


class SimClock:
    def __init__(self, speed: float = 1.0, start: float = 0.0):
        self._lock = threading.Lock()
        self._speed = float(speed)
        self._base_sim = float(start)
        self._base_real = time.monotonic()

    def now(self) -> float:
        with self._lock:
            return self._base_sim + (time.monotonic() - self._base_real) * self._speed

    @property
    def speed(self) -> float:
        return self._speed

    def _rebase(self) -> None:
        real = time.monotonic()
        self._base_sim += (real - self._base_real) * self._speed
        self._base_real = real

    def set_speed(self, speed: float) -> None:
        with self._lock:
            self._rebase()
            self._speed = float(speed)

    def advance(self, seconds: float) -> None:
        """Jump forward: what would have happened in `seconds` happens at the next request."""
        with self._lock:
            self._rebase()
            self._base_sim += seconds

    def set(self, sim_time: float) -> None:
        with self._lock:
            self._base_sim = float(sim_time)
            self._base_real = time.monotonic()

    def real_seconds(self, sim_seconds: float) -> float:
        """How long to sleep in real time for `sim_seconds` to pass (inf when frozen)."""
        return sim_seconds / self._speed if self._speed > 0 else float("inf")
