"""The entry points: `parse` by format and `detect_format` for `monitor ingest`."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.sources import ParseError, detect_format, parse
from tests.sources.samples import sample_bytes

HL7 = (
    "MSH|^~\\&|LIMS|LAB|MON|WARD|20240301101500||ORU^R01|C1|P|2.5.1\rPID|1||M1^^^H\r"
    "OBR|1||O1|LFT|||20240301083000\rOBX|1|NM|1742-6^ALT^LN||58|U/L|7-56||||F\r"
)


@pytest.mark.parametrize(
    ("path", "text", "expected"),
    [
        ("x.txt", HL7, "hl7"),
        (None, "\ufeff\n" + HL7, "hl7"),
        ("a.dat", '{"resourceType":1}', "fhir"),
        ("a.txt", "patient_id,analyte\n", "csv"),
        ("b.hl7", "", "hl7"),
        ("b.json", "", "fhir"),
        ("b.CSV", "x", "csv"),
    ],
)
def test_detect_format(path: str | None, text: str, expected: str) -> None:
    assert detect_format(path, text) == expected


def test_detect_format_refuses_to_guess() -> None:
    with pytest.raises(ParseError, match="give --format"):
        detect_format("notes.txt", "hello")


def test_parse_each_format() -> None:
    (hl7_msg,) = parse(HL7.encode(), "hl7")
    assert hl7_msg.usable
    csv_text = "patient_id,analyte,value,unit,observed_at\nM1,ALT,58,U/L,2024-03-01\n"
    (csv_msg,) = parse(csv_text, "csv", source_name="f.csv")
    assert csv_msg.message_id == "f.csv:row 2"
    with pytest.raises(ParseError):
        parse("patient_id,analyte,value,unit,observed_at\nM1,ALT,x,U/L,2024-03-01\n", "csv")
    with pytest.raises(ParseError):
        parse(b"\xff\xfe", "csv")
    with pytest.raises(ParseError):
        parse("", "hl7")
    with pytest.raises(ValueError, match="unknown format"):
        parse("x", "xml")  # type: ignore[arg-type]


def test_latin1_hl7_is_read() -> None:
    text = HL7.replace("PID|1||M1^^^H", "PID|1||M1^^^H||MÜLLER^JÖRG")
    (msg,) = parse(text.encode("latin-1"), "hl7")
    assert msg.usable


def test_detect_format_on_every_sample(samples: Path) -> None:
    for kind in ("hl7", "fhir"):
        for path in (samples / kind).iterdir():
            text = sample_bytes(samples, path.name).decode("utf-8")
            assert detect_format(path, text) == kind
