"""`monitor patient sms-consent`: the number is checked at the edge, every change is
audited, and the audit row does not carry the whole number."""

from __future__ import annotations

import json

from tests.conftest import CliRunner
from tests.test_cli import _enroll


def _audit(cli: CliRunner) -> list[dict[str, object]]:
    return [json.loads(line) for line in cli("audit", "--json").out.splitlines()][::-1]


def test_consent_then_withdraw_is_audited(cli: CliRunner) -> None:
    _enroll(cli, "P-001")
    r = cli(
        "patient", "sms-consent", "P-001", "--mobile", "+44 7700 900123",
        "--language", "en", "--by", "Nurse Jones",
    )  # fmt: skip
    assert r.code == 0, r.err
    r = cli("patient", "sms-consent", "P-001", "--withdraw", "--by", "Nurse Jones")
    assert r.code == 0, r.err and "withdrawn" in r.out
    rows = [a for a in _audit(cli) if str(a["action"]).startswith("patient.sms")]
    assert [a["action"] for a in rows] == ["patient.sms_consent", "patient.sms_withdrawn"]
    assert all(a["patient"] == "P-001" for a in rows)
    assert "+447700900123" not in json.dumps(rows)
    assert "0123" in json.dumps(rows[0])


def test_a_bad_number_is_refused_with_one_line_and_no_audit(cli: CliRunner) -> None:
    _enroll(cli, "P-001")
    r = cli("patient", "sms-consent", "P-001", "--mobile", "07700 900123", "--by", "N")
    assert r.code == 2 and "E.164" in r.err
    r = cli("patient", "sms-consent", "P-404", "--mobile", "+447700900123", "--by", "N")
    assert r.code == 2 and "no patient" in r.err
    r = cli(
        "patient",
        "sms-consent",
        "P-001",
        "--mobile",
        "+447700900123",
        "--language",
        "xx",
        "--by",
        "N",
    )
    assert r.code == 2 and "language" in r.err
    assert not [a for a in _audit(cli) if str(a["action"]).startswith("patient.sms")]


def test_one_number_one_patient(cli: CliRunner) -> None:
    _enroll(cli, "P-001")
    _enroll(cli, "P-002")
    assert (
        cli("patient", "sms-consent", "P-001", "--mobile", "+447700900123", "--by", "N").code == 0
    )
    r = cli("patient", "sms-consent", "P-002", "--mobile", "+447700900123", "--by", "N")
    assert r.code == 2 and "another patient" in r.err
