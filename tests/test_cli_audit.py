"""Every state-changing CLI command leaves an audit row naming the OS user; `--by` is
kept beside it as a claim (issue 11, item 9)."""

from __future__ import annotations

import getpass
import json
from datetime import UTC, datetime, timedelta

from tests.conftest import CliRunner


def ago(days: float) -> str:
    return (datetime.now(UTC) - timedelta(days=days)).isoformat()


def audit_rows(cli: CliRunner) -> list[dict[str, object]]:
    return [json.loads(line) for line in cli("audit", "--json").out.splitlines()][::-1]


def test_a_cli_ack_and_the_other_actions_leave_audit_rows(cli: CliRunner) -> None:
    r = cli(
        "enroll",
        "P-7",
        "--weight",
        "62",
        "--baseline",
        "alt=22",
        "--baseline",
        "ast=20",
        "--tpmt",
        "normal",
        "--start",
        ago(3),
    )
    assert r.code == 0, r.err
    r = cli("lab", "add", "P-7", "alt=900", "ast=30", "--at", ago(1), "--by", "nurse Kim")
    code = r.out.split("ALERT ")[1].split()[0]
    assert cli("alerts", "ack", code, "--by", "Dr A (by phone)").code == 0
    assert cli("alerts", "note", code, "--by", "Dr A", "called the patient").code == 0
    assert cli("stop", "P-7", "--reason", "ALT 900").code == 0
    rows = audit_rows(cli)
    assert [r["action"] for r in rows] == [
        "patient.enroll",
        "event.lab",
        "alert.acknowledge",
        "alert.note",
        "event.stop",
    ]
    me = f"os:{getpass.getuser()}"
    assert all(r["actor"] == me and r["via"] == "cli" for r in rows)
    ack = rows[2]
    assert ack["alert"] == code
    assert ack["detail"]["claimed_by"] == "Dr A (by phone)"  # type: ignore[index]
    assert rows[1]["patient"] == "P-7" and rows[1]["detail"]["claimed_by"] == "nurse Kim"  # type: ignore[index]
    assert "claimed_by" not in rows[4]["detail"]  # type: ignore[operator]


def test_a_refused_action_leaves_no_audit_row(cli: CliRunner) -> None:
    assert cli("alerts", "ack", "NOPE99", "--by", "x").code == 2
    assert audit_rows(cli) == []
