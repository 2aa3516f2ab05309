from __future__ import annotations

import socket
from typing import Any

import pytest

from monitor.notifiers.base import Notification
from tests.fakes.fixtures import fake_twilio, smtp_server, tls_files

__all__ = ["fake_twilio", "smtp_server", "tls_files"]


def make_notification(**overrides: Any) -> Notification:
    """A typical stop-line alert; the text carries the alert code, never a name."""
    values: dict[str, Any] = {
        "delivery_id": 42,
        "alert_code": "A7K2Q",
        "patient_id": "P-0001",
        "severity": "stop",
        "address": "+15558675310",
        "subject": "STOP azathioprine: ALT above stop line [A7K2Q]",
        "text": "Lab monitor A7K2Q: patient P-0001 ALT 214 U/L > stop line 200. "
        "Stop azathioprine, review today.",
        "recipient": "hepatology-on-call",
    }
    values.update(overrides)
    return Notification(**values)


@pytest.fixture
def notification() -> Notification:
    return make_notification()


@pytest.fixture
def closed_port() -> int:
    """A 127.0.0.1 port with nothing listening (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
