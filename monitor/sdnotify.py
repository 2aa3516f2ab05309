"""systemd's notify protocol (`sd_notify(3)`) without libsystemd.

The service runs as `Type=notify` with `WatchdogSec=`: systemd only considers it
started once it says READY=1, and restarts it if the watchdog pings stop. That is
one datagram per message on the AF_UNIX socket named by `$NOTIFY_SOCKET`, small
enough not to warrant a dependency. Outside systemd (a terminal, the tests, a
container) `$NOTIFY_SOCKET` is unset and every call is a no-op returning False.

Notification is best effort by design: a failure to tell systemd something must
never take the monitor down, so socket errors are logged and reported as False.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping

import structlog

__all__ = ["SystemdNotifier"]

_log: structlog.typing.FilteringBoundLogger = structlog.get_logger(__name__)


class SystemdNotifier:
    """Sends READY/STATUS/WATCHDOG/STOPPING/RELOADING to the service manager.

    `env` defaults to the process environment; tests pass their own mapping so they
    never depend on (or leak into) the real one. The address is read once, here.
    A fresh socket is used per message, as libsystemd does: nothing to keep alive,
    nothing to reconnect after systemd re-executes itself.
    """

    def __init__(self, env: Mapping[str, str] | None = None, timeout: float = 1.0) -> None:
        self._env: Mapping[str, str] = os.environ if env is None else env
        # A bounded blocking send: the manager's queue is practically never full,
        # and if it is we would rather wait a moment than lose READY=1; but never
        # stall the event loop for long.
        self._timeout = timeout
        self._address = _parse_address(self._env.get("NOTIFY_SOCKET", ""))

    def __repr__(self) -> str:
        return f"SystemdNotifier(address={self._address!r})"

    @property
    def enabled(self) -> bool:
        """True when running under a service manager that listens for notifications."""
        return self._address is not None

    def notify(self, message: str) -> bool:
        """Send one raw datagram (newline-separated `KEY=value` lines); True if sent."""
        if self._address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.settimeout(self._timeout)
                sock.sendto(message.encode("utf-8"), self._address)
        except OSError as exc:
            _log.warning(
                "sd_notify_failed",
                socket=_display(self._address),
                message=message.split("\n", 1)[0],
                error=str(exc),
            )
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """Startup (or a reload) is complete: systemd stops waiting and runs dependants."""
        return self.notify(_lines("READY=1", status))

    def status(self, text: str) -> bool:
        """Free text shown by `systemctl status`, e.g. what the daemon is doing now."""
        return self.notify(f"STATUS={_one_line(text)}")

    def watchdog(self) -> bool:
        """Keep-alive ping; call every `watchdog_interval()` seconds from the event loop
        so that a hung loop (not just a dead process) gets the service restarted."""
        return self.notify("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        """Shutdown has begun (in-flight sends are finishing); shown by systemctl."""
        return self.notify(_lines("STOPPING=1", status))

    def reloading(self, status: str | None = None) -> bool:
        """A reload (SIGHUP) has begun; call `ready()` when it is done.

        MONOTONIC_USEC lets systemd >= 253 match this message to the reload it asked
        for (`Type=notify-reload`); older versions ignore the extra field.
        """
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify(_lines(f"RELOADING=1\nMONOTONIC_USEC={usec}", status))

    def watchdog_interval(self) -> float | None:
        """Seconds between watchdog pings (half of `WatchdogSec=`), or None if not asked.

        Follows `sd_watchdog_enabled(3)`: `$WATCHDOG_USEC` is meant for this process
        only if `$WATCHDOG_PID` is unset or names us (a child that inherited the
        environment must not ping on its parent's behalf). Pinging at half the
        timeout leaves room for one late tick.
        """
        if self._address is None:
            return None
        raw_usec = self._env.get("WATCHDOG_USEC", "")
        if not raw_usec:
            return None
        raw_pid = self._env.get("WATCHDOG_PID", "")
        if raw_pid:
            try:
                pid = int(raw_pid)
            except ValueError:
                _log.warning("sd_watchdog_bad_pid", watchdog_pid=raw_pid)
                return None
            if pid != os.getpid():
                return None
        try:
            usec = int(raw_usec)
        except ValueError:
            _log.warning("sd_watchdog_bad_usec", watchdog_usec=raw_usec)
            return None
        if usec <= 0:
            return None
        return usec / 2 / 1_000_000


def _parse_address(value: str) -> str | None:
    """`/path` or `@abstract` (Linux abstract namespace: a leading NUL) or None."""
    if not value:
        return None
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    # e.g. "vsock:CID:PORT" (systemd >= 254, for VMs): not something this host
    # service is started with, and the unit's RestrictAddressFamilies forbids it.
    _log.warning("sd_notify_unsupported_socket", notify_socket=value)
    return None


def _display(address: str) -> str:
    return "@" + address[1:] if address.startswith("\0") else address


def _one_line(text: str) -> str:
    """A newline in a value would start a new (bogus) assignment."""
    return " ".join(text.splitlines())


def _lines(first: str, status: str | None) -> str:
    return first if status is None else f"{first}\nSTATUS={_one_line(status)}"
