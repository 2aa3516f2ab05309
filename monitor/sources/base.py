"""The one interface of a live lab source, and what it may ask of the service.

A source is a long-running task (a listener or a poller) that turns raw input into
ingest calls and acknowledges only what ingest committed. It never touches the
store itself.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import hashlib
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from monitor.services.payloads import PayloadResult


class Ingest(Protocol):
    """The service's door: parse, store or quarantine, commit, then return."""

    def __call__(
        self,
        payload: bytes | str,
        fmt: str,
        source: str,
        whole: bool = False,
        assume_tz: str = "UTC",
        source_name: str | None = None,
    ) -> PayloadResult: ...


T = TypeVar("T")


class Threads:
    """A source's own worker threads, where its handlers parse and then wait for the
    writer's commit. On the event loop's default executor (six threads on two cores)
    eight MLLP connections held every thread waiting, and the dispatcher's database
    work queued behind them: a flood on one door slowed every alert. Sized to the
    source's own connection bound."""

    def __init__(self, name: str, size: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max(size, 1), thread_name_prefix=name)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` on one of these threads, with the caller's context (as
        `asyncio.to_thread`)."""
        loop = asyncio.get_running_loop()
        call = functools.partial(contextvars.copy_context().run, fn, *args)
        return await loop.run_in_executor(self._pool, call)

    def close(self) -> None:
        """No new work; what was handed over still runs (and is committed)."""
        self._pool.shutdown(wait=False)


def timezone_of(settings: Mapping[str, Any]) -> str:
    """The zone of times a sender gives without an offset (`timezone`, default UTC)."""
    zone = str(settings.get("timezone", "UTC"))
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"timezone: unknown time zone {zone!r}") from exc
    return zone


def content_name(name: str, raw: bytes) -> str:
    """A file's name plus a hash of its bytes: the same export dropped twice is a
    duplicate; another export under the same name is not."""
    return f"{name}:{hashlib.sha256(raw).hexdigest()[:12]}"


class Source(Protocol):
    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...
