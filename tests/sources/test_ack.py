"""ACKs: MSA with the code and the message's control ID, ERR with the reason on AE/AR."""

from __future__ import annotations

from datetime import UTC, datetime

import hl7
import pytest

from monitor.sources.hl7v2 import build_ack

NOW = datetime(2024, 3, 1, 10, 0, 0, tzinfo=UTC)
V251 = "MSH|^~\\&|LIMS|LAB|MON|WARD|20240301101500||ORU^R01^ORU_R01|CTRL1|P|2.5.1\rPID|1||MRN1\r"
V23 = "MSH|^~\\&|WinPath|UCH|EPIC|UCH|20200422042645||ORU^R01|0422|P|2.3\rPID|1||X\r"


def segments(ack: str) -> dict[str, list[str]]:
    assert ack.endswith("\r")
    return {line[:3]: line.split("|") for line in ack.rstrip("\r").split("\r")}


def test_aa_swaps_sender_and_receiver_and_echoes_control_id_and_version() -> None:
    ack = build_ack(V251, "AA", now=NOW, control_id="ACK1")
    seg = segments(ack)
    assert set(seg) == {"MSH", "MSA"}
    assert seg["MSH"][2:6] == ["MON", "WARD", "LIMS", "LAB"]
    assert seg["MSH"][6] == "20240301100000"
    assert seg["MSH"][8:12] == ["ACK^R01^ACK", "ACK1", "P", "2.5.1"]
    assert seg["MSA"] == ["MSA", "AA", "CTRL1"]
    parsed = hl7.parse(ack)
    assert str(parsed.segment("MSA")[2]) == "CTRL1"


@pytest.mark.parametrize("code", ["AE", "AR"])
def test_ae_ar_carry_err_with_the_reason_v251(code: str) -> None:
    ack = build_ack(V251, code, "unknown unit 'mmol/L' for ALT|x^y", now=NOW)  # type: ignore[arg-type]
    seg = segments(ack)
    assert seg["MSA"] == ["MSA", code, "CTRL1"]
    err = seg["ERR"]
    assert err[3] == "207^Application internal error^HL70357"
    assert err[4] == "E"
    assert err[8] == "unknown unit 'mmol/L' for ALT\\F\\x\\S\\y"
    assert hl7.parse(ack).unescape(err[8]) == "unknown unit 'mmol/L' for ALT|x^y"


def test_v23_ack_uses_msa3_and_err1() -> None:
    ack = build_ack(V23, "AR", "message type not supported", hl7_error_code="200", now=NOW)
    seg = segments(ack)
    assert seg["MSH"][8] == "ACK^R01"  # no message structure component before 2.3.1
    assert seg["MSH"][11] == "2.3"
    assert seg["MSA"] == ["MSA", "AR", "0422", "message type not supported"]
    assert seg["ERR"] == ["ERR", "^^^200&Unsupported message type&HL70357"]


def test_ack_for_text_that_is_not_hl7_still_answers() -> None:
    ack = build_ack("garbage \x00 not hl7", "AR", "not an HL7 message", now=NOW)
    seg = segments(ack)
    assert seg["MSA"][:3] == ["MSA", "AR", ""]
    assert seg["MSH"][11] == "2.5.1"


def test_ack_default_control_ids_are_unique() -> None:
    first = segments(build_ack(V251, "AA"))["MSH"][9]
    second = segments(build_ack(V251, "AA"))["MSH"][9]
    assert first != second and len(first) <= 20


@pytest.mark.parametrize("version", ["2.²", "²", "2.5.1x", "", "v2", "2.5.1^ISO&x"])
@pytest.mark.parametrize("code", ["AA", "AE", "AR"])
def test_any_msh12_still_gets_an_ack(version: str, code: str) -> None:
    """A stored message is always answered: an MSH-12 the builder cannot read (a
    superscript digit passes str.isdigit but not int()) must not stop the ACK."""
    message = V251.replace("|P|2.5.1\r", f"|P|{version}\r")
    ack = build_ack(message, code, None if code == "AA" else "held", now=NOW)  # type: ignore[arg-type]
    seg = segments(ack)
    assert seg["MSA"][:3] == ["MSA", code, "CTRL1"]
    assert ("ERR" in seg) == (code != "AA")
