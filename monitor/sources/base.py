"""The one interface of a live lab source, and what it may ask of the service.

A source is a long-running task (a listener or a poller) that turns raw input into
ingest calls and acknowledges only what ingest committed. It never touches the
store itself.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, Protocol
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
