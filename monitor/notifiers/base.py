"""The one interface every notifier implements.

A notifier turns one `Notification` (one delivery of one alert group to one
recipient on one channel) into one send, and classifies the outcome. Retries,
backoff, failover and escalation are the dispatcher's, never the notifier's.

A notifier lives as long as its config: `start()` before the first send (it may
open a connection pool), `aclose()` when the config is replaced or the daemon
stops. Plug-ins written before these two existed still load: `start_notifier` and
`close_notifier` skip what a notifier does not have.
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

    async def start(self) -> None:
        """Open what the notifier keeps for its life (an HTTP client); may be a no-op."""
        ...

    async def aclose(self) -> None:
        """Close what `start()` or the first send opened; safe to call twice."""
        ...


async def start_notifier(notifier: object) -> None:
    start = getattr(notifier, "start", None)
    if start is not None:
        await start()


async def close_notifier(notifier: object) -> None:
    """Close one notifier; a failure to close is logged by the caller, never raised on."""
    close = getattr(notifier, "aclose", None)
    if close is not None:
        await close()
