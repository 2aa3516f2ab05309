"""The one interface of a live lab source, and what it may ask of the service.

A source is a long-running task (a listener or a poller) that turns raw input into
ingest calls and acknowledges only what ingest committed. It never touches the
store itself.
"""

from __future__ import annotations

from typing import Protocol

from monitor.services.ingest import PayloadResult


class Ingest(Protocol):
    """The service's door: parse, store or quarantine, commit, then return."""

    def __call__(
        self, payload: bytes | str, fmt: str, source: str, whole: bool = False
    ) -> PayloadResult: ...


class Source(Protocol):
    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...
