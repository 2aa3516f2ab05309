"""The one strict loader: what `monitor check-config` reports is what the service refuses.

`check()` reads monitor.toml and collects every problem instead of stopping at the
first: unknown keys and bad values (the schema in `monitor.config_schema`), channel
kinds and their settings and secrets, contacts, groups and routes that name something
missing, time zones, the protocol profiles and the code mapping. Each problem names its
key path (`channels.sms.kind`) and, for a likely typo, says what was probably meant.
The daemon loads its config (at start and on SIGHUP) through `load_checked()`, so a
config either passes both or neither.
"""

from __future__ import annotations

import difflib
import re
import tomllib
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import BaseModel, ValidationError

from monitor.config_schema import ConfigFile
from monitor.core.protocol import Protocol
from monitor.notifiers import ENTRY_POINT_GROUP, NOTIFIERS, load_notifier
from monitor.notifiers.base import Notifier
from monitor.routing import Routing, RoutingError, parse_routing
from monitor.secrets import MissingSecretError, SecretSource
from monitor.settings import Settings, SettingsError, config_path, load_settings

__all__ = [
    "CheckedConfig",
    "ConfigInvalid",
    "Problem",
    "check",
    "load_checked",
    "unreachable_critical",
]


@dataclass(frozen=True)
class Problem:
    """One thing wrong, at one key path."""

    path: str
    message: str
    suggestion: str | None = None

    def __str__(self) -> str:
        hint = f" (did you mean {self.suggestion!r}?)" if self.suggestion else ""
        where = f"{self.path}: " if self.path else ""
        return f"{where}{self.message}{hint}"


@dataclass
class CheckedConfig:
    """A config with everything the service builds from it, or the problems that stop it."""

    file: Path
    problems: list[Problem] = field(default_factory=list)
    settings: Settings | None = None
    protocols: dict[str, Protocol] = field(default_factory=dict)
    routing: Routing | None = None
    notifiers: dict[str, Notifier] = field(default_factory=dict)
    mapping: Any = None

    @property
    def ok(self) -> bool:
        return not self.problems


class ConfigInvalid(SettingsError):
    """The config has problems; `str()` is one line listing all of them."""

    def __init__(self, file: Path, problems: list[Problem]) -> None:
        self.file = file
        self.problems = problems
        n = len(problems)
        super().__init__(
            f"{file}: {n} problem{'s' if n != 1 else ''}: " + "; ".join(map(str, problems))
        )


def _suggest(word: Any, choices: Iterable[str]) -> str | None:
    if not isinstance(word, str):
        return None
    options = list(choices)
    by_lower = {c.lower(): c for c in options}
    if word.lower() in by_lower and by_lower[word.lower()] != word:
        return by_lower[word.lower()]
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return close[0] if close else None


def _path(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _unwrap(tp: Any) -> Any:
    """The model or container inside Optional/Annotated."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            tp = args[0]
        else:
            return tp


def _known_keys(loc: tuple[Any, ...]) -> list[str]:
    """The keys the schema allows in the table at `loc` (for 'did you mean')."""
    tp: Any = ConfigFile
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            info = tp.model_fields.get(str(part))
            if info is None:
                return []
            tp = info.annotation
        elif typing.get_origin(tp) in (dict, list):
            tp = typing.get_args(tp)[-1]
        else:
            return []
    tp = _unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return list(tp.model_fields)
    return []


def _schema_problems(raw: Mapping[str, Any]) -> list[Problem]:
    try:
        ConfigFile.model_validate(raw)
    except ValidationError as exc:
        out: list[Problem] = []
        for err in exc.errors(include_url=False):
            loc = tuple(err["loc"])
            kind = err["type"]
            value = err.get("input")
            if kind == "extra_forbidden":
                known = _known_keys(loc[:-1])
                what = "table" if isinstance(value, dict) else "key"
                out.append(
                    Problem(
                        _path(loc),
                        f"unknown {what} (known here: {', '.join(known)})",
                        _suggest(loc[-1], known),
                    )
                )
            elif kind == "literal_error":
                expected = re.findall(r"'([^']*)'", str(err.get("ctx", {}).get("expected", "")))
                out.append(
                    Problem(
                        _path(loc),
                        f"{value!r} is not one of {', '.join(expected)}",
                        _suggest(value, expected),
                    )
                )
            elif kind == "missing":
                out.append(Problem(_path(loc), "missing (required)"))
            else:
                msg = str(err["msg"]).removeprefix("Value error, ")
                out.append(Problem(_path(loc), f"{msg} (got {value!r})"))
        return out
    return []


def _table(raw: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = raw.get(key, {})
    return value if isinstance(value, dict) else {}


@lru_cache(maxsize=1)
def _zones() -> tuple[str, ...]:
    return tuple(sorted(available_timezones()))


def _zone_problem(path: str, value: Any) -> Problem | None:
    if not isinstance(value, str) or not value:
        return None  # the schema says so
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        return Problem(path, f"unknown time zone {value!r}", _suggest(value, _zones()))
    return None


def _known_kinds() -> list[str]:
    plugins = {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return sorted(set(NOTIFIERS) | plugins)


_SETTING = re.compile(r"setting '([A-Za-z0-9_]+)'")


def _channel_problems(
    raw: Mapping[str, Any], secrets: SecretSource, notifiers: dict[str, Notifier]
) -> list[Problem]:
    out: list[Problem] = []
    kinds = _known_kinds()
    for name, spec in _table(raw, "channels").items():
        if not isinstance(spec, dict) or not isinstance(spec.get("kind"), str):
            continue  # the schema reports it
        kind = spec["kind"]
        if kind not in kinds:
            out.append(
                Problem(
                    f"channels.{name}.kind",
                    f"unknown channel kind {kind!r} (known: {', '.join(kinds)})",
                    _suggest(kind, kinds),
                )
            )
            continue
        params = {k: v for k, v in spec.items() if k not in ("kind", "max_concurrency")}
        try:
            notifiers[name] = load_notifier(kind, params, secrets)
        except (MissingSecretError, ValueError) as exc:
            text = str(exc)
            key = _SETTING.search(text)
            path = f"channels.{name}.{key.group(1)}" if key else f"channels.{name}"
            unknown = re.search(r"unknown setting\(s\) '([^']+)'.*known: (.*)$", text)
            hint = _suggest(unknown.group(1), unknown.group(2).split(", ")) if unknown else None
            out.append(Problem(path, text, hint))
    return out


def _reference_problems(raw: Mapping[str, Any]) -> list[Problem]:
    """Contacts, groups and routes that name a channel, recipient or group not defined."""
    out: list[Problem] = []
    channels = list(_table(raw, "channels")) or ["console"]
    recipients = _table(raw, "recipients")
    for name, spec in recipients.items():
        contacts = spec.get("contacts") if isinstance(spec, dict) else None
        for i, contact in enumerate(contacts if isinstance(contacts, list) else []):
            channel = contact.get("channel") if isinstance(contact, dict) else None
            if isinstance(channel, str) and channel not in channels:
                out.append(
                    Problem(
                        f"recipients.{name}.contacts[{i}].channel",
                        f"no channel {channel!r} in [channels]",
                        _suggest(channel, channels),
                    )
                )
    groups = _table(raw, "groups")
    for name, members in groups.items():
        for member in [members] if isinstance(members, str) else members or []:
            if isinstance(member, str) and member not in recipients:
                out.append(
                    Problem(
                        f"groups.{name}",
                        f"no recipient {member!r} in [recipients]",
                        _suggest(member, recipients),
                    )
                )
    rotas = _table(raw, "rotas")
    steps = {**groups, **rotas, **recipients}
    routes = raw.get("routes", [])
    out += _route_problems(routes, "routes", steps, groups)
    for name, rota in rotas.items():
        members = rota.get("members", []) if isinstance(rota, dict) else []
        out += _member_problems(members, f"rotas.{name}.members", recipients)
        overrides = rota.get("overrides", []) if isinstance(rota, dict) else []
        for i, o in enumerate(overrides if isinstance(overrides, list) else []):
            member = o.get("member") if isinstance(o, dict) else None
            out += _member_problems([member], f"rotas.{name}.overrides[{i}].member", recipients)
    for name, team in _table(raw, "teams").items():
        if not isinstance(team, dict):
            continue
        out += _member_problems(team.get("members", []), f"teams.{name}.members", recipients)
        out += _route_problems(
            team.get("routes", []), f"teams.{name}.routes", {**steps, name: 1}, groups
        )
    failure = _table(raw, "escalation").get("delivery_failure_group", "coordinators")
    if routes and isinstance(failure, str) and failure not in groups:
        out.append(
            Problem(
                "escalation.delivery_failure_group",
                f"no group {failure!r} in [groups]",
                _suggest(failure, groups),
            )
        )
    return out


def _member_problems(members: Any, path: str, recipients: Mapping[str, Any]) -> list[Problem]:
    items = [members] if isinstance(members, str) else members if isinstance(members, list) else []
    return [
        Problem(path, f"no recipient {m!r} in [recipients]", _suggest(m, recipients))
        for m in items
        if isinstance(m, str) and m not in recipients
    ]


def _route_problems(
    routes: Any, prefix: str, steps: Mapping[str, Any], groups: Mapping[str, Any]
) -> list[Problem]:
    """Each escalation step names a group, a rota or a recipient (or, in a team's
    route, the team itself)."""
    out: list[Problem] = []
    for i, route in enumerate(routes if isinstance(routes, list) else []):
        chain = route.get("escalation", []) if isinstance(route, dict) else []
        for g in [chain] if isinstance(chain, str) else chain if isinstance(chain, list) else []:
            if isinstance(g, str) and g not in steps:
                out.append(
                    Problem(
                        f"{prefix}[{i}].escalation",
                        f"no group {g!r} in [groups] (nor a rota or recipient)",
                        _suggest(g, steps),
                    )
                )
    return out


def _zone_problems(raw: Mapping[str, Any]) -> list[Problem]:
    places = [("quiet_hours.timezone", _table(raw, "quiet_hours").get("timezone"))]
    places.append(("web.timezone", _table(raw, "web").get("timezone")))
    for name, rota in _table(raw, "rotas").items():
        if isinstance(rota, dict):
            places.append((f"rotas.{name}.timezone", rota.get("timezone")))
    sources = _table(raw, "sources")
    for name in ("mllp", "csv", "fhir_poll"):
        places.append((f"sources.{name}.timezone", _table(sources, name).get("timezone")))
    return [p for path, value in places if (p := _zone_problem(path, value)) is not None]


def _source_problems(raw: Mapping[str, Any], base: Path) -> list[Problem]:
    from monitor.sources.mllp_tls import TLSConfigError, server_context

    out: list[Problem] = []
    poll = _table(_table(raw, "sources"), "fhir_poll")
    if poll.get("enabled") is True and not poll.get("base_url"):
        out.append(Problem("sources.fhir_poll.base_url", "required when the poller is enabled"))
    try:  # the same context the listener builds: files present, key matching, CAs readable
        server_context(_table(_table(raw, "sources"), "mllp"), base)
    except TLSConfigError as exc:
        out.append(Problem(f"sources.mllp.{exc.key}", exc.reason))
    return out


def _patient_sms_problems(raw: Mapping[str, Any], base: Path) -> list[Problem]:
    from monitor.services.patient_sms import config_problems

    return [Problem(path, message) for path, message in config_problems(raw, base)]


def _read(file: Path) -> tuple[dict[str, Any] | None, Problem | None]:
    try:
        return tomllib.loads(file.read_text(encoding="utf-8")), None
    except FileNotFoundError:
        return None, Problem("", "no such config file (use --config or MONITOR_CONFIG)")
    except OSError as exc:
        return None, Problem("", f"cannot read the config file ({exc.strerror})")
    except UnicodeDecodeError:
        return None, Problem("", "the config file is not UTF-8 text")
    except tomllib.TOMLDecodeError as exc:
        return None, Problem("", f"not valid TOML ({exc})")


def _strip_file(message: str, file: Path) -> str:
    return message.removeprefix(f"{file}: ")


def check(path: str | Path | None, secrets: SecretSource | None = None) -> CheckedConfig:
    """Load the config as the service does, collecting every problem on the way."""
    from monitor.sources import load_mapping

    secrets = secrets or SecretSource()
    file = config_path(path)
    out = CheckedConfig(file)
    raw, fatal = _read(file)
    if raw is None:
        out.problems.append(fatal or Problem("", "unreadable"))
        return out
    out.problems += _schema_problems(raw)
    out.problems += _channel_problems(raw, secrets, out.notifiers)
    out.problems += _reference_problems(raw)
    out.problems += _zone_problems(raw)
    out.problems += _source_problems(raw, file.parent)
    out.problems += _patient_sms_problems(raw, file.parent)
    try:
        out.settings = load_settings(path if path else None)
    except SettingsError as exc:
        out.problems.append(Problem("", _strip_file(str(exc), file)))
        return out
    try:
        out.protocols = out.settings.protocols()
    except SettingsError as exc:
        out.problems.append(Problem("protocols", _strip_file(str(exc), file)))
    try:
        out.mapping = load_mapping(out.settings.mapping_path)
    except ValueError as exc:
        out.problems.append(Problem("sources.mapping", str(exc)))
    if out.problems:
        return out
    # What is left is what the service itself builds; it must agree with the above.
    try:
        out.routing = parse_routing(raw)
    except RoutingError as exc:
        out.problems.append(Problem("", str(exc)))
    from monitor.web.host import web_settings

    try:
        web_settings(raw)
    except SettingsError as exc:
        out.problems.append(Problem("", str(exc)))
    return out


def load_checked(path: str | Path | None, secrets: SecretSource | None = None) -> CheckedConfig:
    """`check()`, raising ConfigInvalid (one line, every problem) when anything is wrong."""
    checked = check(path, secrets)
    if checked.problems:
        raise ConfigInvalid(checked.file, checked.problems)
    return checked


def reaches_a_person(routing: Routing, recipient: str) -> bool:
    """A recipient with at least one contact on a channel that is not the console."""
    r = routing.recipients.get(recipient)
    return r is not None and any(
        str(routing.channels.get(c.channel, {}).get("kind")) != "console" for c in r.contacts
    )


def unreachable_critical(routing: Routing) -> str | None:
    """Why a critical alert could reach nobody but the log, or None when every route a
    critical alert can take pages at least one person (SMS, email, webhook...)."""
    team_routes = [r for t in routing.teams.values() for r in t.routes]
    critical = [
        r for r in (*team_routes, *routing.routes) if not r.severities or "critical" in r.severities
    ]
    if not critical:
        return 'no route takes critical alerts ([[routes]] with severities = ["critical"])'
    for route in critical:
        members = [m for g in route.chain for m in routing.possible_members(g)]
        if not any(reaches_a_person(routing, m) for m in members):
            return (
                f"route {route.name!r} sends critical alerts to the console only: nobody is paged"
            )
    return None
