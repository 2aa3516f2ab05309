"""On-call rotas: the handover instant belongs to exactly one person; overrides win."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from monitor.rotas import Override, Rota, member_at, on_call
from monitor.routing import RoutingError, parse_routing

LONDON = ZoneInfo("Europe/London")


def rota(handover: str = "weekly", overrides: tuple[Override, ...] = ()) -> Rota:
    return Rota(
        name="hep",
        label="Hepatology on call",
        members=("ana", "ben", "cat"),
        handover=handover,  # type: ignore[arg-type]
        handover_at=time(9, 0),
        start=date(2026, 1, 5),  # a Monday
        tz=LONDON,
        overrides=overrides,
    )


def test_weekly_handover_instant_belongs_to_the_incoming_member() -> None:
    r = rota()
    boundary = datetime(2026, 1, 12, 9, 0, tzinfo=LONDON)  # GMT: 09:00 UTC
    assert member_at(r, boundary - timedelta(microseconds=1)) == "ana"
    assert member_at(r, boundary) == "ben"
    before = on_call(r, boundary - timedelta(seconds=1))
    assert (before.member, before.until, before.next_member) == ("ana", boundary, "ben")
    assert on_call(r, boundary).until == boundary + timedelta(days=7)
    # Wraps round: the fourth week is the first member again.
    assert member_at(r, datetime(2026, 1, 26, 9, 0, tzinfo=LONDON)) == "ana"


def test_no_gap_or_overlap_over_a_dst_change() -> None:
    """Handovers stay at 09:00 local across the March clock change (08:00 UTC after)."""
    r = rota("daily")
    handover = datetime(2026, 3, 30, 9, 0, tzinfo=LONDON)  # BST: 08:00 UTC
    assert handover.astimezone(UTC).hour == 8
    assert member_at(r, handover - timedelta(microseconds=1)) != member_at(r, handover)
    # Every minute for three days has exactly one person, who changes only at 09:00 local.
    t = datetime(2026, 3, 28, 0, 0, tzinfo=UTC)
    last = member_at(r, t)
    changes = []
    while t < datetime(2026, 3, 31, 0, 0, tzinfo=UTC):
        t += timedelta(minutes=1)
        who = member_at(r, t)
        if who != last:
            changes.append(t.astimezone(LONDON).time())
            last = who
    assert changes == [time(9, 0)] * 3


def test_an_override_wins_and_hands_back_at_its_end() -> None:
    leave = Override(
        "cat",
        datetime(2026, 1, 7, 18, 0, tzinfo=LONDON),
        datetime(2026, 1, 9, 8, 0, tzinfo=LONDON),
    )
    r = rota(overrides=(leave,))
    assert member_at(r, leave.start - timedelta(microseconds=1)) == "ana"
    now = on_call(r, leave.start)
    assert (now.member, now.overridden, now.until, now.next_member) == (
        "cat",
        True,
        leave.end,
        "ana",
    )
    assert member_at(r, leave.end) == "ana"
    # Before the override, "next" is the cover, starting when the override does.
    soon = on_call(r, datetime(2026, 1, 7, 12, 0, tzinfo=LONDON))
    assert (soon.member, soon.next_member, soon.until) == ("ana", "cat", leave.start)


def _raw(**rota_spec: object) -> dict[str, object]:
    return {
        "channels": {"console": {"kind": "console"}},
        "recipients": {
            "ana": {"contacts": [{"channel": "console", "address": "ana"}]},
            "ben": {"contacts": [{"channel": "console", "address": "ben"}]},
        },
        "groups": {"coordinators": ["ana"]},
        "rotas": {"hep": {"members": ["ana", "ben"], "start": date(2026, 1, 5), **rota_spec}},
    }


def test_rota_config_is_parsed_in_the_site_zone_with_local_overrides() -> None:
    raw = _raw(
        handover="daily",
        handover_at="08:30",
        overrides=[{"member": "ben", "start": "2026-01-05T12:00", "end": "2026-01-05T13:00"}],
    )
    raw["web"] = {"timezone": "Europe/Paris"}
    r = parse_routing(raw).rotas["hep"]
    assert r.tz == ZoneInfo("Europe/Paris") and r.handover_at == time(8, 30)
    assert r.overrides[0].start == datetime(2026, 1, 5, 11, 0, tzinfo=UTC)
    assert member_at(r, datetime(2026, 1, 5, 11, 30, tzinfo=UTC)) == "ben"


def test_rota_naming_an_unknown_member_is_refused_with_its_key() -> None:
    raw = _raw(overrides=[{"member": "zed", "start": "2026-01-05T12:00", "end": "2026-01-06"}])
    with pytest.raises(RoutingError, match=r"rotas\.hep\.overrides\[0\]\.member: .*'zed'"):
        parse_routing(raw)
