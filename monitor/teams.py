"""Care teams and rotas, read from `[teams.<id>]` and `[rotas.<id>]` of monitor.toml.

A team has its own members (a recipient group named after the team), routes,
quiet hours, and the source values (HL7 PV1-3 point of care, FHIR performer
references) that put a patient in it. A route step names, in this order of lookup,
a rota, a group, the team itself, or a recipient; a rota step is resolved to the
person on call when the alert is raised, so the frozen chain records who it was.
Errors name the key path (`teams.ibd.routes[0].escalation`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, time
from typing import TYPE_CHECKING, Any, Literal, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from monitor.rotas import Override, Rota, on_call

if TYPE_CHECKING:
    from monitor.routing import Routing, Team

ROTA_STEP = "rota:"  # a frozen step "rota:<id>:<recipient>"
PERSON_STEP = "recipient:"  # a frozen step naming one recipient


class TeamError(ValueError):
    """A team or rota problem; names the key."""


def _clock(value: Any, key: str) -> time:
    try:
        hh, mm = str(value).split(":")
        return time(int(hh), int(mm))
    except ValueError as exc:
        raise TeamError(f"{key}: must look like 09:00") from exc


def _zone(value: Any, key: str) -> ZoneInfo:
    try:
        return ZoneInfo(str(value))
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise TeamError(f"{key}: unknown time zone {value!r}") from exc


def _instant(value: Any, tz: ZoneInfo, key: str) -> datetime:
    """An override bound: a TOML datetime or ISO text; without an offset, local time."""
    if isinstance(value, datetime):
        when = value
    else:
        try:
            when = datetime.fromisoformat(str(value))
        except ValueError as exc:
            raise TeamError(f"{key}: must be a date-time like 2026-12-24T09:00") from exc
    return when if when.tzinfo is not None else when.replace(tzinfo=tz)


def parse_rotas(
    raw: Mapping[str, Any], recipients: Mapping[str, Any], site_tz: str
) -> dict[str, Rota]:
    rotas: dict[str, Rota] = {}
    table = raw.get("rotas", {})
    if not isinstance(table, dict):
        raise TeamError("rotas: must be a table")
    for name, spec in table.items():
        where = f"rotas.{name}"
        if not isinstance(spec, dict):
            raise TeamError(f"{where}: must be a table")
        members = spec.get("members", [])
        if not isinstance(members, list) or not members:
            raise TeamError(f"{where}.members: needs at least one recipient")
        for m in members:
            if m not in recipients:
                raise TeamError(f"{where}.members: no recipient {m!r} in [recipients]")
        tz = _zone(spec.get("timezone", site_tz), f"{where}.timezone")
        handover = spec.get("handover", "weekly")
        if handover not in ("daily", "weekly"):
            raise TeamError(f"{where}.handover: must be daily or weekly")
        start = spec.get("start")
        if isinstance(start, datetime) or not isinstance(start, date | str):
            raise TeamError(f"{where}.start: must be a date like 2026-01-05")
        try:
            first = start if isinstance(start, date) else date.fromisoformat(start)
        except ValueError as exc:
            raise TeamError(f"{where}.start: must be a date like 2026-01-05") from exc
        overrides: list[Override] = []
        for i, o in enumerate(spec.get("overrides", [])):
            ow = f"{where}.overrides[{i}]"
            if not isinstance(o, dict) or o.get("member") not in recipients:
                raise TeamError(f"{ow}.member: no recipient {o.get('member')!r} in [recipients]")
            lo = _instant(o.get("start"), tz, f"{ow}.start")
            hi = _instant(o.get("end"), tz, f"{ow}.end")
            if hi <= lo:
                raise TeamError(f"{ow}.end: must be after start")
            overrides.append(Override(str(o["member"]), lo, hi))
        rotas[name] = Rota(
            name=name,
            label=str(spec.get("label", name)),
            members=tuple(str(m) for m in members),
            handover=cast(Literal["daily", "weekly"], handover),
            handover_at=_clock(spec.get("handover_at", "09:00"), f"{where}.handover_at"),
            start=first,
            tz=tz,
            overrides=tuple(overrides),
        )
    return rotas


def check_step(
    step: str,
    where: str,
    groups: Mapping[str, Any],
    recipients: Mapping[str, Any],
    rotas: Mapping[str, Any],
    team: str | None,
) -> None:
    if step in rotas or step in groups or step in recipients or step == team:
        return
    raise TeamError(f"{where}: no rota, group or recipient {step!r}")


def team_for_source(teams: Mapping[str, Team], value: str | None) -> str | None:
    """The team a source value (PV1-3 point of care, a FHIR reference) maps to."""
    if not value:
        return None
    needle = value.strip().lower()
    for team in teams.values():
        if any(s.strip().lower() == needle for s in team.sources):
            return team.name
    return None


def oncall_rows(routing: Routing, now: datetime) -> list[dict[str, str | bool]]:
    """Who is on call now and next for every rota (the console's health page too)."""
    rows: list[dict[str, str | bool]] = []
    for rota in routing.rotas.values():
        now_on = on_call(rota, now)

        def label(name: str) -> str:
            r = routing.recipients.get(name)
            return r.label if r else name

        rows.append(
            {
                "rota": rota.name,
                "label": rota.label,
                "now": label(now_on.member),
                "now_id": now_on.member,
                "until": now_on.until.astimezone(rota.tz).isoformat(timespec="minutes"),
                "next": label(now_on.next_member),
                "next_id": now_on.next_member,
                "overridden": now_on.overridden,
            }
        )
    return rows
