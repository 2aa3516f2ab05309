"""Every public sample message is taken in with the right values, or held with a reason.

`SAMPLE_OUTCOMES` is the table the README lists: one row per file in
shared/samples, what happens to it and why. A new sample file fails
`test_every_sample_has_an_expected_outcome` until it gets a row here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import pytest

from monitor.sources import LabMessage, parse
from monitor.sources.model import Observation
from tests.sources.samples import sample_bytes


@dataclass(frozen=True)
class Outcome:
    file: str
    outcome: Literal["taken in", "values held", "quarantined"]
    messages: int
    why: str


SAMPLE_OUTCOMES: tuple[Outcome, ...] = (
    Outcome(
        "01-labcorp-style-cmp-4-obr-v23.hl7",
        "taken in",
        1,
        "ALT, AST, ALP (IU/L) and bilirubin (0.3 mg/dL -> 5.13 umol/L) by LOINC from the "
        "2nd of 4 OBR; ULN from each range; date-only OBX-14. Note: MSH-11 T (test).",
    ),
    Outcome(
        "02-winpath-liver-bone-partial-dup-obx-v23.hl7",
        "taken in",
        1,
        "Bilirubin and ALP by WinPath local codes; time from OBR-7. ALP sent twice: the "
        "last is kept and reported.",
    ),
    Outcome(
        "03-winpath-liver-bone-final-alt-high-v23.hl7",
        "taken in",
        1,
        "ALT 58 IU/L (ULN 50, flag H), bilirubin 5 umol/L, ALP 110 IU/L (the last of "
        "108/110, reported).",
    ),
    Outcome(
        "04-tdl-corepoint-bone-iron-2-obr-v23.hl7",
        "taken in",
        1,
        "ALP 104 IU/L (ULN 104) from the first of 2 OBR; iron, albumin and ratios ignored.",
    ),
    Outcome(
        "05-cdc-hepb-case-notification-sn-values-v251.hl7",
        "taken in",
        1,
        "ALT ^200 U/L with its ULN 100 and test date from the OBX-4 sub-ID group "
        "(INV827/INV826); AST ^100 U/L timed by OBR-7. ~100 non-lab OBX ignored.",
    ),
    Outcome(
        "06-mdss-hepa-notification-sn-equals-v251.hl7",
        "values held",
        1,
        "No liver value can be judged: ALT ^1 has no unit (never guessed) and AST is '=' "
        "with no number; each waits in quarantine, the patient's draw marked as waiting.",
    ),
    Outcome(
        "07-mindray-bs200-analyzer-chem-v231.hl7",
        "taken in",
        1,
        "ALT 32 and AST 28 U/L by analyzer codes in OBX-3 component 4 (MSH-3 MINDRAY "
        "BS-200); time from OBR-8; no ULN sent.",
    ),
    Outcome(
        "08-mindray-bs360e-analyzer-chem-v231.hl7",
        "taken in",
        1,
        "ALT 25 and AST 22 U/L by analyzer codes (MSH-3 MINDRAY, model in MSH-4); time from OBR-8.",
    ),
    Outcome(
        "01-r4-spec-ghp-collection-bundle.json",
        "taken in",
        1,
        "Patient/pat2 (not in the Bundle: reference only): ALT 54 (ULN 45, H), AST, ALP, "
        "GGT, bilirubin 14631-6; time from the panel (members have none).",
    ),
    Outcome(
        "02-r4-spec-general-reports-bundle-of-bundles.json",
        "taken in",
        10,
        "Bundle of 17 Bundles: one message per patient (Patient/1..10), 70 results, each "
        "timed by the DiagnosticReport that lists it; direct bilirubin ignored.",
    ),
    Outcome(
        "03-uscore-311-serum-total-bilirubin.json",
        "taken in",
        1,
        "Bilirubin 8.6 mg/dL -> 147.06 umol/L, ULN 7.0 mg/dL -> 119.7 umol/L "
        "(range label in appliesTo).",
    ),
    Outcome(
        "04-uscore-serum-total-bilirubin-typed-range.json",
        "taken in",
        1,
        "Same result as 03, range typed 'normal': same values.",
    ),
    Outcome(
        "05-synthea-r4-patient-transaction-bundle.json",
        "taken in",
        1,
        "urn:uuid subject resolved to the Patient and its identifiers; ALT, AST, ALP, "
        "bilirubin (mg/dL converted); no ranges, so no ULN; 121 other Observations ignored.",
    ),
    Outcome(
        "06-ccda-converted-transaction-bundle-oid-loinc.json",
        "taken in",
        1,
        "LOINC by OID; values in component[] with the parent's code; 47 results; the "
        "nested document Bundle repeats all 571 Observations: taken once, reported.",
    ),
)


def _table_markdown() -> str:
    lines = ["| sample | outcome | why |", "| --- | --- | --- |"]
    lines += [f"| {o.file} | {o.outcome} | {o.why} |" for o in SAMPLE_OUTCOMES]
    return "\n".join(lines)


def _parse_sample(samples: Path, name: str) -> list[LabMessage]:
    return parse(sample_bytes(samples, name), "hl7" if name.endswith(".hl7") else "fhir")


def _one(messages: list[LabMessage]) -> LabMessage:
    assert len(messages) == 1
    return messages[0]


def _by_analyte(message: LabMessage) -> dict[str, Observation]:
    found: dict[str, Observation] = {}
    for obs in message.observations:
        assert obs.analyte not in found, f"{obs.analyte} twice"
        found[obs.analyte] = obs
    return found


def test_every_sample_has_an_expected_outcome(samples: Path) -> None:
    on_disk = sorted(p.name for kind in ("hl7", "fhir") for p in (samples / kind).iterdir())
    assert sorted(o.file for o in SAMPLE_OUTCOMES) == on_disk
    assert _table_markdown().count("\n") == len(SAMPLE_OUTCOMES) + 1


@pytest.mark.parametrize("expected", SAMPLE_OUTCOMES, ids=lambda o: o.file[:2] + o.file[-5:])
def test_sample_is_taken_in_or_quarantined_as_the_table_says(
    samples: Path, expected: Outcome
) -> None:
    messages = _parse_sample(samples, expected.file)
    assert len(messages) == expected.messages
    for message in messages:
        if expected.outcome == "taken in":
            assert message.usable, message.quarantine_reason
            assert message.quarantine_reason is None
            assert message.patient.known
            for obs in message.observations:
                assert obs.observed_at.tzinfo is UTC
        elif expected.outcome == "values held":
            assert message.usable and message.patient.known
            assert message.held and not message.observations
        else:
            assert not message.usable
            assert message.quarantine_reason


def test_hl7_01_labcorp_loinc_panel_with_bilirubin_in_mg_dl(samples: Path) -> None:
    msg = _one(_parse_sample(samples, "01-labcorp-style-cmp-4-obr-v23.hl7"))
    assert msg.message_id == "M16012000000000005"
    assert [(i.system, i.value) for i in msg.patient.identifiers] == [("", "374736473647364")]
    res = _by_analyte(msg)
    assert set(res) == {"alt", "ast", "alp", "bilirubin"}
    assert (res["alt"].value, res["alt"].uln, res["alt"].original_unit) == (16, 32, "IU/L")
    assert (res["ast"].value, res["ast"].uln) == (16, 40)
    assert (res["alp"].value, res["alp"].uln) == (92, 117)
    bili = res["bilirubin"]
    assert bili.value == pytest.approx(0.3 * 17.1)
    assert bili.uln == pytest.approx(1.2 * 17.1)
    assert (bili.unit, bili.original_value, bili.original_unit) == ("umol/L", ".3", "MG/DL")
    assert res["alt"].code.system == "LN" and res["alt"].code.code == "1742-6"
    assert res["alt"].code.display == "ALT (SGPT)"
    for obs in res.values():
        assert obs.observed_at == datetime(2015, 8, 21, tzinfo=UTC)
        assert obs.observed_at_source == "OBX-14"
        assert obs.status == "final"
        assert obs.source_ref.startswith("OBR 2 OBX ")
    assert [p.location for p in msg.problems] == ["MSH-11"]  # a test message: a note only


def test_hl7_02_winpath_duplicate_alp_is_reported(samples: Path) -> None:
    msg = _one(_parse_sample(samples, "02-winpath-liver-bone-partial-dup-obx-v23.hl7"))
    res = _by_analyte(msg)
    assert (res["bilirubin"].value, res["bilirubin"].uln) == (5, 20)
    assert (res["alp"].value, res["alp"].uln, res["alp"].source_ref) == (108, 129, "OBX 4")
    assert res["alp"].observed_at == datetime(2020, 4, 21, 9, 28, tzinfo=UTC)
    assert res["alp"].observed_at_source == "OBR-7"
    assert [(i.system, i.value, i.kind) for i in msg.patient.identifiers] == [
        ("MRENTR", "11111111110", "MEDREC")
    ]
    (dup,) = msg.problems
    assert dup.effect == "note" and "ALP appears 2 times" in dup.reason
    assert "last one was kept" in dup.reason


def test_hl7_03_winpath_alt_high_and_last_duplicate_alp_kept(samples: Path) -> None:
    msg = _one(_parse_sample(samples, "03-winpath-liver-bone-final-alt-high-v23.hl7"))
    res = _by_analyte(msg)
    alt = res["alt"]
    assert (alt.value, alt.unit, alt.uln, alt.abnormal_flag) == (58, "U/L", 50, "H")
    assert (alt.code.system, alt.code.code) == ("Winpath", "ALT")
    assert res["bilirubin"].value == 5
    assert (res["alp"].value, res["alp"].source_ref) == (110, "OBX 5")
    (dup,) = msg.problems
    assert dup.location == "OBX 5"
    assert dup.reason == (
        "ALP appears 2 times in OBR 1 (OBX 2: 108 IU/L, OBX 5: 110 IU/L); the last one was kept"
    )


def test_hl7_04_corepoint_alp_only(samples: Path) -> None:
    msg = _one(_parse_sample(samples, "04-tdl-corepoint-bone-iron-2-obr-v23.hl7"))
    (alp,) = msg.observations
    assert (alp.analyte, alp.value, alp.uln, alp.source_ref) == ("alp", 104, 104, "OBR 1 OBX 1")
    assert alp.observed_at == datetime(2013, 7, 24, 16, 41, tzinfo=UTC)
    assert msg.problems == ()


def test_hl7_05_cdc_structured_numerics_with_companion_uln_and_date(samples: Path) -> None:
    msg = _one(_parse_sample(samples, "05-cdc-hepb-case-notification-sn-values-v251.hl7"))
    res = _by_analyte(msg)
    alt, ast = res["alt"], res["ast"]
    assert (alt.value, alt.original_value, alt.uln) == (200, "^200", 100)
    assert alt.observed_at == datetime(2014, 2, 2, tzinfo=UTC)
    assert alt.observed_at_source == "OBX-4 group"
    assert (ast.value, ast.uln, ast.observed_at_source) == (100, None, "OBR-7")
    assert ast.observed_at == datetime(2014, 2, 3, 17, 1, tzinfo=UTC)
    assert msg.sent_at == datetime(2014, 12, 25, 17, 0, 30, 123400, tzinfo=UTC)
    assert [(i.system, i.value) for i in msg.patient.identifiers] == [("SendAppName", "HEP_B_TC02")]


def test_hl7_06_no_unit_and_equals_sign_hold_each_value(samples: Path) -> None:
    msg = _one(_parse_sample(samples, "06-mdss-hepa-notification-sn-equals-v251.hl7"))
    assert msg.observations == ()
    assert msg.usable  # the patient's draw is stored, marked as waiting on both
    assert [str(p) for p in msg.held] == [
        "OBX 54: ALT value 1 has no unit; a unit is never guessed",
        "OBX 57: AST value '=' is not a number",
    ]
    assert msg.quarantine_reason is None
    assert [(i.system, i.value) for i in msg.patient.identifiers] == [("MDCH", "5276074529")]


@pytest.mark.parametrize(
    ("name", "alt", "ast", "at", "patient"),
    [
        (
            "07-mindray-bs200-analyzer-chem-v231.hl7",
            32,
            28,
            datetime(2026, 1, 23, 13, 50, tzinfo=UTC),
            "PAT003",
        ),
        (
            "08-mindray-bs360e-analyzer-chem-v231.hl7",
            25,
            22,
            datetime(2026, 1, 23, 12, 50, tzinfo=UTC),
            "PAT002",
        ),
    ],
)
def test_hl7_07_08_mindray_analyzer_codes_in_component_4(
    samples: Path, name: str, alt: float, ast: float, at: datetime, patient: str
) -> None:
    msg = _one(_parse_sample(samples, name))
    res = _by_analyte(msg)
    assert (res["alt"].value, res["ast"].value) == (alt, ast)
    assert res["alt"].code.code == "ALT" and res["alt"].uln is None
    assert res["alt"].observed_at == at and res["alt"].observed_at_source == "OBR-8"
    assert msg.patient.identifiers[0].value == patient
    assert msg.problems == ()


def test_fhir_01_ghp_panel_members_take_the_panel_time(samples: Path) -> None:
    msg = _one(_parse_sample(samples, "01-r4-spec-ghp-collection-bundle.json"))
    assert msg.patient.reference == "Patient/pat2" and msg.patient.identifiers == ()
    res = _by_analyte(msg)
    assert set(res) == {"alt", "ast", "alp", "ggt", "bilirubin"}
    assert (res["alt"].value, res["alt"].uln, res["alt"].abnormal_flag) == (54, 45, "H")
    assert (res["ast"].value, res["ast"].uln) == (30, 41)
    assert (res["alp"].value, res["alp"].uln) == (108, 115)
    assert (res["ggt"].value, res["ggt"].uln) == (35, 45)
    assert (res["bilirubin"].value, res["bilirubin"].uln) == (7, 20)
    assert res["bilirubin"].code.code == "14631-6"
    for obs in res.values():
        assert obs.observed_at == datetime(2015, 8, 16, 6, 40, 17, tzinfo=UTC)
        assert obs.observed_at_source == "panel effective"
    assert msg.problems == ()


def test_fhir_02_bundle_of_bundles_gives_one_message_per_patient(samples: Path) -> None:
    messages = _parse_sample(samples, "02-r4-spec-general-reports-bundle-of-bundles.json")
    by_patient = {m.patient.reference: m for m in messages}
    assert set(by_patient) == {f"Patient/{n}" for n in range(1, 11)}
    assert sum(len(m.observations) for m in messages) == 70
    alts = sorted(
        (o.observed_at, o.value) for o in by_patient["Patient/2"].observations if o.analyte == "alt"
    )
    assert alts == [
        (datetime(2004, 12, 3, 9, 45, 17, tzinfo=UTC), 475),
        (datetime(2004, 12, 8, 7, 45, 17, tzinfo=UTC), 263),
    ]
    assert all(
        o.observed_at_source == "DiagnosticReport effective"
        for m in messages
        for o in m.observations
    )
    assert len({m.message_id for m in messages}) == 10


@pytest.mark.parametrize(
    "name",
    [
        "03-uscore-311-serum-total-bilirubin.json",
        "04-uscore-serum-total-bilirubin-typed-range.json",
    ],
)
def test_fhir_03_04_us_core_bilirubin_in_mg_dl(samples: Path, name: str) -> None:
    msg = _one(_parse_sample(samples, name))
    (bili,) = msg.observations
    assert bili.analyte == "bilirubin"
    assert bili.value == pytest.approx(147.06)
    assert bili.uln == pytest.approx(119.7)
    assert (bili.original_value, bili.original_unit) == ("8.6", "mg/dL")
    assert bili.observed_at == datetime(2005, 7, 7, tzinfo=UTC)
    assert bili.observed_at_source == "effectiveDateTime"
    assert msg.message_id == "Observation/serum-total-bilirubin|Patient/example"


def test_fhir_05_synthea_urn_uuid_subject_resolves_to_patient(samples: Path) -> None:
    msg = _one(_parse_sample(samples, "05-synthea-r4-patient-transaction-bundle.json"))
    systems = {i.system: i.value for i in msg.patient.identifiers}
    assert systems["https://github.com/synthetichealth/synthea"] == (
        "e20de9eb-6f2d-4871-a43f-bbede53293ed"
    )
    assert msg.patient.reference == "urn:uuid:da2c7b0a-791a-4b8f-9a30-dc3d8cf1ec75"
    res = _by_analyte(msg)
    assert set(res) == {"alt", "ast", "alp", "bilirubin"}
    assert res["bilirubin"].value == pytest.approx(0.11900299815236146 * 17.1, abs=1e-6)
    assert res["alt"].value == pytest.approx(23.27822394220447, abs=1e-6)
    assert all(o.uln is None for o in res.values())
    assert msg.problems == ()


def test_fhir_06_ccda_components_oid_loinc_and_nested_duplicates(samples: Path) -> None:
    msg = _one(_parse_sample(samples, "06-ccda-converted-transaction-bundle-oid-loinc.json"))
    assert [(i.system, i.value) for i in msg.patient.identifiers] == [
        ("urn:oid:2.16.840.1.113883.19.5", "a790e109-4a7d-93c1-eb16-6f8905b9fd08")
    ]
    assert len(msg.observations) == 47
    assert {o.code.system for o in msg.observations} == {"urn:oid:2.16.840.1.113883.6.1"}
    first_alt = min(
        (o for o in msg.observations if o.analyte == "alt"), key=lambda o: o.observed_at
    )
    assert first_alt.value == pytest.approx(35.72795180661948, abs=1e-6)
    assert first_alt.observed_at == datetime(2011, 10, 8, 23, 52, 46, tzinfo=UTC)  # +10:00
    (note,) = msg.problems
    assert note.effect == "note" and note.reason.startswith("571 Observation(s) appear more")
