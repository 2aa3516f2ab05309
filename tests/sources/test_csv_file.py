"""CSV exports: the whole file is taken, or none of it with every bad cell named."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from monitor.sources.csv_file import parse_csv, read_csv
from monitor.sources.model import ParseError

HEADER = "patient_id,id_system,analyte,value,unit,observed_at,reference_range,status"


def test_good_file_gives_one_message_per_patient() -> None:
    text = "\n".join(
        [
            HEADER,
            "P1,HOSP,ALT,58,U/L,2024-03-01T08:30:00Z,7-56,final",
            "P1,HOSP,bilirubin,1.2,mg/dL,2024-03-01T08:30:00Z,0.0-1.2,",
            "P2,HOSP,sgot,40,IU/L,2024-03-02,<45,preliminary",
        ]
    )
    result = read_csv(text, source_name="lfts.csv")
    assert result.ok
    first, second = result.messages
    assert first.message_id == "lfts.csv:row 2" and second.message_id == "lfts.csv:row 4"
    assert [(i.system, i.value) for i in first.patient.identifiers] == [("HOSP", "P1")]
    alt, bili = first.observations
    assert (alt.analyte, alt.value, alt.uln, alt.source_ref) == ("alt", 58, 56, "row 2")
    assert bili.value == pytest.approx(20.52) and bili.uln == pytest.approx(20.52)
    (ast,) = second.observations
    assert (ast.analyte, ast.status, ast.uln) == ("ast", "preliminary", 45)
    assert ast.observed_at == datetime(2024, 3, 2, tzinfo=UTC)
    assert alt.observed_at_source == "observed_at"


def test_every_bad_cell_is_named_and_nothing_is_taken() -> None:
    text = "\n".join(
        [
            HEADER,
            "P1,HOSP,ALT,58,U/L,2024-03-01T08:30:00Z,7-56,final",
            "P1,HOSP,ALT,abc,U/L,2024-03-02T08:30:00Z,,",
            "P1,HOSP,ALT,12,mmol/L,2024-03-03T08:30:00Z,,",
            ",HOSP,sodium,140,mmol/L,yesterday,,maybe",
            "P1,HOSP,AST,30,,2024-03-01T08:30:00Z,normal,",
            "P1,HOSP,ALT,58,U/L,2024-03-01T08:30:00Z,7-56,final",
        ]
    )
    result = read_csv(text)
    assert result.messages == ()
    assert [str(p) for p in result.problems] == [
        "row 3, column value: 'abc' is not a number",
        "row 4, column unit: unknown unit 'mmol/L' for ALT",
        "row 5, column patient_id: empty",
        "row 5, column analyte: 'sodium' is not a monitored liver test (ALT, AST, ALP, GGT, "
        "bilirubin)",
        "row 5, column observed_at: 'yesterday' is not a date/time (use ISO 8601, e.g. "
        "2020-05-01T09:30:00Z)",
        "row 5, column status: 'maybe' is not final, corrected or preliminary",
        "row 6, column unit: empty; a unit is never guessed",
        "row 6, column reference_range: 'normal' is not a range (e.g. 7-56, <45)",
        "row 7: repeats row 2 (same patient, test and time)",
    ]
    with pytest.raises(ParseError) as caught:
        parse_csv(text)
    assert len(caught.value.problems) == 9
    assert "(and 6 more)" in caught.value.reason


def test_missing_columns_are_reported_on_the_header_row() -> None:
    result = read_csv("patient_id,value\nP1,3\n")
    assert [str(p) for p in result.problems] == [
        "row 1: missing column(s): unit, observed_at, analyte (or code)"
    ]


def test_codes_with_code_system_and_non_liver_codes_skipped() -> None:
    text = "\n".join(
        [
            "patient_id;code;code_system;value;unit;observed_at;uln",
            "P1;1742-6;;58;U/L;2024-03-01T08:30:00+01:00;40",
            "P1;2951-2;;140;mmol/L;2024-03-01T08:30:00+01:00;",
            "P1;BILI;Winpath;5;umol/L;2024-03-01T08:30:00+01:00;21",
            "P1;GGT;;50;U/L;2024-03-01T08:30:00+01:00;",
        ]
    )
    result = read_csv(text)
    assert [str(p) for p in result.problems] == [
        "row 5, column code: 'GGT' looks like a liver test but is not mapped (add it to "
        "config/mapping.toml)"
    ]
    result = read_csv(text.rsplit("\n", 1)[0])
    (msg,) = result.messages
    assert [(o.analyte, o.uln) for o in msg.observations] == [("alt", 40), ("bilirubin", 21)]
    assert msg.observations[0].observed_at == datetime(2024, 3, 1, 7, 30, tzinfo=UTC)


def test_naive_times_use_the_assumed_timezone() -> None:
    text = f"{HEADER}\nP1,HOSP,ALT,58,U/L,2024-07-01T08:30:00,,\n"
    (msg,) = read_csv(text, assume_tz="Europe/London").messages
    assert msg.observations[0].observed_at == datetime(2024, 7, 1, 7, 30, tzinfo=UTC)


def test_uln_and_range_must_agree_and_empty_file_is_refused() -> None:
    text = (
        "patient_id,analyte,value,unit,observed_at,reference_range,uln\n"
        "P1,ALT,58,U/L,2024-03-01,7-56,50\n"
    )
    assert "disagrees" in str(read_csv(text).problems[0])
    assert str(read_csv(HEADER + "\n").problems[0]) == "file: no result rows under the header"
    assert str(read_csv("").problems[0]) == "row 1: the file has no header row"


def test_quoted_cells_bom_and_extra_columns() -> None:
    text = (
        "\ufeffpatient_id,patient_name,analyte,value,unit,observed_at\n"
        'P1,"Doe, Jane",ALT,58,U/L,2024-03-01\n'
    )
    (msg,) = read_csv(text).messages
    assert msg.observations[0].value == 58
