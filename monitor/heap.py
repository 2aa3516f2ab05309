"""Keep the cyclic garbage collector off the start-up heap.

A started service holds some 160,000 long-lived objects (SQLAlchemy's mappers and
compiled statements, pydantic models, the profiles, the web app). Every full
collection walked all of them: in a sweep of 1,000 due patients the collector took
about 15% of the time (135 ms of 880), all of it in generation 2. Once start-up is
done they are collected once and frozen (moved to a generation the collector never
scans, `gc.freeze`); everything made later is collected as before.

A batch (`monitor ingest` of a file, a quarantine retry) is the other case: its
parsed values, stored rows and histories all live until its commit, so the
collector's full passes over that growing heap free nothing (a 100,000-value CSV
file: 13 passes, nothing collected, a quarter of the time). `batch()` defers full
passes to the batch's end; the young generations are still collected.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import structlog

log = structlog.get_logger(__name__)


def settle() -> int:
    """Collect start-up garbage, then freeze what survives. Returns how many objects
    were frozen."""
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.debug("heap.frozen", objects=frozen)
    return frozen


_BATCHES = 0  # batches running, in any thread
_SAVED: tuple[int, int, int] | None = None
_LOCK = threading.Lock()
NO_FULL_PASS = 1 << 30  # generation-1 collections before a full one: never, in practice


@contextmanager
def batch() -> Iterator[None]:
    """No full collection while the block runs (nested or in several threads: until
    the last one ends); generations 0 and 1 are collected as usual."""
    global _BATCHES, _SAVED
    with _LOCK:
        if _BATCHES == 0:
            _SAVED = gc.get_threshold()
            gc.set_threshold(_SAVED[0], _SAVED[1], NO_FULL_PASS)
        _BATCHES += 1
    try:
        yield
    finally:
        with _LOCK:
            _BATCHES -= 1
            if _BATCHES == 0 and _SAVED is not None:
                gc.set_threshold(*_SAVED)
                _SAVED = None
