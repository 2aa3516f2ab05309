"""One writer with group commit: every source's messages are stored by one thread.

Six worker threads each opening `BEGIN IMMEDIATE` on SQLite spent most of their time
waiting for each other in the busy handler, and each message paid its own commit.
Here the sources parse on their own threads and hand the writer a unit of work; the
writer takes everything that is waiting (up to `max_batch`), runs each unit in its
own savepoint (one failure rolls back only its own unit; a unit alone in its batch
needs none: its failure rolls back the transaction), commits once, and only
then answers every caller. So a source still acknowledges only what is durable, and
a busy moment costs one commit per batch instead of one per message. A
`before_commit` hook runs once per batch inside its transaction (the daemon judges
the batch's patients there, so alerts are still written before any ACK, and claims
their first sends), and `after_commit` once after the commit (the daemon hands those
claims to its dispatcher in memory).

While the writer commits one batch the next one gathers; a busy writer also waits
up to `GATHER_S` for company (see `BUSY_S`), so a burst is written in batches of
several messages, and a message that finds the writer quiet is written at once.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import structlog
from sqlalchemy.engine import Engine
from sqlmodel import Session

log = structlog.get_logger(__name__)

T = TypeVar("T")


class WriterStopped(RuntimeError):
    """The writer was stopped before this unit was committed: nothing of it is stored."""


@dataclass
class _Unit(Generic[T]):
    work: Callable[[Session], T]
    done: threading.Event = field(default_factory=threading.Event)
    result: T | None = None
    error: BaseException | None = None


_STOP: Any = object()
GATHER_S = 0.004  # how long a batch waits for company when the writer is busy
# A message that comes within this of the last batch's commit finds the writer busy:
# at 200 msg/s over 8 MLLP connections, batches of 1-1.4 messages each paid the
# ~1.9 ms fixed cost nearly alone, and the writer's load (68% -> 88% over a 10 s
# phase) and the latency rose with it. Waiting for company there halves the cost.
BUSY_S = 0.010


class GroupWriter:
    """Stores units of work in batches, one savepoint each, one commit per batch."""

    def __init__(
        self,
        engine: Engine,
        max_batch: int = 200,
        before_commit: Callable[[Session, list[Any]], Any] | None = None,
        after_commit: Callable[[Any], None] | None = None,
    ) -> None:
        self.engine = engine
        self.max_batch = max_batch
        # Runs after the batch's units, in its transaction, with the results of those
        # that succeeded (the daemon judges their patients here, once per batch).
        self.before_commit = before_commit
        # Runs on the writer's thread after a successful commit, with what
        # `before_commit` returned (the daemon hands the batch's claimed sends to its
        # dispatcher here), before the callers are answered.
        self.after_commit = after_commit
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stopped = False
        self.gather_s = GATHER_S
        self.busy_s = BUSY_S
        self._last = 0  # units in the last batch
        self._ended = float("-inf")  # monotonic time the last batch was committed
        self.batches = 0  # commits made: a burst shows fewer batches than units
        self.units = 0

    def submit(self, work: Callable[[Session], T]) -> T:
        """Run `work` in the writer's transaction; returns after the commit, or raises
        what `work` raised (its savepoint rolled back) or why the commit failed."""
        self._ensure_started()
        unit: _Unit[T] = _Unit(work)
        self._queue.put(unit)
        unit.done.wait()
        if unit.error is not None:
            raise unit.error
        return unit.result  # type: ignore[return-value]

    def stop(self, timeout: float = 30.0) -> None:
        """Write what is waiting, then stop; later submits raise `WriterStopped`."""
        with self._lock:
            self._stopped = True
            thread = self._thread
        if thread is not None:
            self._queue.put(_STOP)
            thread.join(timeout)
        self._fail_waiting()

    def _ensure_started(self) -> None:
        with self._lock:
            if self._stopped:
                raise WriterStopped("the writer is stopped: nothing was stored")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="group-writer", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch: list[_Unit[Any]] = [first]
            stop = False
            # A busy writer (the last batch had company, or ended a moment ago): give
            # the other senders a moment to finish parsing, so a batch's evaluation and
            # commit are shared by more messages. A message that finds the writer
            # quiet never waits.
            began = time.monotonic()
            busy = self._last > 1 or began - self._ended < self.busy_s
            until = began + self.gather_s if busy else None
            while len(batch) < self.max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    left = until - time.monotonic() if until is not None else 0.0
                    if left <= 0:
                        break
                    try:
                        more = self._queue.get(timeout=left)
                    except queue.Empty:
                        break
                if more is _STOP:
                    stop = True
                    break
                batch.append(more)
            self._last = len(batch)
            self._write(batch)
            self._ended = time.monotonic()
            if stop:
                return

    def _write(self, batch: list[_Unit[Any]]) -> None:
        session = Session(self.engine, expire_on_commit=False)
        try:
            if len(batch) == 1:  # alone: its failure is the batch's, no savepoint needed
                unit = batch[0]
                try:
                    unit.result = unit.work(session)
                except Exception as exc:
                    session.rollback()
                    unit.error = exc
                    return
            else:
                for unit in batch:
                    savepoint = session.begin_nested()
                    try:
                        unit.result = unit.work(session)
                        savepoint.commit()
                    except Exception as exc:  # this unit only; the others go on
                        savepoint.rollback()
                        unit.error = exc
            carried = None
            if self.before_commit is not None:
                carried = self.before_commit(session, [u.result for u in batch if u.error is None])
            session.commit()
            self.batches += 1
            self.units += len(batch)
            if self.after_commit is not None:
                try:
                    self.after_commit(carried)
                except Exception:  # committed: the units stand whatever happens here
                    log.exception("writer.after_commit_failed", units=len(batch))
        except Exception as exc:  # the commit itself: nothing of the batch is stored
            log.error("writer.commit_failed", units=len(batch), error=type(exc).__name__)
            self._discard(session)
            for unit in batch:
                if unit.error is None:
                    unit.result, unit.error = None, exc
        finally:
            session.close()
            for unit in batch:
                unit.done.set()

    @staticmethod
    def _discard(session: Session) -> None:
        """After a failed commit the connection may still be inside its transaction:
        roll it back, or drop the connection, so the next batch starts clean."""
        try:
            session.rollback()
            connection = session.connection()
            connection.invalidate()
        except Exception:
            log.warning("writer.discard_failed", exc_info=True)

    def _fail_waiting(self) -> None:
        while True:
            try:
                unit = self._queue.get_nowait()
            except queue.Empty:
                return
            if unit is not _STOP:
                unit.error = WriterStopped("the writer stopped before this was stored")
                unit.done.set()
