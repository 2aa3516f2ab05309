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
from datetime import UTC, datetime, time, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from monitor.rotas import Rota, on_call
from monitor.teams import PERSON_STEP, ROTA_STEP, TeamError, check_step, parse_rotas

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
class Team:
    name: str
    label: str
    members: tuple[str, ...]
    sources: tuple[str, ...]
    routes: tuple[Route, ...]
    quiet_hours: QuietHours | None = None


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
    teams: Mapping[str, Team] = field(default_factory=dict)
    rotas: Mapping[str, Rota] = field(default_factory=dict)
    # the site's zone ([web] timezone, else [quiet_hours]): times in messages are in it
    site_tz: tzinfo = UTC

    def recipient_label(self, address: str) -> str | None:
        """Who a phone number or address belongs to (an SMS reply names its sender)."""
        for recipient in self.recipients.values():
            if any(c.address == address for c in recipient.contacts):
                return recipient.label
        return None

    def route_for(self, rule: str, severity: str, team: str | None = None) -> Route | None:
        """The team's first matching route, else the global one (the fallback)."""
        own = self.teams.get(team) if team else None
        for route in (*(own.routes if own else ()), *self.routes):
            if route.matches(rule, severity):
                return route
        return None

    def team_route(self, rule: str, severity: str, team: str | None) -> bool:
        """Whether the route chosen for this alert is the team's own (not the fallback)."""
        own = self.teams.get(team) if team else None
        return own is not None and any(r.matches(rule, severity) for r in own.routes)

    def freeze(self, chain: tuple[str, ...], team: str | None, now: datetime) -> list[str]:
        """The chain as frozen onto an alert: a rota step becomes `rota:<id>:<who is on
        call now>`, a single recipient `recipient:<id>`; groups stay by name."""
        out: list[str] = []
        for step in chain:
            if step in self.rotas:
                out.append(f"{ROTA_STEP}{step}:{on_call(self.rotas[step], now).member}")
            elif step in self.groups:
                out.append(step)
            elif team is not None and step == team and team in self.teams:
                out.append(f"team:{team}")
            elif step in self.recipients:
                out.append(f"{PERSON_STEP}{step}")
            else:
                out.append(step)
        return out

    def step_members(self, step: str) -> tuple[str, ...]:
        """The recipients of one frozen chain step (a group, a team, a rota's person)."""
        if step.startswith(ROTA_STEP):
            who = step.rsplit(":", 1)[-1]
            return (who,) if who in self.recipients else ()
        if step.startswith(PERSON_STEP):
            who = step[len(PERSON_STEP) :]
            return (who,) if who in self.recipients else ()
        if step.startswith("team:"):
            team = self.teams.get(step[len("team:") :])
            return team.members if team else ()
        return self.groups.get(step, ())

    def step_label(self, step: str) -> str:
        """A frozen step in words: "Rheumatology on call: Dr Adams", a team's label..."""
        if step.startswith(ROTA_STEP):
            _, rota, who = step.split(":", 2)
            person = self.recipients.get(who)
            name = self.rotas[rota].label if rota in self.rotas else rota
            return f"{name}: {person.label if person else who}"
        if step in self.groups:
            return step  # a group keeps its name (the console's own labelling is elsewhere)
        if step.startswith(PERSON_STEP) or step in self.recipients:
            one = self.recipients.get(step.removeprefix(PERSON_STEP))
            return one.label if one else step
        if step.startswith("team:"):
            team = self.teams.get(step[len("team:") :])
            return team.label if team else step
        return step

    def possible_members(self, step: str) -> tuple[str, ...]:
        """Everyone a configured step can reach (a rota: any of its members)."""
        if step in self.rotas:
            return self.rotas[step].members
        if step in self.groups:
            return self.groups[step]
        if step in self.teams:
            return self.teams[step].members
        return (step,) if step in self.recipients else ()

    def quiet_for(self, team: str | None) -> QuietHours | None:
        own = self.teams.get(team) if team else None
        return own.quiet_hours if own and own.quiet_hours else self.quiet_hours


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


def _zone(name: str, where: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise RoutingError(f"{where}: unknown time zone {name!r}") from exc


def _quiet(qh: Any, where: str) -> QuietHours:
    if not isinstance(qh, dict):
        raise RoutingError(f"{where}: must be a table")
    tz = _zone(str(qh.get("timezone", "UTC")), f"{where}.timezone")
    return QuietHours(
        _clock(qh.get("start"), f"{where}.start"), _clock(qh.get("end"), f"{where}.end"), tz
    )


def _routes(
    raw_routes: Any,
    prefix: str,
    groups: Mapping[str, Any],
    recipients: Mapping[str, Any],
    rotas: Mapping[str, Any],
    team: str | None,
) -> list[Route]:
    """[[routes]] (global) or [[teams.X.routes]]; a team's steps may also name a rota,
    a recipient or the team itself (its members)."""
    routes: list[Route] = []
    if not isinstance(raw_routes, list):
        raise RoutingError(f"{prefix}: must be an array of tables ([[{prefix}]])")
    for i, r in enumerate(raw_routes):
        where = f"{prefix}[{i}]"
        if not isinstance(r, dict):
            raise RoutingError(f"{where}: must be a table")
        chain = _strs(r.get("escalation", []), f"{where}.escalation")
        if not chain:
            raise RoutingError(f"{where}.escalation: needs at least one group")
        for g in chain:
            try:
                check_step(g, f"{where}.escalation", groups, recipients, rotas, team)
            except TeamError as exc:
                raise RoutingError(
                    f"{where}.escalation: no group {g!r} in [groups] (nor a rota or recipient)"
                ) from exc
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
    return routes


def _teams(
    raw: Mapping[str, Any],
    groups: Mapping[str, Any],
    recipients: Mapping[str, Any],
    rotas: Mapping[str, Any],
) -> dict[str, Team]:
    teams: dict[str, Team] = {}
    for name, spec in _table(raw, "teams").items():
        where = f"teams.{name}"
        if not isinstance(spec, dict):
            raise RoutingError(f"{where}: must be a table")
        members = _strs(spec.get("members", []), f"{where}.members")
        for m in members:
            if m not in recipients:
                raise RoutingError(f"{where}.members: no recipient {m!r} in [recipients]")
        routes = _routes(spec.get("routes", []), f"{where}.routes", groups, recipients, rotas, name)
        qh = spec.get("quiet_hours")
        teams[name] = Team(
            name=name,
            label=str(spec.get("label", name)),
            members=members,
            sources=_strs(spec.get("sources", []), f"{where}.sources"),
            routes=tuple(routes),
            quiet_hours=_quiet(qh, f"{where}.quiet_hours") if qh is not None else None,
        )
    return teams


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

    web_tz = _table(raw, "web").get("timezone")
    site_tz = str(web_tz or _table(raw, "quiet_hours").get("timezone") or "UTC")
    try:
        rotas = parse_rotas(raw, recipients, site_tz)
    except TeamError as exc:
        raise RoutingError(str(exc)) from exc
    routes = _routes(raw.get("routes", []), "routes", groups, recipients, rotas, None)
    teams = _teams(raw, groups, recipients, rotas)
    esc = _table(raw, "escalation")
    failure_group = esc.get("delivery_failure_group", "coordinators")
    if routes and failure_group not in groups:
        raise RoutingError(f"escalation.delivery_failure_group: no group {failure_group!r}")

    quiet: QuietHours | None = None
    qh = raw.get("quiet_hours")
    if qh is not None:
        quiet = _quiet(qh, "quiet_hours")

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
        teams=teams,
        rotas=rotas,
        site_tz=_zone(site_tz, "web.timezone" if web_tz else "quiet_hours.timezone"),
    )
