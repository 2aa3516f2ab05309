"""Long-lived httpx clients per notifier: connections and one TLS context kept for the
notifier's life instead of new ones (20-70 ms of event-loop CPU) per send.

`get()` is one client with a pool, for notifiers that send a few at a time. `lane()`
lends a client that holds a single kept-alive connection, for notifiers that send
many at once (the webhook): httpcore's pool scans every connection it holds (a poll
on each idle socket) and every queued request on each request and each response, so
one pool of 32 connections cost ~2.4 ms of CPU per POST; 32 one-connection lanes
cost ~0.6 ms. Lanes share one TLS context; an idle lane is reused last-in first-out
so warm connections stay warm, and at most `max_connections` exist.

Clients are made on first use inside the running event loop and closed by the
notifier's `aclose()`. A client belongs to the loop that made it; used from another
loop (a test harness, `asyncio.run` twice) fresh ones are made rather than reusing
connections bound to a closed loop.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

__all__ = ["SharedClient"]


class SharedClient:
    def __init__(self, timeout_s: float, max_connections: int = 100) -> None:
        self.timeout_s = timeout_s
        self.max_connections = max_connections
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tls: ssl.SSLContext | None = None
        self._idle: list[httpx.AsyncClient] = []
        self._lanes: list[httpx.AsyncClient] = []
        self._room: asyncio.Semaphore | None = None
        self.made = 0  # how many clients were made: one per notifier life (and loop) for get()

    def _new(self, connections: int) -> httpx.AsyncClient:
        tls = self.warm()  # the roots httpx's own default would load, once for all clients
        self.made += 1
        return httpx.AsyncClient(
            timeout=self.timeout_s,
            follow_redirects=False,
            verify=tls,
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        )

    def _same_loop(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            # another loop's clients hold connections bound to it: start afresh
            self._client = None
            self._idle, self._lanes = [], []
            self._room = None
            self._loop = loop

    @property
    def lanes(self) -> tuple[httpx.AsyncClient, ...]:
        """The one-connection clients made on this loop so far."""
        return tuple(self._lanes)

    def warm(self) -> ssl.SSLContext:
        """Make the TLS context now (the costly part of a client), before any send."""
        if self._tls is None:
            self._tls = httpx.create_ssl_context()
        return self._tls

    def get(self) -> httpx.AsyncClient:
        self._same_loop()
        if self._client is None or self._client.is_closed:
            self._client = self._new(self.max_connections)
        return self._client

    @asynccontextmanager
    async def lane(self) -> AsyncIterator[httpx.AsyncClient]:
        """A client with one connection, this caller's alone until the block ends."""
        self._same_loop()
        if self._room is None:
            self._room = asyncio.Semaphore(self.max_connections)
        room = self._room
        async with room:
            client = self._idle.pop() if self._idle else None
            if client is None or client.is_closed:
                client = self._new(1)
                self._lanes.append(client)
            try:
                yield client
            finally:
                if not client.is_closed and room is self._room:
                    self._idle.append(client)

    async def aclose(self) -> None:
        clients = ([self._client] if self._client is not None else []) + self._lanes
        self._client, self._idle, self._lanes = None, [], []
        if self._loop is asyncio.get_running_loop():
            for client in clients:
                await client.aclose()
