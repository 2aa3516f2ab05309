"""Parse-time bounds (issue 8, point 5): a pathological message is refused before a
parser spends on it, with a reason a person can act on, and the rest of a batch is read.
Also: the `hl7` library logs no message content (point 9)."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pytest

from monitor.sources import DEFAULT_LIMITS, ParseError, ParseLimits, parse
from monitor.sources.fhir import parse_fhir
from monitor.sources.hl7v2 import parse_batch, parse_message

MSH = "MSH|^~\\&|LIMS|LAB|MON|WARD|20240301101500||ORU^R01|{id}|P|2.5.1"
PID = "PID|1||MRN123^^^HOSP^MR||DOE^JANE"
OBR = "OBR|1||ORD1|LFT^Liver function^L|||20240301083000"
ALT = "OBX|1|NM|1742-6^ALT^LN||58|U/L|7-56|H|||F|||20240301084500"


def oru(*extra: str, msg_id: str = "C1") -> str:
    return "\r".join([MSH.format(id=msg_id), PID, OBR, ALT, *extra]) + "\r"


def test_the_defaults_are_those_a_hospital_would_pick() -> None:
    assert ParseLimits() == DEFAULT_LIMITS
    assert (
        DEFAULT_LIMITS.max_bytes,
        DEFAULT_LIMITS.max_segments,
        DEFAULT_LIMITS.max_separators_per_segment,
        DEFAULT_LIMITS.max_separators_per_message,
    ) == (4 * 1024 * 1024, 2_000, 10_000, 50_000)
    assert DEFAULT_LIMITS.fhir_max_bytes == 10 * 1024 * 1024
    assert DEFAULT_LIMITS.fhir_max_depth == 64


def test_a_field_of_a_million_repeat_separators_is_refused_in_well_under_a_second() -> None:
    text = oru("NTE|1||" + "~" * 1_000_000)
    started = time.perf_counter()
    (msg,) = parse(text, "hl7")
    elapsed = time.perf_counter() - started
    assert elapsed < 1.0, elapsed  # the hl7 library takes seconds and gigabytes on it
    assert not msg.usable and not msg.observations
    assert msg.quarantine_reason == (
        "message 1: segment 5 (NTE) has 1,000,000 repeat separators; the limit is 10,000"
    )


def test_a_message_within_the_bounds_is_read() -> None:
    msg = parse_message(oru("NTE|1||" + "~" * 9_000))
    assert msg.usable and [o.analyte for o in msg.observations] == ["alt"]


def test_too_many_segments_too_many_separators_too_many_bytes() -> None:
    many = oru(*["NTE|1||note"] * 2_000)
    with pytest.raises(ParseError, match="the message has 2,004 segments; the limit is 2,000"):
        parse_message(many)
    spread = oru(*["NTE|1||" + "^" * 9_000] * 6)
    with pytest.raises(ParseError, match=r"54,0\d\d separators; the limit is 50,000"):
        parse_message(spread)
    big = oru("NTE|1||" + "x" * (4 * 1024 * 1024))
    with pytest.raises(ParseError, match=r"bytes; the limit is 4,194,304"):
        parse_message(big)
    wide = oru("NTE|1||" + "é" * 2_100_000)  # 2 bytes each in UTF-8
    with pytest.raises(ParseError, match="bytes; the limit is 4,194,304"):
        parse_message(wide)


def test_one_message_over_a_bound_is_quarantined_alone_in_its_batch() -> None:
    batch = oru(msg_id="OK1") + oru("NTE|1||" + "&" * 20_000, msg_id="BAD") + oru(msg_id="OK2")
    first, second, third = parse_batch(batch)
    assert first.usable and third.usable
    assert not second.usable
    assert "20,000 subcomponent separators" in (second.quarantine_reason or "")
    assert second.raw is not None  # kept for the person who looks at it


def test_the_limits_are_the_callers() -> None:
    tight = ParseLimits(max_segments=4)
    (msg,) = parse(oru("NTE|1||note"), "hl7", limits=tight)
    assert "the limit is 4" in (msg.quarantine_reason or "")
    (fine,) = parse(oru(), "hl7", limits=tight)
    assert fine.usable


def test_limits_must_be_positive_whole_numbers() -> None:
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match=r"ingest\.max_segments"):
            ParseLimits(max_segments=bad)  # type: ignore[arg-type]


def test_limits_from_the_config_table() -> None:
    limits = ParseLimits.from_config({"ingest": {"max_segments": 500, "fhir_max_depth": 20}})
    assert (limits.max_segments, limits.fhir_max_depth) == (500, 20)
    assert limits.max_bytes == DEFAULT_LIMITS.max_bytes
    assert ParseLimits.from_config({}) == DEFAULT_LIMITS


# --- FHIR -------------------------------------------------------------------------


def observation() -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "1742-6"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2024-03-01T08:30:00Z",
        "valueQuantity": {"value": 58, "unit": "U/L"},
    }


def test_a_fhir_payload_over_the_size_bound_is_refused_before_it_is_read() -> None:
    obs = observation()
    obs["note"] = [{"text": "x" * 2_000}]
    payload = json.dumps(obs)
    with pytest.raises(ParseError, match=r"the FHIR payload is 2,\d+ bytes; the limit is 1,000"):
        parse_fhir(payload, limits=ParseLimits(fhir_max_bytes=1_000))
    assert parse_fhir(payload)[0].usable


def test_fhir_json_nested_past_the_bound_is_refused() -> None:
    obs = observation()
    deep: dict[str, Any] = {"url": "http://example.org/x"}
    for _ in range(100):
        deep = {"url": "http://example.org/x", "extension": [deep]}
    obs["extension"] = [deep]
    with pytest.raises(ParseError, match="nested more than 64 deep"):
        parse_fhir(json.dumps(obs))
    with pytest.raises(ParseError, match="nested more than 64 deep"):
        parse_fhir(obs)  # a payload already read (the poller) is bounded too
    with pytest.raises(ParseError, match="nested more than 3 deep"):
        parse(json.dumps(observation()), "fhir", limits=ParseLimits(fhir_max_depth=3))


def test_json_nested_beyond_the_interpreter_is_refused_not_crashed() -> None:
    with pytest.raises(ParseError):
        parse_fhir("[" * 200_000 + "]" * 200_000)


# --- logs -------------------------------------------------------------------------


def test_parsing_logs_no_field_content(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    """The hl7 library logs a whole field when it meets an escape it does not know
    (here in the OBX-3 text and the patient's name); none of it may reach a log."""
    caplog.set_level(logging.DEBUG)
    text = (
        "\r".join(
            [
                MSH.format(id="LOG1"),
                "PID|1||MRN123^^^HOSP^MR||SECRETNAME \\C2842\\ DOE^JANE",
                OBR,
                "OBX|1|NM|1742-6^ALT SECRETTEXT \\C2842\\^LN||58|U/L|7-56||||F",
                "OBX|2|NM|1920-8^AST \\Zbad\\ SECRETTEXT^LN||40|U/L|||||F",
            ]
        )
        + "\r"
    )
    (msg,) = parse(text, "hl7")
    assert msg.usable
    logged = caplog.text + capfd.readouterr().err
    assert "SECRET" not in logged
    assert "MRN123" not in logged
    assert all("hl7" not in r.name for r in caplog.records)


def test_the_ingest_table_is_strict_and_feeds_the_limits() -> None:
    from dataclasses import asdict

    from pydantic import ValidationError

    from monitor.config_schema import ConfigFile, IngestTable

    assert IngestTable().model_dump() == asdict(DEFAULT_LIMITS)  # one set of defaults
    raw: dict[str, Any] = {
        "protocols": {"default": "seed"},
        "ingest": {"max_segments": 500, "max_separators_per_segment": 2_000},
    }
    ConfigFile.model_validate(raw)
    limits = ParseLimits.from_config(raw)
    assert (limits.max_segments, limits.max_separators_per_segment) == (500, 2_000)
    for bad in ({"max_segment": 5}, {"max_segments": 0}, {"max_segments": "5"}):
        with pytest.raises(ValidationError):
            ConfigFile.model_validate({**raw, "ingest": bad})


def test_the_ingest_path_passes_the_limits_on() -> None:
    from monitor.services.payloads import parse_payload

    tight = ParseLimits(max_segments=4, fhir_max_bytes=100)
    hl7 = parse_payload(oru("NTE|1||note"), "hl7", limits=tight)
    assert [m.usable for m in hl7.messages] == [False]
    assert parse_payload(oru("NTE|1||note"), "hl7").messages[0].usable
    fhir = parse_payload(json.dumps(observation()), "fhir", limits=tight)
    assert fhir.error is not None and "the limit is 100" in fhir.error.reason
