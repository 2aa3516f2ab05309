"""The watch keys are as strict as the rest: a typo is refused with its key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.config_check import check
from monitor.secrets import SecretSource
from tests.helpers import ROOT

BASE = f"""
[protocols]
dir = "{ROOT / "config" / "protocols"}"
default = "azathioprine-seed"

[channels.console]
kind = "console"
"""


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ("[watch]\naudit_second = 60\n", "watch.audit_second"),
        ('[watch]\nsummary_at = "7.30"\n', "watch.summary_at"),
        ("[watch]\ndelivery_gap_minutes = 0\n", "watch.delivery_gap_minutes"),
        ('[sources.mllp]\nworking_hours = "08:00"\n', "sources.mllp.working_hours"),
        ('[sources.mllp]\nworking_days = ["monday"]\n', "sources.mllp.working_days"),
        ("[sources.csv]\nexpect_every_minute = 60\n", "sources.csv.expect_every_minute"),
    ],
)
def test_a_bad_watch_key_is_refused_by_name(tmp_path: Path, extra: str, key: str) -> None:
    path = tmp_path / "m.toml"
    path.write_text(BASE + extra)
    problems = [str(p) for p in check(path, SecretSource(env={})).problems]
    assert any(p.startswith(key) for p in problems), problems


def test_the_production_example_sets_valid_watch_keys() -> None:
    env = {"MONITOR_TWILIO_AUTH_TOKEN": "t", "MONITOR_SMTP_PASSWORD": "p"}
    checked = check(ROOT / "config" / "production.example.toml", SecretSource(env=env))
    assert checked.problems == []
    assert checked.settings is not None
    assert checked.settings.raw["sources"]["mllp"]["working_hours"] == "07:00-20:00"
