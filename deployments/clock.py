"""The engine's clock: deadlines (rollout, verify, warm) and state-change times are read from it.

By default it is the wall clock. A test or a bench drives it instead (`driven_by`), usually
with the sandbox's simulated time, so a deadline means the same thing on a fast machine and on
one under heavy load: the engine never races the machine's speed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime

from django.utils import timezone

_source: Callable[[], datetime] = timezone.now


def now() -> datetime:
    return _source()


@contextmanager
def driven_by(source: Callable[[], datetime]) -> Iterator[None]:
    """Read the engine's time from `source` (an aware-datetime callable) inside the block."""
    global _source
    previous, _source = _source, source
    try:
        yield
    finally:
        _source = previous
