"""How an HTTP exchange maps to an outcome, shared by the HTTP-based notifiers.

The line that matters is whether the request may have reached the server: failures
before that are `transient` (safe to retry), failures after it are `unknown` (the
dispatcher must settle them with `lookup()` instead of sending twice).
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Mapping

import aiohttp
import httpx

from monitor.notifiers.base import SendResult

__all__ = [
    "classify_aiohttp_error",
    "classify_status",
    "classify_transport_error",
    "parse_retry_after",
]

# Raised before a byte of the request could be processed by the server.
_BEFORE_SEND: tuple[type[httpx.TransportError], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.ProxyError,
    # A request that could not be written whole cannot have been acted on.
    httpx.WriteTimeout,
    httpx.WriteError,
)
# Our own request or URL is wrong: retrying cannot help.
_OUR_FAULT: tuple[type[httpx.TransportError], ...] = (
    httpx.UnsupportedProtocol,
    httpx.LocalProtocolError,
)


def classify_transport_error(exc: httpx.TransportError) -> SendResult:
    """Connect-phase failures are transient; anything after the request was sent is unknown."""
    detail = f"{type(exc).__name__}: {exc}".rstrip(": ")
    if isinstance(exc, _BEFORE_SEND):
        return SendResult("transient", error=f"request not sent: {detail}")
    if isinstance(exc, _OUR_FAULT):
        return SendResult("permanent", error=f"invalid request: {detail}")
    if isinstance(exc, httpx.ReadTimeout):
        return SendResult("unknown", error=f"no answer within the timeout: {detail}")
    # ReadError, RemoteProtocolError and the rest: the server had the request.
    return SendResult("unknown", error=f"request sent, answer lost: {detail}")


# aiohttp's errors before the request left: no connection, or none free in time.
_AIOHTTP_BEFORE_SEND: tuple[type[Exception], ...] = (
    aiohttp.ClientConnectorError,  # refused, DNS, TLS handshake, proxy connect
    aiohttp.ConnectionTimeoutError,  # connecting or waiting for a pooled connection
    aiohttp.ClientHttpProxyError,  # the proxy refused the tunnel
)
_AIOHTTP_OUR_FAULT: tuple[type[Exception], ...] = (aiohttp.InvalidURL,)


def classify_aiohttp_error(exc: Exception) -> SendResult:
    """The same line for aiohttp: connect-phase failures transient, the rest unknown.

    aiohttp does not tell a failed write from a failed read, so an error on an
    established connection counts as "may have been received" (unknown), the safe side.
    """
    detail = f"{type(exc).__name__}: {exc}".rstrip(": ")
    if isinstance(exc, _AIOHTTP_BEFORE_SEND):
        return SendResult("transient", error=f"request not sent: {detail}")
    if isinstance(exc, _AIOHTTP_OUR_FAULT):
        return SendResult("permanent", error=f"invalid request: {detail}")
    if isinstance(exc, TimeoutError):
        return SendResult("unknown", error=f"no answer within the timeout: {detail}")
    return SendResult("unknown", error=f"request sent, answer lost: {detail}")


def classify_status(
    status: int, detail: str, headers: Mapping[str, str] | None = None
) -> SendResult:
    """2xx delivered; 429 and 5xx transient (with Retry-After); other codes permanent."""
    if 200 <= status < 300:
        return SendResult("delivered")
    if status == 429 or status >= 500:
        retry = parse_retry_after(headers.get("retry-after") if headers else None)
        return SendResult("transient", error=f"HTTP {status}: {detail}", retry_after_s=retry)
    return SendResult("permanent", error=f"HTTP {status}: {detail}")


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date); None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)
