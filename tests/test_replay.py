"""`monitor replay` as the contract specifies: output lines, bad input, episodes."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CliRunner
from tests.helpers import CONFIG, ROOT

EXAMPLES = sorted((ROOT / "examples").glob("*.json"))
CONTRACT_EXAMPLE: dict[str, Any] = {
    "patient": {
        "id": "P-001",
        "weight_kg": 62,
        "start": "2026-01-05T09:00:00Z",
        "start_dose_mg": 50,
        "prior_toxic_dose_mg": 100,
        "tpmt": "normal",
        "baseline": {"alt": 22, "ast": 20, "alp": 70, "bilirubin": 8},
        "uln": {"alt": 33, "ast": 32, "alp": 120, "bilirubin": 21},
    },
    "events": [
        {
            "at": "2026-01-08T08:00:00Z",
            "kind": "lab",
            "results": {"alt": 25, "ast": 21, "bilirubin": 9},
        },
        {"at": "2026-01-09T10:00:00Z", "kind": "symptoms", "symptoms": ["nausea"]},
        {"at": "2026-01-13T09:00:00Z", "kind": "dose", "dose_mg": 75},
        {"at": "2026-02-01T09:00:00Z", "kind": "stop", "reason": "clinician decision"},
    ],
    "until": "2026-03-01T00:00:00Z",
}

EXPECTED_RULES = {
    "01-stop-transaminase.json": [
        "titration.escalation_due",
        "titration.target_reached",
        "warn.transaminase_elevated",
        "stop.transaminase",
    ],
    "02-symptoms-after-panel.json": ["warn.transaminase_elevated", "stop.transaminase_symptomatic"],
    "03-missed-labs.json": ["enrollment.tpmt_unknown", "titration.escalation_due", "lab.overdue"],
    "04-titration-to-maintenance.json": [
        "titration.escalation_due",
        "titration.escalation_due",
        "titration.target_reached",
    ],
    "05-bilirubin-and-restart.json": [
        "enrollment.tpmt_deficient",
        "stop.bilirubin",
        "stop.transaminase_symptomatic",
        "stop.transaminase_symptomatic",
        "lab.overdue",
    ],
    # issue 9
    "06-cholestatic-after-increase.json": ["warn.cholestatic"],
    "07-bilirubin-only-rise.json": ["warn.cholestatic"],
    "08-missed-repeat-after-warning.json": [
        "titration.escalation_due",
        "warn.transaminase_elevated",
        "lab.overdue",
    ],
    "09-increase-during-hold.json": [
        "warn.transaminase_elevated",
        "titration.target_reached",
        "titration.increase_during_hold",
    ],
    "10-tpmt-poor-no-reminders.json": ["enrollment.tpmt_deficient"],
    "11-nudt15-intermediate-reduced-cap.json": [
        "enrollment.nudt15_deficient",
        "titration.escalation_due",
        "titration.target_reached",
    ],
}


def write(tmp_path: Path, scenario: dict[str, Any]) -> str:
    path = tmp_path / "scenario.json"
    path.write_text(json.dumps(scenario))
    return str(path)


def lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_examples_give_contract_lines(cli: CliRunner, example: Path) -> None:
    result = cli("replay", str(example), "--json")
    assert result.code == 0, result.err
    alerts = lines(result.out)
    assert [a["rule"] for a in alerts] == EXPECTED_RULES[example.name]
    for a in alerts:
        assert set(a) >= {"at", "patient", "rule", "severity", "message"}
        assert a["at"].endswith("Z") and a["severity"] in ("critical", "warning", "info")
        assert a["patient"] == json.loads(example.read_text())["patient"]["id"]
    assert [a["at"] for a in alerts] == sorted(a["at"] for a in alerts)


def _replay(cli: CliRunner, name: str) -> list[dict[str, Any]]:
    result = cli("replay", str(ROOT / "examples" / name), "--json")
    assert result.code == 0, result.err
    return lines(result.out)


def test_issue9_examples_say_what_the_issue_asks(cli: CliRunner) -> None:
    """The moments and words that matter in examples 06-11, beyond the rule order."""
    chol = _replay(cli, "06-cholestatic-after-increase.json")[0]
    assert chol["at"] == "2026-01-15T08:00:00Z"
    assert "Pattern: cholestatic (R 0.29)" in chol["message"]
    assert "Hold dose escalation" in chol["message"]
    bili = _replay(cli, "07-bilirubin-only-rise.json")[0]
    assert "bilirubin 39.9" in bili["message"] and "1.9x ULN" in bili["message"]
    overdue = [a for a in _replay(cli, "08-missed-repeat-after-warning.json")]
    # the warning at 02-04 09:00 asked for a repeat within 5 days; grace 1 day
    assert [(a["at"], a["rule"]) for a in overdue[1:]] == [
        ("2026-02-04T09:00:00Z", "warn.transaminase_elevated"),
        ("2026-02-10T09:00:00Z", "lab.overdue"),
    ]
    assert "warn.transaminase_elevated" in overdue[2]["message"]
    hold = _replay(cli, "09-increase-during-hold.json")[-1]
    assert hold["at"] == "2026-01-13T09:00:00Z" and "50 -> 75" in hold["message"]
    poor = _replay(cli, "10-tpmt-poor-no-reminders.json")
    assert poor[0]["severity"] == "critical" and "non-thiopurine" in poor[0]["message"]
    nudt = _replay(cli, "11-nudt15-intermediate-reduced-cap.json")
    assert "reduced cap is 1 mg/kg/day (max 75 mg/day)" in nudt[0]["message"]
    assert "maximum 75 mg/day" in nudt[2]["message"]


def test_reminders_come_back_without_the_metaboliser_status(cli: CliRunner, tmp_path: Path) -> None:
    """Examples 10 and 11 show the status at work: the same course with normal TPMT and
    NUDT15 gets reminders (10) and a step past 75 mg (11)."""
    for name, status in (
        ("10-tpmt-poor-no-reminders.json", "tpmt"),
        ("11-nudt15-intermediate-reduced-cap.json", "nudt15"),
    ):
        data = json.loads((ROOT / "examples" / name).read_text())
        data["patient"][status] = "normal"
        got = lines(cli("replay", write(tmp_path, data), "--json").out)
        due = [a for a in got if a["rule"] == "titration.escalation_due"]
        assert due, name
        if status == "nudt15":
            assert any("75 -> 100" in a["message"] for a in due)


def test_contract_example(cli: CliRunner, tmp_path: Path) -> None:
    result = cli("replay", write(tmp_path, CONTRACT_EXAMPLE), "--json")
    assert result.code == 0
    got = [(a["at"], a["rule"], a["severity"]) for a in lines(result.out)]
    assert got == [
        ("2026-01-09T10:00:00Z", "warn.symptoms", "warning"),
        # warn.symptoms asks for LFTs urgently: due 24 h later, grace 12 h (issue 9).
        ("2026-01-10T22:00:00Z", "lab.overdue", "warning"),
        ("2026-01-13T09:00:00Z", "titration.target_reached", "info"),
        # the increase to 75 mg came while LFTs were overdue (issue 9)
        ("2026-01-13T09:00:00Z", "titration.increase_during_hold", "warning"),
    ]


def test_table_output_without_json(cli: CliRunner) -> None:
    result = cli("replay", str(ROOT / "examples" / "01-stop-transaminase.json"))
    assert result.code == 0
    assert "stop.transaminase" in result.out and "4 alert(s)." in result.out


def _mutated(path: str, value: Any) -> dict[str, Any]:
    data = copy.deepcopy(CONTRACT_EXAMPLE)
    node: Any = data
    parts = path.split(".")
    for part in parts[:-1]:
        node = node[int(part)] if part.isdigit() else node[part]
    last = parts[-1]
    if value is _DELETE:
        del node[int(last) if last.isdigit() else last]
    else:
        node[int(last) if last.isdigit() else last] = value
    return data


_DELETE = object()

BAD_CASES = [
    ("patient.weight_kg", _DELETE, "patient.weight_kg"),
    ("patient.weight_kg", "heavy", "patient.weight_kg"),
    ("patient.baseline.alt", _DELETE, "patient.baseline.alt"),
    ("patient.tpmt", "low", "patient.tpmt"),
    ("patient.nudt15", "slow", "patient.nudt15"),
    ("patient.start", "2026-01-05T09:00:00", "patient.start"),
    ("until", _DELETE, "until"),
    ("events.0.results.alt", -5, "events[0].results.alt"),
    ("events.0.results.alt", "25", "events[0].results.alt"),
    ("events.0.results.alt", None, "events[0].results.alt"),
    ("events.0.results.albumin", 40, "events[0].results.albumin"),
    ("events.0.units", {"bilirubin": "mmol/L"}, "events[0].units.bilirubin"),
    ("events.1.kind", "vitals", "events[1]"),
    ("events.1.symptoms", ["headache"], "events[1].symptoms"),
    ("events.2.dose_mg", "75", "events[2].dose_mg"),
    ("events.3.at", "2026-01-01T09:00:00Z", "events[3].at"),
    ("events.2.at", _DELETE, "events[2].at"),
]


@pytest.mark.parametrize(
    ("path", "value", "named"),
    BAD_CASES,
    ids=[c[2] + "-" + str(i) for i, c in enumerate(BAD_CASES)],
)
def test_bad_scenario_exits_2_with_one_line(
    cli: CliRunner, tmp_path: Path, path: str, value: Any, named: str
) -> None:
    result = cli("replay", write(tmp_path, _mutated(path, value)), "--json")
    assert result.code == 2
    assert result.out == ""
    err_lines = result.err.strip().splitlines()
    assert len(err_lines) == 1, result.err
    assert named in err_lines[0]


def test_events_out_of_order_name_the_index(cli: CliRunner, tmp_path: Path) -> None:
    data = copy.deepcopy(CONTRACT_EXAMPLE)
    data["events"][1]["at"] = "2026-01-07T00:00:00Z"
    result = cli("replay", write(tmp_path, data), "--json")
    assert (result.code, result.out) == (2, "")
    assert "events[1].at" in result.err and "order" in result.err


def test_not_json_and_missing_file(cli: CliRunner, tmp_path: Path) -> None:
    bad = tmp_path / "x.json"
    bad.write_text("{not json")
    for target in (str(bad), str(tmp_path / "missing.json")):
        result = cli("replay", target, "--json")
        assert (result.code, result.out) == (2, "")
        assert len(result.err.strip().splitlines()) == 1


def test_mg_dl_bilirubin_is_converted(cli: CliRunner, tmp_path: Path) -> None:
    data = copy.deepcopy(CONTRACT_EXAMPLE)
    data["events"] = [
        {
            "at": "2026-01-08T08:00:00Z",
            "kind": "lab",
            "results": {"alt": 40, "bilirubin": 2.5},
            "units": {"bilirubin": "mg/dL"},
        }
    ]
    result = cli("replay", write(tmp_path, data), "--json")
    rules = [a["rule"] for a in lines(result.out)]
    assert "stop.bilirubin" in rules
    msg = next(a["message"] for a in lines(result.out) if a["rule"] == "stop.bilirubin")
    assert "42.8 umol/L" in msg  # 2.5 mg/dL x 17.1


def test_baseline_as_list_uses_the_mean(cli: CliRunner, tmp_path: Path) -> None:
    data = copy.deepcopy(CONTRACT_EXAMPLE)
    data["patient"]["baseline"]["alt"] = [20, 24]  # mean 22 -> 5x = 110
    data["events"] = [{"at": "2026-01-08T08:00:00Z", "kind": "lab", "results": {"alt": 110}}]
    result = cli("replay", write(tmp_path, data), "--json")
    assert "stop.transaminase" in [a["rule"] for a in lines(result.out)]


def test_replay_sends_nothing_and_needs_no_database(tmp_path: Path) -> None:
    """A real subprocess with no database configured anywhere writable but tmp."""
    env = {
        "PATH": "/usr/bin:/bin",
        "MONITOR_DATABASE_URL": "sqlite:////nonexistent/dir/x.db",
        "HOME": str(tmp_path),
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "monitor",
            "--config",
            str(CONFIG),
            "replay",
            "--json",
            str(ROOT / "examples" / "02-symptoms-after-panel.json"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 2
