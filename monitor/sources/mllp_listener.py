"""`mllp` source: HL7 v2 over MLLP, ACK only after commit.

Each message is stored (or quarantined) and committed before its ACK leaves:
AA when taken in (or already taken in: a repeated MSH-10 is answered, not stored
twice), AE with an ERR segment naming the reason when it was quarantined, AR when
it is not HL7 at all. If storing fails, the connection is closed without an ACK and
the sender resends.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import structlog

from monitor.sources.base import Ingest, Threads, timezone_of
from monitor.sources.hl7v2 import build_ack
from monitor.sources.mllp import (
    DEFAULT_FRAME_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_MESSAGE_BYTES,
    MLLPServer,
)
from monitor.sources.mllp_tls import server_context

log = structlog.get_logger(__name__)


class MLLPListener:
    name = "mllp"

    def __init__(
        self, settings: Mapping[str, Any], ingest: Ingest, base_dir: Path | None = None
    ) -> None:
        """`base_dir` anchors relative TLS file paths (the config file's directory)."""
        self.host = str(settings.get("host", "127.0.0.1"))
        self.port = int(settings.get("port", 2575))
        self.ingest = ingest
        self.timezone = timezone_of(settings)
        max_connections = int(settings.get("max_connections", DEFAULT_MAX_CONNECTIONS))
        self.threads = Threads("mllp", max_connections)
        self.server = MLLPServer(
            self.host,
            self.port,
            self.handle,
            max_message_bytes=int(settings.get("max_message_bytes", DEFAULT_MAX_MESSAGE_BYTES)),
            idle_timeout=float(settings.get("idle_timeout_s", DEFAULT_IDLE_TIMEOUT)),
            frame_timeout=float(settings.get("frame_timeout_s", DEFAULT_FRAME_TIMEOUT)),
            max_connections=max_connections,
            tls=server_context(settings, base_dir or Path.cwd()),
            refuse=lambda head, reason: build_ack(head, "AR", reason),
        )

    async def start(self) -> None:
        await self.server.start()
        self.port = self.server.port

    async def stop(self) -> None:
        await self.server.close()
        self.threads.close()

    async def handle(self, text: str) -> str:
        return await self.threads.run(self.handle_sync, text)

    def handle_sync(self, text: str) -> str:
        out = self.ingest(text, "hl7", self.name, assume_tz=self.timezone)
        if out.quarantine_id is not None:
            return build_ack(text, "AR", out.reason or "message cannot be read")
        held = [r for r in out.results if r.outcome == "quarantined"]
        if held and all(r.unreadable for r in held):
            return build_ack(text, "AR", held[0].reason or "message cannot be read")
        if held:
            reason = "; ".join(r.reason or "" for r in held)
            return build_ack(
                text, "AE", f"{reason} (kept in quarantine, item {held[0].quarantine_id})"
            )
        return build_ack(text, "AA")
