"""SystemdNotifier against a real AF_UNIX datagram socket standing in for systemd."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from monitor.sdnotify import SystemdNotifier


@pytest.fixture(autouse=True)
def _quiet_logs() -> Iterator[None]:
    """Keep warnings in memory: another test may have left structlog printing to a
    stream pytest has since closed."""
    with capture_logs():
        yield


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A bound datagram socket (what PID 1 listens on) and its NOTIFY_SOCKET value."""
    path = tmp_path / "notify.sock"
    assert len(os.fsencode(path)) < 108, "AF_UNIX paths are limited to 107 bytes"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        # The datagram is queued before sendto() returns, so a non-blocking read
        # sees it at once: no sleeps, no timeouts.
        sock.setblocking(False)
        yield sock, str(path)


def received(sock: socket.socket) -> list[str]:
    """Every datagram queued so far, in order."""
    out: list[str] = []
    while True:
        try:
            out.append(sock.recv(4096).decode("utf-8"))
        except BlockingIOError:
            return out


def notifier_for(address: str, **env: str) -> SystemdNotifier:
    return SystemdNotifier(env={"NOTIFY_SOCKET": address, **env})


def test_ready_sends_ready(manager: tuple[socket.socket, str]) -> None:
    sock, address = manager
    assert notifier_for(address).ready() is True
    assert received(sock) == ["READY=1"]


def test_ready_with_status_is_one_datagram(manager: tuple[socket.socket, str]) -> None:
    sock, address = manager
    assert notifier_for(address).ready("watching 5 patients")
    assert received(sock) == ["READY=1\nSTATUS=watching 5 patients"]


def test_status_watchdog_stopping_send_their_assignment(
    manager: tuple[socket.socket, str],
) -> None:
    sock, address = manager
    n = notifier_for(address)
    assert n.status("sweeping deadlines")
    assert n.watchdog()
    assert n.stopping()
    assert n.stopping("finishing 2 sends")
    assert received(sock) == [
        "STATUS=sweeping deadlines",
        "WATCHDOG=1",
        "STOPPING=1",
        "STOPPING=1\nSTATUS=finishing 2 sends",
    ]


def test_status_newlines_cannot_inject_assignments(manager: tuple[socket.socket, str]) -> None:
    sock, address = manager
    assert notifier_for(address).status("line one\nREADY=1\n")
    assert received(sock) == ["STATUS=line one READY=1"]


def test_reloading_carries_monotonic_usec(manager: tuple[socket.socket, str]) -> None:
    sock, address = manager
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert notifier_for(address).reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    [datagram] = received(sock)
    first, second = datagram.split("\n")
    assert first == "RELOADING=1"
    key, _, value = second.partition("=")
    assert key == "MONOTONIC_USEC"
    assert value.isdigit()
    assert before <= int(value) <= after


def test_reloading_with_status(manager: tuple[socket.socket, str]) -> None:
    sock, address = manager
    assert notifier_for(address).reloading("reloading protocols")
    [datagram] = received(sock)
    lines = datagram.split("\n")
    assert lines[0] == "RELOADING=1"
    assert lines[1].startswith("MONOTONIC_USEC=")
    assert lines[2:] == ["STATUS=reloading protocols"]


def test_abstract_namespace_socket() -> None:
    name = f"lab-monitor-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.setblocking(False)
        n = notifier_for("@" + name)
        assert n.enabled
        assert n.ready()
        assert n.watchdog()
        assert received(sock) == ["READY=1", "WATCHDOG=1"]


def test_without_notify_socket_every_call_is_a_noop() -> None:
    n = SystemdNotifier(env={"WATCHDOG_USEC": "60000000"})
    assert not n.enabled
    assert n.notify("READY=1") is False
    assert n.ready() is False
    assert n.ready("x") is False
    assert n.status("x") is False
    assert n.watchdog() is False
    assert n.stopping() is False
    assert n.reloading() is False
    assert n.watchdog_interval() is None


def test_empty_notify_socket_is_a_noop() -> None:
    assert SystemdNotifier(env={"NOTIFY_SOCKET": ""}).ready() is False


def test_default_env_is_the_process_environment(
    manager: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock, address = manager
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    assert SystemdNotifier().ready()
    assert received(sock) == ["READY=1"]


def test_socket_errors_are_logged_not_raised(tmp_path: Path) -> None:
    n = notifier_for(str(tmp_path / "nobody-listens.sock"))
    assert n.enabled
    with capture_logs() as logs:
        assert n.ready() is False
        assert n.watchdog() is False
    assert [e["event"] for e in logs] == ["sd_notify_failed", "sd_notify_failed"]
    assert all(e["log_level"] == "warning" for e in logs)
    assert logs[0]["message"] == "READY=1"


def test_manager_gone_after_start_is_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
    # The socket file remains but nobody listens: ECONNREFUSED.
    with capture_logs() as logs:
        assert notifier_for(str(path)).watchdog() is False
    assert logs and logs[0]["event"] == "sd_notify_failed"


def test_unsupported_address_is_a_logged_noop() -> None:
    with capture_logs() as logs:
        n = notifier_for("vsock:2:1234")
    assert not n.enabled
    assert n.ready() is False
    assert [e["event"] for e in logs] == ["sd_notify_unsupported_socket"]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "60000000"}, 30.0),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "{pid}"}, 30.0),
        ({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": ""}, 0.5),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "{other}"}, None),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "not-a-pid"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
        ({"WATCHDOG_USEC": "60s"}, None),
        ({"WATCHDOG_USEC": ""}, None),
        ({"WATCHDOG_PID": "{pid}"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(
    manager: tuple[socket.socket, str], env: dict[str, str], expected: float | None
) -> None:
    _, address = manager
    pid = os.getpid()
    filled = {k: v.format(pid=pid, other=pid + 1) for k, v in env.items()}
    assert notifier_for(address, **filled).watchdog_interval() == expected


def test_watchdog_interval_for_a_child_that_inherited_the_environment(
    manager: tuple[socket.socket, str],
) -> None:
    _, address = manager
    # systemd sets WATCHDOG_PID to the main process; any other process must not ping.
    parent_pid = os.getppid()
    assert parent_pid != os.getpid()
    n = notifier_for(address, WATCHDOG_USEC="60000000", WATCHDOG_PID=str(parent_pid))
    assert n.watchdog_interval() is None
