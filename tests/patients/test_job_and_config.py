"""The daemon's patient-SMS pass and `check-config`'s [patient_sms] checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from monitor.services.patient_sms import config_problems
from monitor.services.patient_sms_job import run_pass
from tests.helpers import ROOT
from tests.patients.conftest import MOBILE, START, World


@dataclass
class PinnedClock:
    at: datetime

    def now(self) -> datetime:
        return self.at


@dataclass
class FakeSettings:
    raw: dict[str, Any]
    path: Path


@dataclass
class FakeService:
    """Just what the pass reads from the daemon's Service."""

    engine: Any
    clock: PinnedClock
    config: Any
    woken: list[int] = field(default_factory=list)

    def wake_dispatcher(self) -> None:
        self.woken.append(1)


@dataclass
class FakeConfig:
    settings: FakeSettings
    protocols: Any
    routing: Any
    notifiers: dict[str, Any]


def raw_table(**kw: Any) -> dict[str, Any]:
    t = {"enabled": True, "channel": "sms", "timezone": "Europe/London",
         "messages_dir": str(ROOT / "config" / "messages"), "clinic": "the clinic",
         "help_number": "+441632960000"}  # fmt: skip
    t.update(kw)
    return {"channels": {"sms": {"kind": "twilio_sms"}}, "patient_sms": t}


async def test_the_pass_sends_through_the_channel_and_is_off_when_disabled(world: World) -> None:
    w = world
    clock = PinnedClock(START + timedelta(days=2, hours=2))
    cfg = FakeConfig(FakeSettings(raw_table(), ROOT / "config" / "monitor.toml"), w.protocols,
                     w.routing, {"sms": w.sms})  # fmt: skip
    service = FakeService(w.engine, clock, cfg)
    assert await run_pass(service) == 1
    assert [m.to for m in w.api.messages] == [MOBILE]
    clock.at += timedelta(minutes=1)
    assert await run_pass(service) == 0  # nothing new, nothing resent
    cfg.settings.raw["patient_sms"]["enabled"] = False
    clock.at += timedelta(days=1)
    assert await run_pass(service) == 0 and len(w.api.messages) == 1


def test_check_config_names_a_wrong_channel_zone_or_template(tmp_path: Path) -> None:
    assert config_problems(raw_table(), ROOT) == []
    assert config_problems({"patient_sms": {"enabled": False}}, ROOT) == []
    raw = raw_table(channel="console", timezone="Mars/Olympus")
    raw["channels"]["console"] = {"kind": "console"}
    paths = [p for p, _ in config_problems(raw, ROOT)]
    assert paths == ["patient_sms.channel", "patient_sms.timezone"]
    problems = config_problems(raw_table(clinic="C" * 300), ROOT)
    assert [p for p, _ in problems] == ["patient_sms.messages_dir"]
    assert "segments" in problems[0][1]
    problems = config_problems(raw_table(messages_dir=str(tmp_path)), ROOT)
    assert [p for p, _ in problems] == ["patient_sms.messages_dir"]


def test_check_config_names_a_team_that_does_not_exist_or_whose_name_does_not_fit() -> None:
    ok = {"ibd": {"clinic": "the IBD clinic", "help_number": "+441632960111"}}
    raw = {**raw_table(teams=ok), "teams": {"ibd": {}}}
    assert config_problems(raw, ROOT) == []
    raw = {**raw_table(teams={"ibdd": ok["ibd"]}), "teams": {"ibd": {}}}
    assert [p for p, _ in config_problems(raw, ROOT)] == ["patient_sms.teams.ibdd"]
    long = {"ibd": {"clinic": "C" * 300, "help_number": "+441632960111"}}
    raw = {**raw_table(teams=long), "teams": {"ibd": {}}}
    assert [p for p, _ in config_problems(raw, ROOT)] == ["patient_sms.teams.ibd"]
