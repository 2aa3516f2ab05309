"""What the console needs from whoever serves it: the daemon's Service, or `monitor web`.

The daemon hands in its running `Service` (scheduler, live config, dispatcher);
`monitor web` builds a `StandaloneHost` over the same database with no scheduler:
the daemon's dispatcher polls the outbox every second, so new deliveries written
by the console still go out at once.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.engine import Engine

from monitor.clock import Clock, SystemClock
from monitor.core.protocol import Protocol as ClinicalProtocol
from monitor.routing import Routing, parse_routing
from monitor.secrets import SecretSource
from monitor.settings import Settings, SettingsError
from monitor.store.db import make_engine


class HostConfig(Protocol):
    @property
    def settings(self) -> Settings: ...

    @property
    def protocols(self) -> Mapping[str, ClinicalProtocol]: ...

    @property
    def routing(self) -> Routing: ...


class Host(Protocol):
    """Satisfied by `monitor.daemon.Service` and by `StandaloneHost`."""

    engine: Engine

    @property
    def clock(self) -> Clock: ...

    @property
    def config(self) -> HostConfig: ...

    @property
    def scheduler(self) -> Any: ...

    @property
    def last_sweep(self) -> datetime | None: ...

    @property
    def public_url(self) -> str | None: ...

    def wake_dispatcher(self) -> None: ...

    def now(self) -> datetime: ...

    def twilio_auth_token(self) -> str | None: ...

    def sender_name(self, phone: str) -> str | None: ...


@dataclass
class LightConfig:
    settings: Settings
    protocols: dict[str, ClinicalProtocol]
    routing: Routing


class HostBasics:
    """What the daemon's Service and the standalone host answer the same way."""

    config: Any
    clock: Clock
    secrets: SecretSource

    @property
    def public_url(self) -> str | None:
        value = self.config.settings.raw.get("web", {}).get("public_url")
        return str(value) if value else None

    def now(self) -> datetime:
        return self.clock.now()

    def twilio_auth_token(self) -> str | None:
        return self.secrets.find("twilio_auth_token")

    def sender_name(self, phone: str) -> str | None:
        label: str | None = self.config.routing.recipient_label(phone)
        return label


@dataclass
class StandaloneHost(HostBasics):
    """The console without the daemon: same database, no scheduler, no notifiers."""

    engine: Engine
    config: LightConfig
    clock: Clock = field(default_factory=SystemClock)
    secrets: SecretSource = field(default_factory=SecretSource)
    scheduler: Any = None
    last_sweep: datetime | None = None
    mapping: Any = None  # the sources' code mapping, for retrying quarantined input

    @classmethod
    def from_settings(
        cls, settings: Settings, clock: Clock | None = None, engine: Engine | None = None
    ) -> StandaloneHost:
        try:
            routing = parse_routing(settings.raw)
        except ValueError as exc:
            raise SettingsError(f"{settings.path}: {exc}") from exc
        return cls(
            engine=engine or make_engine(settings.database_url),
            config=LightConfig(settings, settings.protocols(), routing),
            clock=clock or SystemClock(),
            mapping=_mapping(settings),
        )

    def wake_dispatcher(self) -> None:
        """Nothing to wake here: the daemon's dispatcher polls the outbox every second."""


def _mapping(settings: Settings) -> Any:
    """The code mapping the daemon's sources use (None: the sources' default)."""
    try:
        from monitor.sources import load_mapping
    except ImportError:
        return None
    try:
        return load_mapping(settings.mapping_path)
    except ValueError as exc:
        raise SettingsError(f"{settings.path}: {exc}") from exc


@dataclass(frozen=True)
class WebSettings:
    """`[web]` of monitor.toml, with the console's defaults."""

    host: str = "127.0.0.1"
    port: int = 8080
    secure_cookies: bool = False
    same_site: str = "lax"
    session_idle_minutes: float = 30.0
    session_max_hours: float = 12.0
    login_max_failures_per_user: int = 5
    login_max_failures_per_ip: int = 20
    login_window_minutes: float = 15.0
    page_size: int = 50
    timezone: str = "UTC"
    # --- bounds and trust (README "Bounds and trust") ---
    max_body_bytes: int = 64 * 1024  # sign-in and console forms
    fhir_max_body_bytes: int = 10 * 1024 * 1024  # FHIR push: a large Bundle
    twilio_max_body_bytes: int = 64 * 1024  # Twilio's webhooks are small forms
    fhir_push_allow_without_token: bool = False  # explicit: anyone who can reach /fhir
    trusted_proxies: tuple[str, ...] = ()  # addresses whose X-Forwarded-* are believed
    login_slowdown_after_failures: int = 10  # per account, from every address together
    login_max_delay_seconds: float = 60.0
    header_timeout_s: float = 10.0  # a request's headers must arrive within this
    keep_alive_timeout_s: float = 5.0
    max_header_bytes: int = 16 * 1024
    limit_concurrency: int = 1000  # connections and requests at once; beyond: 503

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


def web_settings(raw: Mapping[str, Any]) -> WebSettings:
    """Read `[web]`, naming the key on a bad value; the display timezone falls back to
    `[quiet_hours] timezone` (the care team's local time), then UTC."""
    web = raw.get("web", {})
    if not isinstance(web, dict):
        raise SettingsError("web: must be a table")
    base = WebSettings()
    quiet = raw.get("quiet_hours", {})
    tz_default = quiet.get("timezone", base.timezone) if isinstance(quiet, dict) else base.timezone
    values: dict[str, Any] = {}
    for name, default in base.__dict__.items():
        value: Any = web.get(name, tz_default if name == "timezone" else default)
        if isinstance(default, tuple):
            values[name] = _addresses(name, value)
            continue
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int | float):
            ok = isinstance(value, int | float) and not isinstance(value, bool) and value > 0
            if ok and isinstance(default, int) and value != int(value):
                ok = False
            if ok:
                value = int(value) if isinstance(default, int) else float(value)
        else:
            ok = isinstance(value, str) and bool(value)
        if not ok:
            raise SettingsError(f"web.{name}: {value!r} is not a valid value")
        values[name] = value
    if values["same_site"] not in ("lax", "strict"):
        raise SettingsError("web.same_site: must be 'lax' or 'strict'")
    channels = raw.get("channels", {})
    twilio = isinstance(channels, dict) and any(
        isinstance(c, dict) and c.get("kind") == "twilio_sms" for c in channels.values()
    )
    if twilio and not web.get("public_url"):
        raise SettingsError(
            "web.public_url: required with a twilio_sms channel: Twilio's webhook "
            "signatures are checked against it (e.g. https://monitor.example.org)"
        )
    try:
        ZoneInfo(values["timezone"])
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise SettingsError(f"web.timezone: unknown time zone {values['timezone']!r}") from exc
    return WebSettings(**values)


def _addresses(name: str, value: Any) -> tuple[str, ...]:
    """A list of IP addresses or networks (`10.0.0.5`, `10.1.0.0/16`), each checked."""
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise SettingsError(f"web.{name}: must be a list of IP addresses or networks")
    for v in value:
        try:
            ipaddress.ip_network(v, strict=False)
        except ValueError as exc:
            raise SettingsError(f"web.{name}: {v!r} is not an IP address or network") from exc
    return tuple(value)
