"""FHIR R4 parsing: Observations and Bundles into one LabMessage per patient."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from fhir.resources.R4B.operationoutcome import OperationOutcome

from monitor.sources.fhir import operation_outcome, parse_fhir
from monitor.sources.model import ParseError, Problem

LOINC = "http://loinc.org"


def observation(
    code: str = "1742-6", value: Any = 58, unit: str | None = "U/L", **extra: Any
) -> dict[str, Any]:
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": f"obs-{code}",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2024-03-01T08:30:00+01:00",
    }
    if value is not None:
        quantity: dict[str, Any] = {"value": value}
        if unit is not None:
            quantity["unit"] = unit
        obs["valueQuantity"] = quantity
    obs.update(extra)
    return obs


def bundle(*resources: dict[str, Any], kind: str = "collection", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "id": "b1",
        "type": kind,
        "entry": [{"resource": r} for r in resources],
        **extra,
    }


PATIENT = {
    "resourceType": "Patient",
    "id": "p1",
    "identifier": [{"system": "https://nhs.uk/nhs-number", "value": "9434765919"}],
}


def test_single_observation_with_unit_only_quantity() -> None:
    (msg,) = parse_fhir(json.dumps(observation()))
    (alt,) = msg.observations
    assert (alt.analyte, alt.value, alt.unit, alt.uln) == ("alt", 58, "U/L", None)
    assert alt.observed_at == datetime(2024, 3, 1, 7, 30, tzinfo=UTC)
    assert alt.observed_at_source == "effectiveDateTime"
    assert msg.message_id == "Observation/obs-1742-6|Patient/p1"
    assert msg.patient.reference == "Patient/p1" and msg.usable


def test_quantity_code_is_preferred_and_unit_text_kept() -> None:
    obs = observation("1975-2", 1.2, None)
    obs["valueQuantity"].update(
        {"unit": "milligram per decilitre", "code": "mg/dL", "system": "http://unitsofmeasure.org"}
    )
    (msg,) = parse_fhir(obs)
    (bili,) = msg.observations
    assert bili.value == pytest.approx(20.52)
    assert bili.original_unit == "milligram per decilitre"


def test_reference_range_high_becomes_uln_in_canonical_units() -> None:
    obs = observation(
        "1975-2",
        0.6,
        "mg/dL",
        referenceRange=[
            {"low": {"value": 0.1, "unit": "mg/dL"}, "high": {"value": 1.2, "unit": "mg/dL"}}
        ],
    )
    (msg,) = parse_fhir(obs)
    assert msg.observations[0].uln == pytest.approx(20.52)
    assert msg.observations[0].reference_range == "0.1-1.2 mg/dL"


def test_disagreeing_reference_ranges_give_no_uln_and_a_note() -> None:
    obs = observation(
        referenceRange=[
            {"high": {"value": 45, "unit": "U/L"}},
            {"high": {"value": 35, "unit": "U/L"}},
        ]
    )
    (msg,) = parse_fhir(obs)
    assert msg.observations[0].uln is None
    assert msg.problems[0].effect == "note"


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("final", "final"),
        ("amended", "corrected"),
        ("corrected", "corrected"),
        ("preliminary", "preliminary"),
    ],
)
def test_statuses_taken(status: str, expected: str) -> None:
    (msg,) = parse_fhir(observation(status=status))
    assert msg.observations[0].status == expected


def test_entered_in_error_quarantines_and_registered_is_ignored_by_rule() -> None:
    (msg,) = parse_fhir(bundle(observation(status="entered-in-error"), observation("1920-8", 30)))
    assert not msg.usable and "entered-in-error" in (msg.quarantine_reason or "")
    (msg,) = parse_fhir(bundle(observation(status="registered"), observation("1920-8", 30)))
    assert msg.usable and msg.problems[0].effect == "ignored"


DRAWN = datetime(2024, 3, 1, 7, 30, tzinfo=UTC)


@pytest.mark.parametrize("status", ["registered", "cancelled"])
def test_a_result_the_lab_says_is_not_there_is_ignored_and_named(status: str) -> None:
    (msg,) = parse_fhir(bundle(observation(status=status), observation("1920-8", 30)))
    (problem,) = msg.problems
    assert (problem.effect, problem.label, problem.code) == ("ignored", "alt", f"{LOINC}|1742-6")
    assert problem.at == DRAWN
    assert [o.analyte for o in msg.observations] == ["ast"]


@pytest.mark.parametrize("status", ["unknown", "partial"])
def test_a_status_that_carries_no_result_to_take_is_held(status: str) -> None:
    (msg,) = parse_fhir(bundle(observation(status=status), observation("1920-8", 30)))
    assert [(p.effect, p.label) for p in msg.problems] == [("held", "alt")]


def test_a_held_value_names_its_analyte_code_and_draw_time() -> None:
    (msg,) = parse_fhir(bundle(observation("1975-2", 12, None), observation("1920-8", 30)))
    (problem,) = msg.held
    assert (problem.label, problem.code, problem.at) == ("bilirubin", f"{LOINC}|1975-2", DRAWN)


def _local(code: str, display: str) -> dict[str, Any]:
    obs = observation()
    obs["id"] = f"local-{code}"
    obs["code"] = {"coding": [{"system": "urn:lab:local", "code": code, "display": display}]}
    return obs


def test_an_unmapped_liver_code_is_held_under_the_senders_code() -> None:
    local = _local("XAST", "AST local")
    (msg,) = parse_fhir(bundle(local, observation("1920-8", 30)))
    (problem,) = msg.held
    assert (problem.label, problem.code, problem.at) == ("AST local", "urn:lab:local|XAST", DRAWN)


def test_an_invalid_liver_observation_is_held_under_its_code() -> None:
    broken = observation("1975-2", 12, "umol/L", status="not-a-status")
    (msg,) = parse_fhir(bundle(broken, observation("1920-8", 30)))
    (problem,) = msg.held
    assert (problem.label, problem.code, problem.at) == ("bilirubin", f"{LOINC}|1975-2", DRAWN)


@pytest.mark.parametrize(
    ("display", "held"),
    [
        ("Alanine aminotransferase", True),
        ("Gamma GT", True),
        ("Total bilirubin", True),
        ("Transaminase", True),
        ("Sodium", False),
        ("Haemoglobin", False),
        ("Direct bilirubin", False),
    ],
)
def test_unmapped_codes_are_held_only_when_they_read_as_a_liver_test(
    display: str, held: bool
) -> None:
    local = _local("Z1", display)
    (msg,) = parse_fhir(bundle(local, observation("1920-8", 30)))
    assert [p.effect for p in msg.problems] == (["held"] if held else [])
    assert [o.analyte for o in msg.observations] == ["ast"]


def test_missing_unit_and_unknown_unit_are_dropped() -> None:
    (msg,) = parse_fhir(
        bundle(
            observation(unit=None),
            observation("1920-8", 30, "mmol/L"),
            observation("6768-6", 90, "U/L"),
        )
    )
    assert [o.analyte for o in msg.observations] == ["alp"]
    assert [p.reason for p in msg.problems] == [
        "ALT value 58 has no unit; a unit is never guessed",
        "unknown unit 'mmol/L' for AST",
    ]


def test_value_that_is_not_a_quantity() -> None:
    obs = observation(value=None, valueString="haemolysed")
    (msg,) = parse_fhir(obs)
    assert msg.problems[0].reason == "ALT value 'haemolysed' is not a number"
    obs = observation(value=None, dataAbsentReason={"text": "sample haemolysed"})
    (msg,) = parse_fhir(obs)
    assert msg.problems[0].reason == "ALT has no value (data absent: sample haemolysed)"


def test_component_with_the_parents_code_carries_the_value() -> None:
    obs = observation(
        value=None,
        component=[
            {
                "code": {"coding": [{"system": "urn:oid:2.16.840.1.113883.6.1", "code": "1742-6"}]},
                "valueQuantity": {"value": 35.7, "unit": "U/L"},
            }
        ],
    )
    (msg,) = parse_fhir(obs)
    assert [(o.analyte, o.value) for o in msg.observations] == [("alt", 35.7)]


def test_unmapped_liver_looking_code_is_reported() -> None:
    obs = observation(code="9999-9")
    obs["code"]["coding"][0]["display"] = "Alanine aminotransferase by other method"
    (msg,) = parse_fhir(bundle(obs, observation("1920-8", 30)))
    (problem,) = msg.problems
    assert "looks like a liver test but is not mapped" in problem.reason
    assert problem.effect == "held"


def test_patient_in_the_bundle_gives_identifiers_urn_uuid_too() -> None:
    patient = dict(PATIENT)
    obs = observation(subject={"reference": "urn:uuid:abc"})
    doc = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:abc", "resource": patient, "request": {"method": "POST"}},
            {"fullUrl": "urn:uuid:o1", "resource": obs, "request": {"method": "POST"}},
        ],
    }
    (msg,) = parse_fhir(doc)
    assert [(i.system, i.value) for i in msg.patient.identifiers] == [
        ("https://nhs.uk/nhs-number", "9434765919")
    ]
    assert msg.patient.reference == "urn:uuid:abc"
    assert msg.message_id.startswith("sha256:") and msg.message_id.endswith("|Patient/p1")


def test_subject_by_identifier_only() -> None:
    obs = observation(subject={"identifier": {"system": "urn:mrn", "value": "42"}})
    (msg,) = parse_fhir(obs)
    assert [(i.system, i.value) for i in msg.patient.identifiers] == [("urn:mrn", "42")]
    assert msg.usable


def test_one_message_per_subject_in_nested_bundles() -> None:
    other = observation("1920-8", 30, subject={"reference": "Patient/p2"})
    inner = bundle(observation(), kind="collection")
    outer = bundle(inner, bundle(other, kind="document"), kind="batch")
    messages = parse_fhir(outer)
    assert [m.patient.reference for m in messages] == ["Patient/p1", "Patient/p2"]
    assert messages[0].observations[0].source_ref == "entry 1 > entry 1 (Observation/obs-1742-6)"


def test_one_bad_resource_does_not_drop_the_rest() -> None:
    bad = observation("1920-8", value="abc")
    broken_sodium = observation("2951-2", value="oops", unit="mmol/L")
    (msg,) = parse_fhir(bundle(observation(), bad, broken_sodium))
    assert [o.analyte for o in msg.observations] == ["alt"]
    (problem,) = msg.problems  # the sodium is not a liver test: not reported
    assert problem.effect == "held"
    assert "not valid FHIR R4" in problem.reason and "valueQuantity.value 'abc'" in problem.reason


def test_no_subject_or_non_patient_subject_quarantines() -> None:
    obs = observation()
    del obs["subject"]
    (msg,) = parse_fhir(obs)
    assert not msg.usable and "without a subject" in (msg.quarantine_reason or "")
    (msg,) = parse_fhir(observation(subject={"reference": "Group/g1"}))
    assert not msg.usable and "is a Group, not a Patient" in (msg.quarantine_reason or "")


def test_invalid_patient_resource_quarantines_without_showing_its_content() -> None:
    patient = {"resourceType": "Patient", "id": "p1", "name": [{"given": "SECRETNAME"}]}
    (msg,) = parse_fhir(bundle(patient, observation()))
    assert not msg.usable
    assert "Patient resource is not valid FHIR" in (msg.quarantine_reason or "")
    assert "SECRETNAME" not in (msg.quarantine_reason or "")


def test_same_resource_twice_taken_once_different_content_quarantined() -> None:
    obs = observation()
    (msg,) = parse_fhir(bundle(obs, bundle(copy.deepcopy(obs), kind="document")))
    assert len(msg.observations) == 1 and msg.usable
    assert msg.problems[0].effect == "note"
    changed = observation(value=99)
    (msg,) = parse_fhir(bundle(obs, changed))
    assert not msg.usable and "different content" in (msg.quarantine_reason or "")


def test_time_falls_back_to_report_then_issued() -> None:
    obs = observation()
    del obs["effectiveDateTime"]
    report = {
        "resourceType": "DiagnosticReport",
        "id": "r1",
        "status": "final",
        "code": {"text": "LFT"},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2024-02-01T09:00:00Z",
        "result": [{"reference": "Observation/obs-1742-6"}],
    }
    (msg,) = parse_fhir(bundle(report, obs))
    assert msg.observations[0].observed_at_source == "DiagnosticReport effective"
    issued = dict(obs, issued="2024-02-02T10:00:00Z")
    (msg,) = parse_fhir(issued)
    assert msg.observations[0].observed_at_source == "issued"
    (msg,) = parse_fhir(obs)
    assert "has no time" in msg.problems[0].reason
    partial = dict(obs, effectiveDateTime="2024-02")
    (msg,) = parse_fhir(partial)
    assert msg.problems[0].reason == "ALT effectiveDateTime 2024-02 is not a full date"


def test_payloads_that_are_not_readable_raise() -> None:
    with pytest.raises(ParseError, match="not JSON"):
        parse_fhir(b"{not json")
    with pytest.raises(ParseError, match="not a FHIR Bundle or Observation"):
        parse_fhir(json.dumps(PATIENT))
    with pytest.raises(ParseError, match="no Observation"):
        parse_fhir(bundle(PATIENT))
    with pytest.raises(ParseError, match="history"):
        parse_fhir(bundle(observation(), kind="history"))


def test_operation_outcome_is_valid_r4() -> None:
    outcome = operation_outcome(
        [
            Problem("entry 3 (Observation/o1)", "unknown unit 'mmol/L' for ALT", "held"),
            Problem("subject", "Observations without a subject cannot be taken in"),
        ]
    )
    model = OperationOutcome.model_validate(outcome)
    assert [i.severity for i in model.issue] == ["warning", "error"]
    assert model.issue[0].details is not None
    assert model.issue[0].details.text == "entry 3 (Observation/o1): unknown unit 'mmol/L' for ALT"
    empty = OperationOutcome.model_validate(operation_outcome([]))
    assert empty.issue[0].severity == "information"
