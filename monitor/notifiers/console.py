"""The demo and development channel: alerts go to the structured log, nowhere else."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import structlog

from monitor.notifiers.base import Notification, SendResult
from monitor.notifiers.settings import ChannelSettings
from monitor.secrets import SecretSource

__all__ = ["ConsoleNotifier"]

log = structlog.get_logger(__name__)


class ConsoleNotifier:
    """Logs the notification and reports it delivered; takes no settings.

    Logs identifiers, never names: the text is composed by the caller without them.
    """

    name: ClassVar[str] = "console"

    def __init__(
        self, settings: Mapping[str, Any] | None = None, secrets: SecretSource | None = None
    ) -> None:
        ChannelSettings(self.name, settings or {}).finish()

    async def send(self, notification: Notification) -> SendResult:
        log.warning(
            "alert_notification",
            channel=self.name,
            delivery_id=notification.delivery_id,
            patient_id=notification.patient_id,
            alert_code=notification.alert_code,
            severity=notification.severity,
            recipient=notification.recipient,
            subject=notification.subject,
            text=notification.text,
        )
        return SendResult("delivered", provider_id=f"console-{notification.delivery_id}")

    async def start(self) -> None:
        """Nothing to open: the log is always there."""

    async def aclose(self) -> None:
        """Nothing to close."""

    async def lookup(self, notification: Notification) -> SendResult | None:
        # A log write never ends unknown, so there is nothing to settle.
        return None
