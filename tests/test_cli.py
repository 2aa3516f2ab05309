"""The CLI for people: each command works, and a bad value gets one line and exit 2."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import CliRunner
from tests.helpers import ROOT


def ago(days: float) -> str:
    return (datetime.now(UTC) - timedelta(days=days)).isoformat()


def _enroll(cli: CliRunner, pid: str = "P-100", start: str | None = None) -> None:
    r = cli(
        "enroll",
        pid,
        "--weight",
        "70",
        "--start",
        start or ago(2),
        "--tpmt",
        "normal",
        "--baseline",
        "alt=20",
        "--baseline",
        "alt=24",
        "--baseline",
        "ast=20",
        "--uln",
        "alt=33",
        "--identifier",
        f"MRN:{pid}-555",
        "--prior-toxic-dose",
        "150",
    )
    assert r.code == 0, r.err


def test_enroll_lab_and_show(cli: CliRunner) -> None:
    _enroll(cli)
    r = cli("lab", "add", "P-100", "alt=130", "ast=40", "--at", ago(1))
    assert r.code == 0, r.err
    assert "stop.transaminase" in r.out and "CRITICAL" in r.out
    r = cli("patient", "show", "P-100", "--json")
    doc = json.loads(r.out)
    assert doc["baseline"]["alt"] == 22  # mean of 20 and 24
    assert doc["identifiers"] == ["MRN|P-100-555"]
    assert doc["on_therapy"] is False
    assert doc["latest"]["alt"]["value"] == 130 and doc["latest"]["alt"]["grade"] == 2
    assert [f["rule"] for f in doc["open_findings"]] == ["stop.transaminase"]
    r = cli("patient", "show", "P-100")
    assert r.code == 0 and "stopped" in r.out


def test_patients_table_and_json(cli: CliRunner) -> None:
    _enroll(cli, "P-1", start=ago(10))
    _enroll(cli, "P-2", start=ago(1))
    r = cli("patients")
    assert r.code == 0 and "P-1" in r.out and "OVERDUE" in r.out  # 10 days, no labs
    rows = json.loads(cli("patients", "--json").out)
    assert [(x["id"], x["overdue"]) for x in rows] == [("P-1", True), ("P-2", False)]
    assert rows[0]["max_dose_mg"] == 100 and rows[0]["open_alerts"] == 1


def test_symptoms_dose_stop_commands(cli: CliRunner) -> None:
    _enroll(cli)
    assert "warn.symptoms" in cli("symptoms", "add", "P-100", "nausea").out
    r = cli("dose", "set", "P-100", "75")
    assert r.code == 0 and "Recorded dose" in r.out
    r = cli("stop", "P-100", "--reason", "rash")
    assert r.code == 0
    assert json.loads(cli("patient", "show", "P-100", "--json").out)["phase"] == "stopped"


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("lab", "add", "P-100", "alt=abc"), "results.alt"),
        (("lab", "add", "P-100", "alt=-3"), "results.alt"),
        (("lab", "add", "P-100", "albumin=40"), "results.albumin"),
        (("lab", "add", "P-100", "bilirubin=2", "--unit", "bilirubin=g/L"), "units.bilirubin"),
        (("lab", "add", "P-100", "alt=20", "--at", "yesterday"), "--at"),
        (("lab", "add", "P-100", "alt=20", "--at", "2025-01-01T00:00:00Z"), "before the patient"),
        (("lab", "add", "NOPE", "alt=20"), "NOPE"),
        (("symptoms", "add", "P-100", "headache"), "symptoms"),
        (("dose", "set", "P-100", "0"), "dose_mg"),
        (("dose", "set", "P-100", "lots"), "dose_mg"),
        (("enroll", "P-100", "--weight", "70", "--baseline", "alt=20"), "baseline.ast"),
        (("enroll", "P 1", "--weight", "70", "--baseline", "alt=20", "--baseline", "ast=2"), "id"),
        (
            ("enroll", "P-100", "--weight", "70", "--baseline", "alt=20", "--baseline", "ast=2"),
            "already enrolled",
        ),
        (
            (
                "enroll",
                "P-7",
                "--weight",
                "70",
                "--baseline",
                "alt=2",
                "--baseline",
                "ast=2",
                "--protocol",
                "nope",
            ),
            "protocol",
        ),
        (("patient", "show", "NOPE"), "NOPE"),
        (("lab", "add"), "Missing"),
    ],
)
def test_bad_values_one_line_exit_2(cli: CliRunner, args: tuple[str, ...], named: str) -> None:
    _enroll(cli)
    before = cli("patient", "show", "P-100", "--json").out
    r = cli(*args)
    assert r.code == 2, (r.out, r.err)
    lines = r.err.strip().splitlines()
    assert len(lines) == 1, r.err
    assert named in lines[0]
    assert cli("patient", "show", "P-100", "--json").out == before  # nothing half-written


def test_enroll_from_replay_patient_file(cli: CliRunner, tmp_path: Path) -> None:
    r = cli("enroll", "--file", str(ROOT / "examples" / "01-stop-transaminase.json"))
    assert r.code == 0, r.err
    assert json.loads(cli("patient", "show", "P-001", "--json").out)["max_dose_mg"] == 75


def test_check_config_says_unapproved_plainly(cli: CliRunner) -> None:
    r = cli("check-config")
    assert r.code == 0
    assert "azathioprine-seed v1.0.0 (default)" in r.out
    assert "UNAPPROVED" in r.out and "Config OK." in r.out


def test_check_config_refuses_a_bad_profile(cli: CliRunner, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        (ROOT / "config/protocols/azathioprine-seed.toml")
        .read_text()
        .replace("step_mg = 25", "step_mg = -25")
    )
    r = cli("check-config", "--protocol", str(bad))
    assert r.code == 2 and "dosing.step_mg" in r.err


def test_demo_enrolls_examples_and_shows_status(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    r = cli("demo")
    assert r.code == 0, r.err
    for pid in ("P-001", "P-002", "P-003", "P-004", "P-005"):
        assert pid in r.out
    assert "UNAPPROVED" in r.err
    assert "sign in as 'demo' with password" in r.out
    again = cli("demo")
    assert "sign in as" not in again.out  # the account exists: no second one
    assert again.code == 0 and "Enrolled example" not in again.out


def test_sweep_raises_due_deadlines_once(cli: CliRunner) -> None:
    _enroll(cli, "P-1", start=ago(1))
    # Enrolled with a start 1 day ago: the first deadline (4 days + 1 grace) is in the future.
    assert "0 new alert(s)" in cli("sweep").out
    _enroll(cli, "P-2", start=ago(30))
    # Enrolment evaluates at once: the overdue of a back-dated start is raised right away.
    doc = json.loads(cli("patient", "show", "P-2", "--json").out)
    assert [f["rule"] for f in doc["open_findings"]] == ["lab.overdue"]
    assert "0 new alert(s)" in cli("sweep").out


def test_cli_alerts_are_queued_for_delivery_and_listed(cli: CliRunner) -> None:
    _enroll(cli)
    r = cli("lab", "add", "P-100", "alt=900", "--at", ago(1))
    code = r.out.split("ALERT ")[1].split()[0]
    shown = json.loads(cli("alerts", "show", code, "--json").out)
    assert shown["rule"] == "stop.transaminase" and shown["state"] == "open"
    assert [(d["recipient"], d["state"]) for d in shown["deliveries"]] == [("oncall", "pending")]
    assert shown["chain"] == ["oncall", "care_team", "coordinators"]
    listed = [json.loads(line) for line in cli("alerts", "list", "--json").out.splitlines()]
    assert code in [a["code"] for a in listed]
    assert cli("alerts", "ack", code, "--by", "Dr A").code == 0
    assert json.loads(cli("alerts", "show", code, "--json").out)["state"] == "acknowledged"
    assert code not in cli("alerts", "list", "--state", "open").out
    r = cli("alerts", "resolve", code, "--by", "Dr A", "--note", "stopped, LFTs in 1 week")
    assert r.code == 0
    doc = json.loads(cli("alerts", "show", code, "--json").out)
    assert doc["state"] == "resolved" and "LFTs in 1 week" in doc["note"]
    assert cli("alerts", "ack", "NOPE99", "--by", "x").code == 2


def test_silence_command(cli: CliRunner) -> None:
    _enroll(cli)
    until = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    r = cli("silence", "add", "P-100", "--reason", "inpatient", "--until", until, "--by", "C")
    assert r.code == 0 and "Silenced" in r.out
    r = cli("lab", "add", "P-100", "alt=40", "--at", ago(0.5))
    code = r.out.split("ALERT ")[1].split()[0]
    assert json.loads(cli("alerts", "show", code, "--json").out)["deliveries"] == []
    past = cli("silence", "add", "P-100", "--reason", "x", "--until", ago(1), "--by", "C")
    assert past.code == 2 and "until" in past.err
