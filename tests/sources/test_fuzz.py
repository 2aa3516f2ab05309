"""Whatever arrives, the parsers answer with LabMessages or a ParseError, never a crash.

Random bytes, random HL7-looking text, samples with bytes cut, added or swapped,
and FHIR resources with random JSON in random places. Every answer must also be
coherent: values finite and canonical, times aware UTC, `usable` consistent.
"""

from __future__ import annotations

import json
import math
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.core.units import ANALYTES, CANONICAL_UNIT
from monitor.sources import LabMessage, ParseError, parse
from monitor.sources.fhir import parse_fhir
from monitor.sources.hl7v2 import build_ack
from monitor.sources.mllp import MLLPDecoder
from tests.sources.samples import SAMPLES

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
HL7_FILES = sorted((SAMPLES / "hl7").glob("*.hl7")) if (SAMPLES / "hl7").is_dir() else []
SMALL_FHIR = sorted((SAMPLES / "fhir").glob("0[134]*.json")) if (SAMPLES / "fhir").is_dir() else []
HL7_ALPHABET = "MSHPIDOBRX|^~\\&\r\n0123456789.-+<>= ALTNMSNCEFWU/Lumol"


def check(messages: list[LabMessage]) -> None:
    for message in messages:
        assert isinstance(message.message_id, str)
        for obs in message.observations:
            assert obs.analyte in ANALYTES
            assert obs.unit == CANONICAL_UNIT[obs.analyte]
            assert math.isfinite(obs.value) and obs.value >= 0
            assert obs.uln is None or (math.isfinite(obs.uln) and obs.uln > 0)
            assert obs.observed_at.tzinfo is UTC
        for problem in message.problems:
            assert problem.reason and problem.effect in ("quarantine", "held", "note")
        assert message.usable == (
            not message.quarantine_problems and bool(message.observations or message.held)
        )
        assert (message.quarantine_reason is None) == message.usable


def parse_or_refuse(payload: bytes | str, fmt: str) -> None:
    try:
        messages = parse(payload, fmt)  # type: ignore[arg-type]
    except ParseError as exc:
        assert exc.reason
        return
    check(messages)


@FUZZ
@given(st.binary(max_size=2000), st.sampled_from(["hl7", "fhir", "csv"]))
def test_random_bytes(payload: bytes, fmt: str) -> None:
    parse_or_refuse(payload, fmt)


@FUZZ
@given(st.text(alphabet=HL7_ALPHABET, max_size=600))
def test_random_hl7_looking_text(body: str) -> None:
    parse_or_refuse("MSH|^~\\&|" + body, "hl7")
    parse_or_refuse("MSH|^~\\&|A|B|C|D|2024||ORU^R01|X|P|2.5.1\rPID|1||1\rOBX|" + body, "hl7")


@FUZZ
@given(st.data())
def test_mutated_hl7_samples(data: st.DataObject) -> None:
    if not HL7_FILES:
        return
    original = data.draw(st.sampled_from(HL7_FILES)).read_bytes()
    mutated = bytearray(original)
    for _ in range(data.draw(st.integers(1, 6))):
        pos = data.draw(st.integers(0, max(len(mutated) - 1, 0)))
        action = data.draw(st.sampled_from(["cut", "insert", "swap"]))
        if action == "cut":
            del mutated[pos : pos + data.draw(st.integers(1, 40))]
        elif action == "insert":
            mutated[pos:pos] = data.draw(
                st.sampled_from(
                    [b"|", b"^", b"~", b"&", b"\\", b"\r", b"\n", b"\x0b", b"\x1c", b"=", b"<"]
                )
                | st.binary(max_size=8)
            )
        elif mutated:
            mutated[pos] = data.draw(st.sampled_from(b"|^~&\\\r0.-= \xff"))
    parse_or_refuse(bytes(mutated), "hl7")
    build_ack(bytes(mutated).decode("latin-1"), "AE", "fuzz")


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _paths(value, (*prefix, i))
    return out


SYNTHETIC_BUNDLE: dict[str, Any] = {
    "resourceType": "Bundle",
    "id": "b",
    "type": "transaction",
    "entry": [
        {
            "fullUrl": "urn:uuid:p",
            "request": {"method": "PUT", "url": "Patient/p"},
            "resource": {
                "resourceType": "Patient",
                "id": "p",
                "identifier": [{"system": "urn:mrn", "value": "1"}],
            },
        },
        {
            "resource": {
                "resourceType": "DiagnosticReport",
                "id": "r",
                "status": "final",
                "code": {"text": "LFT"},
                "subject": {"reference": "urn:uuid:p"},
                "effectiveDateTime": "2024-01-01",
                "result": [{"reference": "Observation/a"}],
            }
        },
        {
            "resource": {
                "resourceType": "Observation",
                "id": "panel",
                "status": "final",
                "code": {"text": "panel"},
                "effectivePeriod": {"start": "2024-01-01"},
                "hasMember": [{"reference": "Observation/c"}],
            }
        },
        {
            "resource": {
                "resourceType": "Observation",
                "id": "a",
                "status": "amended",
                "code": {"coding": [{"system": "LN", "code": "1742-6", "display": "ALT"}]},
                "subject": {"reference": "Patient/p"},
                "valueQuantity": {"value": 12.5, "unit": "U/L", "comparator": "<"},
                "interpretation": [{"coding": [{"code": "H"}]}],
                "referenceRange": [
                    {
                        "high": {"value": 1.2, "unit": "mg/dL"},
                        "type": {"coding": [{"code": "normal"}]},
                    }
                ],
            }
        },
        {
            "resource": {
                "resourceType": "Observation",
                "id": "c",
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "1975-2"}]},
                "subject": {"reference": "Patient/p"},
                "component": [
                    {
                        "code": {"coding": [{"system": "http://loinc.org", "code": "1975-2"}]},
                        "valueQuantity": {"value": 0.5, "unit": "mg/dL"},
                    },
                    {"code": {"text": "GGT"}, "valueString": "12"},
                ],
            }
        },
    ],
}


@FUZZ
@given(st.data())
def test_fhir_with_random_json_in_random_places(data: st.DataObject) -> None:
    sources = [json.dumps(SYNTHETIC_BUNDLE).encode()] + [p.read_bytes() for p in SMALL_FHIR]
    doc = json.loads(data.draw(st.sampled_from(sources)))
    for _ in range(data.draw(st.integers(1, 4))):
        path = data.draw(st.sampled_from(_paths(doc)))
        if not path:
            continue
        parent: Any = doc
        for step in path[:-1]:
            parent = parent[step]
        parent[path[-1]] = data.draw(JSON)
    try:
        check(parse_fhir(json.dumps(doc)))
    except ParseError as exc:
        assert exc.reason


@FUZZ
@given(JSON)
def test_random_json(value: Any) -> None:
    parse_or_refuse(json.dumps(value), "fhir")
    if isinstance(value, dict):
        parse_or_refuse(
            json.dumps(
                {
                    **value,
                    "resourceType": "Bundle",
                    "type": "collection",
                    "entry": [{"resource": {**value, "resourceType": "Observation"}}],
                }
            ),
            "fhir",
        )


@FUZZ
@given(
    st.lists(
        st.lists(
            st.text(alphabet='ALTU/Lmg.0123456789-:TZ<>abc ,"', max_size=12), min_size=0, max_size=8
        ),
        max_size=6,
    )
)
def test_random_csv(rows: list[list[str]]) -> None:
    header = "patient_id,analyte,value,unit,observed_at,reference_range,uln,status"
    text = "\n".join([header] + [",".join(r) for r in rows])
    parse_or_refuse(text, "csv")


@FUZZ
@given(st.lists(st.binary(max_size=300), max_size=20))
def test_mllp_decoder_never_breaks(chunks: list[bytes]) -> None:
    decoder = MLLPDecoder(max_message_bytes=1000)
    for chunk in chunks:
        for message in decoder.feed(chunk):
            assert b"\x0b" not in message and b"\x1c" not in message
        assert decoder.pending <= 1000 + 300


def test_fuzz_targets_exist() -> None:
    """Say so when the samples are missing, instead of fuzzing nothing in silence."""
    if not HL7_FILES or not SMALL_FHIR:
        pytest.skip(f"sample messages not found at {SAMPLES}: sample mutation not fuzzed")
    assert Path(HL7_FILES[0]).is_file()
