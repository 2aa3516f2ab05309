"""Profiles load, are refused with the key named when malformed, and drive the numbers."""

from __future__ import annotations

import ast
import copy
import tomllib
from pathlib import Path
from typing import Any

import pytest

from monitor.core.protocol import ProtocolError, load_protocol, load_protocols, parse_protocol
from tests.helpers import ROOT

SEED_FILE = ROOT / "config" / "protocols" / "azathioprine-seed.toml"


def seed_data() -> dict[str, Any]:
    return tomllib.loads(SEED_FILE.read_text())


def test_both_shipped_profiles_load_and_are_unapproved() -> None:
    protocols = load_protocols(ROOT / "config" / "protocols")
    assert set(protocols) == {"azathioprine-seed", "azathioprine-bsr2017"}
    for proto in protocols.values():
        assert not proto.approval.approved
        assert proto.version and proto.sources


def test_seed_numbers_match_the_article() -> None:
    p = load_protocol(SEED_FILE)
    assert p.dosing.start_dose_mg == 50 and p.dosing.step_mg == 25
    assert p.dosing.max_mg_per_kg == 1.5
    assert p.stop.transaminase is not None and p.stop.transaminase.baseline_multiple == 5
    assert p.stop.transaminase.absolute_u_per_l == 500 and p.stop.transaminase.inclusive
    sym = p.stop.transaminase_symptomatic
    assert sym is not None and sym.baseline_multiple == 3 and sym.absolute_u_per_l == 300
    assert p.stop.bilirubin is not None and p.stop.bilirubin.uln_multiple == 2
    assert set(p.symptoms.names) == {"fatigue", "nausea", "vomiting", "ruq_pain", "jaundice"}
    assert [(r.from_day, r.gap_days, r.grace_days) for r in p.schedule.rows] == [
        (0, 4, 1),
        (14, 7, 2),
        (28, 14, 3),
        (90, 14, 3),
    ]
    assert p.schedule.rows[-1].stable_gap_days == 31


def test_every_seed_value_is_cited_or_marked_local_default() -> None:
    for line in SEED_FILE.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", "[")) or "=" not in stripped:
            continue
        if stripped.split("=", 1)[0].strip() in (
            "id",
            "version",
            "title",
            "drug",
            "status",
            "approved_by",
            "approved_on",
            "note",
        ):
            continue
        if stripped.endswith("[") or stripped.startswith('"'):
            continue  # the sources list: it is the citation
        assert "#" in stripped, f"no citation or LOCAL DEFAULT mark: {line}"


def _without(data: dict[str, Any], path: str) -> dict[str, Any]:
    d = copy.deepcopy(data)
    node = d
    parts = path.split(".")
    for part in parts[:-1]:
        node = node[part]
    del node[parts[-1]]
    return d


def _with(data: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    d = copy.deepcopy(data)
    node = d
    parts = path.split(".")
    for part in parts[:-1]:
        node = node[part] if not part.isdigit() else node[int(part)]
    node[parts[-1]] = value
    return d


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: _without(d, "dosing.step_mg"), "dosing.step_mg: missing"),
        (lambda d: _with(d, "dosing.step_mg", "25"), "dosing.step_mg: must be a number"),
        (lambda d: _with(d, "dosing.max_mg_per_kg", -1), "dosing.max_mg_per_kg: must be greater"),
        (lambda d: _with(d, "stop.transaminase.comparison", "gte"), "stop.transaminase.comparison"),
        (
            lambda d: _with(d, "stop.transaminase_symptomatic.absolute_u_per_l", 600.0),
            "stop.transaminase_symptomatic.absolute_u_per_l",
        ),
        (lambda d: _without(d, "schedule"), "schedule: missing table"),
        (lambda d: _with(d, "schedule.clock", "weekly"), "schedule.clock"),
        (lambda d: _with(d, "grading.alt.uln", [1.0, 5.0, 3.0, 20.0]), "grading.alt.uln"),
        (lambda d: _with(d, "approval.status", "approved"), "approval.approved_by"),
        (lambda d: _with(d, "pattern.cholestatic_max_r", 6.0), "pattern.cholestatic_max_r"),
        (lambda d: _with(d, "symptoms.names", []), "symptoms.names"),
        (lambda d: _with(d, "dosing.step_mgs", 25), "dosing.step_mgs: unknown key"),
        (lambda d: _with(d, "warn.cholestatic.alp_min_grade", 7), "warn.cholestatic.alp_min_grade"),
    ],
)
def test_malformed_profile_is_refused_naming_the_key(mutate: Any, expected: str) -> None:
    with pytest.raises(ProtocolError) as err:
        parse_protocol(mutate(seed_data()))
    assert expected in str(err.value)


def test_schedule_rows_must_increase() -> None:
    data = seed_data()
    data["schedule"]["rows"][2]["from_day"] = 10
    with pytest.raises(ProtocolError, match=r"schedule.rows\[2\].from_day"):
        parse_protocol(data)


def test_broken_toml_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[profile\nid=")
    with pytest.raises(ProtocolError, match=r"bad\.toml: not valid TOML"):
        load_protocol(bad)


PURE_CORE = [
    ROOT / "monitor" / "core" / "timeline.py",
    ROOT / "monitor" / "core" / "panel.py",
    *sorted((ROOT / "monitor" / "rules").glob("*.py")),
]


@pytest.mark.parametrize("path", PURE_CORE, ids=lambda p: p.name)
def test_no_protocol_number_in_rule_or_timeline_code(path: Path) -> None:
    """Only 0, 1 and small indices may appear; every clinical number is in a profile."""
    tree = ast.parse(path.read_text())
    numbers = {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, int | float)
        and not isinstance(node.value, bool)
    }
    assert numbers <= {0, 1, 2, 3, 4, -1, 1e-9}, f"{path.name}: {sorted(numbers)}"
