"""The one interface every notifier implements.

A notifier turns one `Notification` (one delivery of one alert group to one
recipient on one channel) into one send, and classifies the outcome. Retries,
backoff, failover and escalation are the dispatcher's, never the notifier's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol

Outcome = Literal["delivered", "transient", "permanent", "unknown"]


@dataclass(frozen=True)
class Notification:
    delivery_id: int
    alert_code: str
    patient_id: str
    severity: str
    address: str
    subject: str
    text: str
    recipient: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SendResult:
    outcome: Outcome
    provider_id: str | None = None
    error: str | None = None
    retry_after_s: float | None = None


class Notifier(Protocol):
    """`name` is the channel kind used in config (`twilio_sms`, `smtp_email`, ...)."""

    name: ClassVar[str]

    async def send(self, notification: Notification) -> SendResult: ...

    async def lookup(self, notification: Notification) -> SendResult | None:
        """Settle a send whose outcome was unknown; None when it cannot tell."""
        ...
