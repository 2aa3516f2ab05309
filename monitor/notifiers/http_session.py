"""One long-lived aiohttp session per notifier, for notifiers that send many at once
(the webhook).

Why aiohttp here and httpx elsewhere: in a burst the sending notifier's HTTP client
is the dispatcher's largest cost. Measured on this project's 2-core machine against
the benchmark receiver, an httpx POST costs ~0.5 ms of event-loop CPU (even with a
one-connection client per send, see `http_client.SharedClient`), an aiohttp POST
~0.11 ms: its HTTP parser is C and its connector keeps idle connections without
polling each on every request. aiohttp is already installed as twilio's dependency.

The session holds one TLS context (certifi's roots, as httpx would load) and at most
`max_connections` connections, kept alive between sends. It is made on first use
inside the running loop and closed by the notifier's `aclose()`; used from another
loop (a test harness, `asyncio.run` twice) a fresh one is made rather than reusing
connections bound to a closed loop.

Bounds: connecting (or waiting for a free connection) and each read of the answer
are limited by `timeout_s`, the whole exchange by `TOTAL_TIMEOUTS` times it; answers
are read up to `MAX_ANSWER_BYTES` (a longer one closes its connection instead of being
read on); redirects are not followed. A proxy comes from the environment
(`https_proxy`, `no_proxy`, ...) as httpx's did, read once per URL: aiohttp's own
`trust_env` reads the environment and stats `~/.netrc` on every request (~15% of a
burst's CPU).
"""

from __future__ import annotations

import asyncio
import ssl
import urllib.parse
import urllib.request
from dataclasses import dataclass

import aiohttp
import certifi

__all__ = ["MAX_ANSWER_BYTES", "TOTAL_TIMEOUTS", "Answer", "HttpSession"]

MAX_ANSWER_BYTES = 64 * 1024
TOTAL_TIMEOUTS = 3  # the whole exchange: connect, write, read, a few timeouts' worth


@dataclass(frozen=True, slots=True)
class Answer:
    """What a notifier needs of a response once the connection is back in the pool."""

    status: int
    reason: str
    headers: dict[str, str]  # names in lower case


class HttpSession:
    """The notifier's session, made on first use in the running loop (see above)."""

    def __init__(self, timeout_s: float, max_connections: int = 100) -> None:
        self.timeout_s = timeout_s
        self.max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tls: ssl.SSLContext | None = None
        self.made = 0  # sessions made: one per notifier life (and loop)
        self._proxies: dict[str, str | None] = {}

    def proxy_for(self, url: str) -> str | None:
        """The environment's proxy for `url` (None: direct), looked up once per URL."""
        if url not in self._proxies:
            parts = urllib.parse.urlsplit(url)
            proxies = urllib.request.getproxies_environment()
            bypass = urllib.request.proxy_bypass_environment(  # type: ignore[attr-defined]
                parts.hostname or "", proxies
            )
            self._proxies[url] = None if bypass else proxies.get(parts.scheme)
        return self._proxies[url]

    def warm(self) -> ssl.SSLContext:
        """Make the TLS context now (the costly part of a client), before any send."""
        if self._tls is None:
            self._tls = ssl.create_default_context(cafile=certifi.where())
        return self._tls

    def session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._session, self._loop = None, loop  # another loop's connections: start afresh
        if self._session is None or self._session.closed:
            self.made += 1
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.max_connections, ssl=self.warm()),
                timeout=aiohttp.ClientTimeout(
                    total=self.timeout_s * TOTAL_TIMEOUTS,
                    connect=self.timeout_s,
                    sock_read=self.timeout_s,
                ),
                auto_decompress=False,  # the answer is only logged; never inflate it
                cookie_jar=aiohttp.DummyCookieJar(),  # a receiver's cookies are not kept
            )
        return self._session

    @property
    def closed(self) -> bool:
        return self._session is None or self._session.closed

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> Answer:
        """POST `body`; raises aiohttp's errors (see `http_outcome.classify_aiohttp_error`)."""
        async with self.session().post(
            url, data=body, headers=headers, allow_redirects=False, proxy=self.proxy_for(url)
        ) as response:
            # Read (and drop) the body so a kept-alive connection goes back to the pool;
            # past the bound the rest is left unread and releasing closes the connection.
            left = MAX_ANSWER_BYTES + 1
            while left > 0 and not response.content.at_eof():
                chunk = await response.content.read(left)
                if not chunk:
                    break
                left -= len(chunk)
            return Answer(
                response.status,
                response.reason or "",
                {k.lower(): v for k, v in response.headers.items()},
            )

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed and self._loop is asyncio.get_running_loop():
            await session.close()
