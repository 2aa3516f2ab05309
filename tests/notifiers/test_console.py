"""ConsoleNotifier: the demo default logs the alert and never fails."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from monitor.notifiers import NotifierConfigError
from monitor.notifiers.base import Notification
from monitor.notifiers.console import ConsoleNotifier


async def test_send_logs_the_alert_and_is_delivered(notification: Notification) -> None:
    console = ConsoleNotifier({}, None)

    with capture_logs() as logs:
        result = await console.send(notification)

    assert (result.outcome, result.provider_id) == ("delivered", "console-42")
    [entry] = logs
    assert entry["event"] == "alert_notification"
    assert entry["log_level"] == "warning"  # visible at the default WARNING level
    assert (entry["patient_id"], entry["alert_code"], entry["severity"]) == (
        "P-0001",
        "A7K2Q",
        "stop",
    )
    assert entry["text"] == notification.text


async def test_lookup_has_nothing_to_settle(notification: Notification) -> None:
    assert await ConsoleNotifier().lookup(notification) is None


def test_settings_are_refused() -> None:
    with pytest.raises(NotifierConfigError, match="console: unknown setting"):
        ConsoleNotifier({"colour": True})
