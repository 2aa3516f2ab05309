"""HL7 v2 ORU^R01 parsing: what is taken, what is dropped and reported, what is held."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from monitor.sources.hl7v2 import normalize, parse_batch, parse_message, split_batch
from monitor.sources.model import LabMessage, ParseError

MSH = "MSH|^~\\&|LIMS|LAB|MON|WARD|20240301101500||ORU^R01|CTRL1|P|2.5.1"
PID = "PID|1||MRN123^^^HOSP^MR~9434765919^^^NHS^NH||DOE^JANE||19700101|F"
OBR = "OBR|1||ORD1|LFT^Liver function^L|||20240301083000"


def oru(
    *obx: str, msh: str = MSH, pid: str | None = PID, obr: str | None = OBR, sep: str = "\r"
) -> str:
    segments = [msh] + ([pid] if pid else []) + ([obr] if obr else []) + list(obx)
    return sep.join(segments) + sep


ALT = "OBX|1|NM|1742-6^ALT^LN||58|U/L|7-56|H|||F|||20240301084500"
AST = "OBX|2|NM|1920-8^AST^LN||40|U/L|<45||||F|||20240301084500"


def obs(message: LabMessage, analyte: str) -> tuple[float, float | None]:
    (found,) = [o for o in message.observations if o.analyte == analyte]
    return found.value, found.uln


@pytest.mark.parametrize("sep", ["\r", "\n", "\r\n"])
def test_segment_separators_cr_lf_crlf_all_read(sep: str) -> None:
    msg = parse_message(oru(ALT, AST, sep=sep))
    assert msg.usable
    assert obs(msg, "alt") == (58, 56)
    assert obs(msg, "ast") == (40, 45)


def test_missing_final_cr_and_trailing_empty_segments_are_fine() -> None:
    text = oru(ALT).rstrip("\r")
    assert parse_message(text).usable
    assert parse_message(oru(ALT) + "\r\r\n\r").usable
    assert normalize("MSH|^~\\&|A\r\r\nPID|1\n\n") == "MSH|^~\\&|A\rPID|1\r"


def test_identifiers_from_pid3_repetitions_and_pid2() -> None:
    pid = "PID|1|EXT77|5276^^^MDCH&2.16.840.1.114222.4.1.3660&ISO~^^^X~99^^^&2.16.1&ISO^MR~"
    msg = parse_message(oru(ALT, pid=pid))
    assert [(i.system, i.value, i.kind) for i in msg.patient.identifiers] == [
        ("MDCH", "5276", ""),
        ("2.16.1", "99", "MR"),
        ("", "EXT77", ""),
    ]


def test_no_pid_or_no_identifier_or_two_patients_quarantines() -> None:
    assert "no PID segment" in (parse_message(oru(ALT, pid=None)).quarantine_reason or "")
    empty = parse_message(oru(ALT, pid="PID|1||^^^HOSP"))
    assert not empty.usable and "no patient identifier" in (empty.quarantine_reason or "")
    text = oru(ALT) + "PID|1||OTHER^^^HOSP\rOBR|2||X\r" + AST + "\r"
    two = parse_message(text)
    assert not two.usable and "2 PID segments" in (two.quarantine_reason or "")


def test_not_an_oru_is_quarantined_and_not_hl7_raises() -> None:
    adt = parse_message(oru(ALT, msh=MSH.replace("ORU^R01", "ADT^A01")))
    assert not adt.usable
    assert "MSH-9: message type 'ADT^A01' is not a lab result (ORU^R01)" in str(
        adt.quarantine_reason
    )
    with pytest.raises(ParseError, match="does not start with an MSH"):
        parse_message("PID|1||X\rOBX|1")
    with pytest.raises(ParseError, match="separators"):
        parse_message("MSHA^~\\&A")


def test_non_liver_obx_are_ignored_silently() -> None:
    sodium = "OBX|3|NM|2951-2^Sodium^LN||140|mmol/L|135-145||||F"
    cbc = "OBX|4|NM|6690-2^WBC^LN||4.7|10*9/L|4-11||||F"
    msg = parse_message(oru(ALT, sodium, cbc))
    assert [o.analyte for o in msg.observations] == ["alt"]
    assert msg.problems == ()
    only = parse_message(oru(sodium))
    assert not only.usable and only.quarantine_reason == "no liver test result in this message"


def test_unmapped_liver_looking_code_is_reported_not_ignored() -> None:
    local = "OBX|3|NM|ALT^^Winpath2||58|U/L|7-56||||F"
    msg = parse_message(oru(local, AST))
    assert obs(msg, "ast") == (40, 45)
    (problem,) = msg.problems
    assert str(problem) == (
        "OBX 3: code 'ALT^^Winpath2' looks like a liver test but is not "
        "mapped (add it to config/mapping.toml)"
    )
    assert problem.effect == "held"
    assert msg.usable  # AST is taken; the ALT problem travels with it


def test_direct_bilirubin_is_known_and_not_reported() -> None:
    direct = "OBX|3|NM|1968-7^Bilirubin.direct^LN||3|umol/L|0-8||||F"
    local_direct = "OBX|4|NM|DBIL^Direct bilirubin^L||3|umol/L|0-8||||F"
    assert parse_message(oru(ALT, direct, local_direct)).problems == ()


@pytest.mark.parametrize(
    ("value_type", "value", "expected", "comparator"),
    [
        ("SN", "^200", 200, None),
        ("SN", "<^5", 5, "<"),
        ("SN", ">^1000", 1000, ">"),
        ("SN", "=^12", 12, None),
        ("NM", ".3", 0.3, None),
        ("NM", "<5", 5, "<"),
        ("ST", "42", 42, None),
    ],
)
def test_numeric_and_structured_numeric_values(
    value_type: str, value: str, expected: float, comparator: str | None
) -> None:
    msg = parse_message(oru(f"OBX|1|{value_type}|1742-6^ALT^LN||{value}|U/L|||||F"))
    (alt,) = msg.observations
    assert (alt.value, alt.comparator, alt.original_value) == (expected, comparator, value)


@pytest.mark.parametrize(
    ("value_type", "value", "reason"),
    [
        ("SN", "=", "ALT value '=' is not a number"),
        ("SN", "^10^-^20", "ALT value '^10^-^20' is a range or ratio, not a single number"),
        ("NM", "abc", "ALT value 'abc' is not a number"),
        ("NM", "-3", "ALT value '-3' is negative"),
        ("NM", "", "ALT has no value (OBX-5 is empty)"),
        ("CWE", "POS^Positive", "ALT value has type 'CWE', not a number (NM or SN)"),
    ],
)
def test_values_that_are_not_numbers_are_dropped_and_reported(
    value_type: str, value: str, reason: str
) -> None:
    msg = parse_message(oru(f"OBX|1|{value_type}|1742-6^ALT^LN||{value}|U/L|||||F", AST))
    assert [o.analyte for o in msg.observations] == ["ast"]
    (problem,) = msg.problems
    assert (problem.location, problem.effect, problem.reason) == ("OBX 1", "held", reason)


@pytest.mark.parametrize(
    ("unit", "value", "uln"),
    [
        ("U/L", 58, 56),
        ("IU/L", 58, 56),
        ("U/l", 58, 56),
        ("U/L^Units per liter^UCUM", 58, 56),
        ("[IU]/L", 58, 56),
        ("U/litre", 58, 56),
    ],
)
def test_enzyme_units(unit: str, value: float, uln: float) -> None:
    msg = parse_message(oru(f"OBX|1|NM|1742-6^ALT^LN||58|{unit}|7-56||||F"))
    assert obs(msg, "alt") == (value, uln)


@pytest.mark.parametrize("unit", ["umol/L", "µmol/L", "mg/dL"])
def test_bilirubin_units_convert_to_umol_per_l(unit: str) -> None:
    value, limit = ("0.6", "0.0-1.2") if unit == "mg/dL" else ("10", "0-21")
    msg = parse_message(oru(f"OBX|1|NM|1975-2^Bili^LN||{value}|{unit}|{limit}||||F"))
    (bili,) = msg.observations
    factor = 17.1 if unit == "mg/dL" else 1.0
    assert bili.value == pytest.approx(float(value) * factor)
    assert bili.uln == pytest.approx(float(limit.split("-")[1]) * factor)
    assert bili.unit == "umol/L"


def test_unknown_or_missing_unit_is_dropped_never_guessed() -> None:
    msg = parse_message(
        oru(
            "OBX|1|NM|1742-6^ALT^LN||58|mmol/L|||||F",
            "OBX|2|NM|1920-8^AST^LN||40||||||F",
            "OBX|3|NM|6768-6^ALP^LN||90|U/L|||||F",
        )
    )
    assert [o.analyte for o in msg.observations] == ["alp"]
    assert [str(p) for p in msg.problems] == [
        "OBX 1: unknown unit 'mmol/L' for ALT",
        "OBX 2: AST value 40 has no unit; a unit is never guessed",
    ]


@pytest.mark.parametrize(
    ("text", "uln", "noted"),
    [
        ("7-56", 56, False),
        ("0.0-1.2", 1.2, False),
        ("<45", 45, False),
        (">59", None, False),
        ("10 - 50", 50, False),
        ("", None, False),
        ("normal", None, True),
        ("50-10", None, True),
    ],
)
def test_reference_ranges(text: str, uln: float | None, noted: bool) -> None:
    msg = parse_message(oru(f"OBX|1|NM|1742-6^ALT^LN||30|U/L|{text}||||F"))
    assert obs(msg, "alt")[1] == uln
    assert bool(msg.problems) is noted
    if noted:
        assert msg.problems[0].effect == "note" and "no ULN taken" in msg.problems[0].reason


@pytest.mark.parametrize(
    ("code", "status"), [("F", "final"), ("C", "corrected"), ("P", "preliminary")]
)
def test_result_status(code: str, status: str) -> None:
    msg = parse_message(oru(f"OBX|1|NM|1742-6^ALT^LN||30|U/L|||||{code}"))
    assert msg.observations[0].status == status


def test_withdrawn_result_quarantines_and_missing_result_is_ignored_by_rule() -> None:
    wrong = parse_message(oru("OBX|1|NM|1742-6^ALT^LN||30|U/L|||||W", AST))
    assert not wrong.usable and "status W" in (wrong.quarantine_reason or "")
    pending = parse_message(oru("OBX|1|NM|1742-6^ALT^LN||30|U/L|||||X", AST))
    assert pending.usable and pending.problems[0].effect == "ignored"
    blank = parse_message(oru("OBX|1|NM|1742-6^ALT^LN||30|U/L|||||", AST))
    assert "OBX-11 is empty" in blank.problems[0].reason
    assert blank.problems[0].effect == "held"


DRAWN = datetime(2024, 3, 1, 8, 45, tzinfo=UTC)


@pytest.mark.parametrize("status", ["X", "I", "N", "O"])
def test_a_line_the_lab_says_has_no_result_is_ignored_and_named(status: str) -> None:
    msg = parse_message(oru(f"OBX|1|NM|1742-6^ALT^LN||30|U/L|||||{status}|||20240301084500", AST))
    (problem,) = msg.problems
    assert (problem.effect, problem.label, problem.code) == ("ignored", "alt", "LN|1742-6")
    assert problem.at == DRAWN
    assert [o.analyte for o in msg.observations] == ["ast"]


def test_status_u_is_ignored_only_without_a_value() -> None:
    empty = parse_message(oru("OBX|1|NM|1742-6^ALT^LN|||U/L|||||U", AST))
    assert [p.effect for p in empty.problems] == ["ignored"]
    valued = parse_message(oru("OBX|1|NM|1742-6^ALT^LN||30|U/L|||||U", AST))
    assert [p.effect for p in valued.problems] == ["held"]
    assert valued.problems[0].label == "alt"


def test_a_held_value_names_its_analyte_code_and_draw_time() -> None:
    msg = parse_message(oru("OBX|1|NM|1975-2^Bilirubin^LN||12||||||F|||20240301084500", AST))
    (problem,) = msg.held
    assert (problem.label, problem.code, problem.at) == ("bilirubin", "LN|1975-2", DRAWN)
    untimed = parse_message(oru("OBX|1|NM|1742-6^ALT^LN||30|U/L|||||F|||2024", AST))
    (problem,) = untimed.held
    assert (problem.label, problem.at) == ("alt", None)  # the time is what cannot be read


def test_an_unmapped_liver_code_is_held_under_the_senders_code() -> None:
    local = "OBX|1|NM|XAST^AST local^L||35|U/L|||||F|||20240301084500"
    msg = parse_message(oru(local, AST))
    (problem,) = msg.held
    assert (problem.label, problem.code, problem.at) == ("AST local", "L|XAST", DRAWN)
    # no time of its own: the OBR time is its draw
    obr_time = parse_message(oru("OBX|1|NM|YGGT^Gamma GT^L||35|U/L|||||F", AST))
    assert obr_time.held[0].at == datetime(2024, 3, 1, 8, 30, tzinfo=UTC)
    assert obr_time.held[0].code == "L|YGGT"


@pytest.mark.parametrize(
    "code",
    ["SGPT^^99LOC", "TBIL^Total bili^L", "ZZ1^Alkaline phosphatase^L", "ZZ2^Transaminase^L"],
)
def test_liver_looking_local_codes_are_held(code: str) -> None:
    msg = parse_message(oru(f"OBX|1|NM|{code}||35|U/L|||||F", AST))
    assert [p.effect for p in msg.problems] == ["held"]


@pytest.mark.parametrize(
    "code",
    [
        "ZNA^Sodium^L",
        "ZHB^Haemoglobin^L",
        "ZCR^Creatinine^L",
        "ZDB^Direct bilirubin^L",
        "ZUB^Urine bilirubin^L",
        "ZRA^AST/ALT ratio^L",
    ],
)
def test_clearly_non_liver_codes_are_skipped(code: str) -> None:
    msg = parse_message(oru(f"OBX|1|NM|{code}||35|U/L|||||F", AST))
    assert msg.problems == ()
    assert [o.analyte for o in msg.observations] == ["ast"]


def test_observation_time_sources_and_timezones() -> None:
    with_offset = "OBX|1|NM|1742-6^ALT^LN||30|U/L|||||F|||20240301084500-0500"
    date_only = "OBX|2|NM|1920-8^AST^LN||30|U/L|||||F|||20150821"
    no_time = "OBX|3|NM|6768-6^ALP^LN||30|U/L|||||F"
    msg = parse_message(oru(with_offset, date_only, no_time))
    times = {o.analyte: (o.observed_at, o.observed_at_source) for o in msg.observations}
    assert times["alt"] == (datetime(2024, 3, 1, 13, 45, tzinfo=UTC), "OBX-14")
    assert times["ast"] == (datetime(2015, 8, 21, tzinfo=UTC), "OBX-14")
    assert times["alp"] == (datetime(2024, 3, 1, 8, 30, tzinfo=UTC), "OBR-7")
    msg_only = parse_message(oru(no_time, obr="OBR|1||ORD1|LFT"))
    assert msg_only.observations[0].observed_at_source == "MSH-7"
    assert msg_only.observations[0].observed_at == datetime(2024, 3, 1, 10, 15, tzinfo=UTC)


def test_naive_times_use_the_assumed_timezone() -> None:
    msg = parse_message(oru(ALT), assume_tz="Europe/London")  # BST not yet in March 1st
    assert msg.observations[0].observed_at == datetime(2024, 3, 1, 8, 45, tzinfo=UTC)
    summer = ALT.replace("20240301084500", "20240701084500")
    msg = parse_message(oru(summer), assume_tz="Europe/London")
    assert msg.observations[0].observed_at == datetime(2024, 7, 1, 7, 45, tzinfo=UTC)
    with pytest.raises(ValueError, match="unknown timezone"):
        parse_message(oru(ALT), assume_tz="Mars/Olympus")


def test_unreadable_time_drops_the_value() -> None:
    msg = parse_message(oru("OBX|1|NM|1742-6^ALT^LN||30|U/L|||||F|||2024130199", AST))
    assert [o.analyte for o in msg.observations] == ["ast"]
    assert msg.problems[0].reason.startswith("ALT OBX-14 '2024130199' is not a valid date")


def test_multiple_obr_groups_and_duplicates_per_group() -> None:
    text = oru(
        "OBX|1|NM|1742-6^ALT^LN||30|U/L|||||F",
        "OBX|2|NM|1742-6^ALT^LN||35|U/L|||||F",
        "OBR|2||ORD2|LFT^Liver||20240302083000",
        "OBX|1|NM|1742-6^ALT^LN||99|U/L|||||F",
    )
    msg = parse_message(text)
    assert [(o.value, o.source_ref) for o in msg.observations] == [
        (35, "OBR 1 OBX 2"),
        (99, "OBR 2 OBX 1"),
    ]
    (dup,) = msg.problems
    assert dup.location == "OBR 1 OBX 2" and "the last one was kept" in dup.reason


def test_message_id_and_metadata() -> None:
    msg = parse_message(oru(ALT))
    assert (msg.message_id, msg.sender, msg.processing_id) == ("CTRL1", "LIMS/LAB", "P")
    assert msg.sent_at == datetime(2024, 3, 1, 10, 15, tzinfo=UTC)
    no_id = parse_message(oru(ALT, msh=MSH.replace("|CTRL1|", "||")))
    assert no_id.message_id.startswith("sha256:") and no_id.usable


def test_split_batch_fhs_bhs_blank_lines_and_back_to_back() -> None:
    one, two = oru(ALT), oru(AST, msh=MSH.replace("CTRL1", "CTRL2"))
    batch = f"FHS|^~\\&|LIMS\rBHS|^~\\&|LIMS\r{one}{two}BTS|2\rFTS|1\r"
    assert [m.split("|")[9] for m in split_batch(batch)] == ["CTRL1", "CTRL2"]
    assert len(split_batch(one + "\n\n" + two.replace("\r", "\n"))) == 2
    assert len(split_batch(one.rstrip("\r") + "\r" + two)) == 2
    orphan = split_batch("OBX|1|NM|X\r" + one)
    assert len(orphan) == 2 and orphan[0].startswith("OBX")
    messages = parse_batch("OBX|1|NM|X\r" + one)
    assert not messages[0].usable and "MSH" in (messages[0].quarantine_reason or "")
    assert messages[1].usable
