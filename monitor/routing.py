"""Who hears about what: channels, recipients, groups, routes and escalation timing.

Read from `config/monitor.toml` into frozen dataclasses and checked once, naming the
key on error. A route maps rule ids (globs) and severities to an escalation chain
of recipient groups; the chain is frozen onto an alert when it is raised, so a
config reload never changes who an open alert escalates to.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

SEVERITY_RANK = {"critical": 0, "warning": 1, "info": 2}


class RoutingError(ValueError):
    """A routing problem; names the key."""


@dataclass(frozen=True)
class Contact:
    channel: str
    address: str


@dataclass(frozen=True)
class Recipient:
    name: str
    label: str
    contacts: tuple[Contact, ...]


@dataclass(frozen=True)
class Route:
    name: str
    rules: tuple[str, ...]
    severities: tuple[str, ...]
    chain: tuple[str, ...]

    def matches(self, rule: str, severity: str) -> bool:
        rule_ok = not self.rules or any(fnmatch.fnmatchcase(rule, p) for p in self.rules)
        sev_ok = not self.severities or severity in self.severities
        return rule_ok and sev_ok


@dataclass(frozen=True)
class QuietHours:
    start: time
    end: time
    tz: ZoneInfo

    def holds(self, now: datetime) -> datetime | None:
        """When quiet hours end, if `now` falls inside them; None otherwise."""
        local = now.astimezone(self.tz)
        t = local.timetz().replace(tzinfo=None)
        inside = (
            self.start <= t < self.end
            if self.start < self.end
            else (t >= self.start or t < self.end)
        )
        if not inside:
            return None
        end = local.replace(hour=self.end.hour, minute=self.end.minute, second=0, microsecond=0)
        if end <= local:
            end += timedelta(days=1)
        return end.astimezone(now.tzinfo)


@dataclass(frozen=True)
class Routing:
    channels: Mapping[str, Mapping[str, Any]]
    recipients: Mapping[str, Recipient]
    groups: Mapping[str, tuple[str, ...]]
    routes: tuple[Route, ...]
    failure_group: str
    critical_ack_after: timedelta
    warning_repeat_after: timedelta
    quiet_hours: QuietHours | None
    retry_base: timedelta = timedelta(seconds=5)
    retry_max: timedelta = timedelta(minutes=10)
    max_attempts: int = 8
    send_timeout_s: float = 20.0
    batch: int = 50
    extra: Mapping[str, Any] = field(default_factory=dict)

    def recipient_label(self, address: str) -> str | None:
        """Who a phone number or address belongs to (an SMS reply names its sender)."""
        for recipient in self.recipients.values():
            if any(c.address == address for c in recipient.contacts):
                return recipient.label
        return None

    def route_for(self, rule: str, severity: str) -> Route | None:
        for route in self.routes:
            if route.matches(rule, severity):
                return route
        return None


def _table(data: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise RoutingError(f"{key}: must be a table")
    return value


def _strs(value: Any, key: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RoutingError(f"{key}: must be a list of strings")
    return tuple(value)


def _minutes(data: Mapping[str, Any], key: str, default: float, where: str) -> timedelta:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise RoutingError(f"{where}.{key}: must be a positive number of minutes")
    return timedelta(minutes=float(value))


def _clock(value: Any, key: str) -> time:
    try:
        hh, mm = str(value).split(":")
        return time(int(hh), int(mm))
    except ValueError as exc:
        raise RoutingError(f"{key}: must look like 22:00") from exc


def parse_routing(raw: Mapping[str, Any]) -> Routing:
    """Build and cross-check the routing tables of a parsed monitor.toml."""
    channels = _table(raw, "channels")
    for name, settings in channels.items():
        if not isinstance(settings, dict) or not isinstance(settings.get("kind"), str):
            raise RoutingError(f'channels.{name}.kind: missing (e.g. kind = "console")')
    if not channels:
        channels = {"console": {"kind": "console"}}

    recipients: dict[str, Recipient] = {}
    for name, spec in _table(raw, "recipients").items():
        if not isinstance(spec, dict):
            raise RoutingError(f"recipients.{name}: must be a table")
        contacts_raw = spec.get("contacts")
        if not isinstance(contacts_raw, list) or not contacts_raw:
            raise RoutingError(f"recipients.{name}.contacts: needs at least one contact")
        contacts: list[Contact] = []
        for i, c in enumerate(contacts_raw):
            where = f"recipients.{name}.contacts[{i}]"
            if not isinstance(c, dict) or not isinstance(c.get("channel"), str):
                raise RoutingError(f"{where}.channel: missing")
            if c["channel"] not in channels:
                raise RoutingError(f"{where}.channel: no channel {c['channel']!r} in [channels]")
            address = c.get("address", "")
            if not isinstance(address, str):
                raise RoutingError(f"{where}.address: must be a string")
            contacts.append(Contact(c["channel"], address))
        label = spec.get("label", name)
        recipients[name] = Recipient(name, str(label), tuple(contacts))

    groups: dict[str, tuple[str, ...]] = {}
    for name, members in _table(raw, "groups").items():
        groups[name] = _strs(members, f"groups.{name}")
        for member in groups[name]:
            if member not in recipients:
                raise RoutingError(f"groups.{name}: no recipient {member!r} in [recipients]")

    routes: list[Route] = []
    raw_routes = raw.get("routes", [])
    if not isinstance(raw_routes, list):
        raise RoutingError("routes: must be an array of tables ([[routes]])")
    for i, r in enumerate(raw_routes):
        where = f"routes[{i}]"
        if not isinstance(r, dict):
            raise RoutingError(f"{where}: must be a table")
        chain = _strs(r.get("escalation", []), f"{where}.escalation")
        if not chain:
            raise RoutingError(f"{where}.escalation: needs at least one group")
        for g in chain:
            if g not in groups:
                raise RoutingError(f"{where}.escalation: no group {g!r} in [groups]")
        severities = _strs(r.get("severities", []), f"{where}.severities")
        for sev in severities:
            if sev not in SEVERITY_RANK:
                raise RoutingError(f"{where}.severities: {sev!r} is not critical/warning/info")
        routes.append(
            Route(
                str(r.get("name", f"route{i}")),
                _strs(r.get("rules", []), f"{where}.rules"),
                severities,
                chain,
            )
        )

    esc = _table(raw, "escalation")
    failure_group = esc.get("delivery_failure_group", "coordinators")
    if routes and failure_group not in groups:
        raise RoutingError(f"escalation.delivery_failure_group: no group {failure_group!r}")

    quiet: QuietHours | None = None
    qh = raw.get("quiet_hours")
    if qh is not None:
        if not isinstance(qh, dict):
            raise RoutingError("quiet_hours: must be a table")
        try:
            tz = ZoneInfo(str(qh.get("timezone", "UTC")))
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise RoutingError("quiet_hours.timezone: unknown time zone") from exc
        quiet = QuietHours(
            _clock(qh.get("start"), "quiet_hours.start"),
            _clock(qh.get("end"), "quiet_hours.end"),
            tz,
        )

    dispatch = _table(raw, "dispatch")
    max_attempts = dispatch.get("max_attempts", 8)
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
        raise RoutingError("dispatch.max_attempts: must be a whole number >= 1")
    timeout = dispatch.get("send_timeout_s", 20.0)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        raise RoutingError("dispatch.send_timeout_s: must be a positive number")
    return Routing(
        channels=channels,
        recipients=recipients,
        groups=groups,
        routes=tuple(routes),
        failure_group=str(failure_group),
        critical_ack_after=_minutes(esc, "critical_ack_minutes", 15, "escalation"),
        warning_repeat_after=_minutes(esc, "warning_repeat_minutes", 240, "escalation"),
        quiet_hours=quiet,
        retry_base=timedelta(seconds=float(dispatch.get("retry_base_s", 5))),
        retry_max=timedelta(seconds=float(dispatch.get("retry_max_s", 600))),
        max_attempts=max_attempts,
        send_timeout_s=float(timeout),
        batch=int(dispatch.get("batch", 50)),
    )
