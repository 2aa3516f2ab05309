"""A long-lived httpx client per notifier (Twilio's transport): connections and one TLS
context kept for the notifier's life instead of new ones (20-70 ms of event-loop CPU)
per send.

The client is made on first use inside the running event loop and closed by the
notifier's `aclose()`. A client belongs to the loop that made it; used from another
loop (a test harness, `asyncio.run` twice) a fresh one is made rather than reusing
connections bound to a closed loop. Notifiers that send many at once use aiohttp
instead (`http_session.HttpSession`): an httpx POST costs ~0.5 ms of CPU.
"""

from __future__ import annotations

import asyncio
import ssl

import httpx

__all__ = ["SharedClient"]


class SharedClient:
    def __init__(self, timeout_s: float, max_connections: int = 100) -> None:
        self.timeout_s = timeout_s
        self.max_connections = max_connections
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tls: ssl.SSLContext | None = None
        self.made = 0  # how many clients were made: one per notifier life (and loop)

    def warm(self) -> ssl.SSLContext:
        """Make the TLS context now (the costly part of a client), before any send."""
        if self._tls is None:
            self._tls = httpx.create_ssl_context()
        return self._tls

    def get(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._client, self._loop = None, loop  # another loop's connections: start afresh
        if self._client is None or self._client.is_closed:
            self.made += 1
            self._client = httpx.AsyncClient(
                timeout=self.timeout_s,
                follow_redirects=False,
                verify=self.warm(),  # the roots httpx's own default would load, once
                limits=httpx.Limits(
                    max_connections=self.max_connections,
                    max_keepalive_connections=self.max_connections,
                ),
            )
        return self._client

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._loop is asyncio.get_running_loop():
            await client.aclose()
