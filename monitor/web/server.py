"""The uvicorn set-up shared by the daemon and `monitor web`: timeouts, sizes, proxies.

uvicorn by default waits forever for a request's headers, keeps idle connections
for 5 s only after a first request, and believes `X-Forwarded-*` from 127.0.0.1;
behind a local reverse proxy that last one is everyone. Here every connection must
deliver its headers within `[web] header_timeout_s`, headers are capped at
`max_header_bytes`, at most `limit_concurrency` connections are served at once
(beyond that uvicorn answers 503 rather than running out of file descriptors), and
forwarded headers are read only from `[web] trusted_proxies` (default: nobody).
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from monitor.web.host import WebSettings


class HeaderTimeoutProtocol(H11Protocol):
    """h11 with a header-read timeout: a connection that has not sent a whole request
    head `header_timeout` seconds after it opened (or after its last response) is
    closed. This is what stops a few thousand silent sockets (slowloris) taking the
    console, the webhooks and `/healthz` down."""

    header_timeout: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout, self._header_timed_out)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _waiting_for_head(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if self._waiting_for_head() and not self.transport.is_closing():
            if self.conn.our_state in (h11.IDLE, h11.DONE):
                self.conn.send(h11.ConnectionClosed())
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if not self._waiting_for_head():
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._waiting_for_head() and not self.transport.is_closing():
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def protocol_for(web: WebSettings) -> type[HeaderTimeoutProtocol]:
    """The protocol class with this config's header timeout (uvicorn takes a class)."""
    return type(
        "BoundedH11Protocol", (HeaderTimeoutProtocol,), {"header_timeout": web.header_timeout_s}
    )


def uvicorn_config(app: Any, web: WebSettings, host: str, port: int) -> uvicorn.Config:
    """The one uvicorn configuration of the service (daemon and `monitor web`)."""
    trusted = list(web.trusted_proxies)
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol_for(web),
        ws="none",
        log_config=None,
        access_log=False,
        lifespan="off",
        proxy_headers=bool(trusted),
        forwarded_allow_ips=trusted or [],
        server_header=False,
        timeout_keep_alive=max(1, round(web.keep_alive_timeout_s)),
        h11_max_incomplete_event_size=web.max_header_bytes,
        limit_concurrency=web.limit_concurrency,
    )
