"""The mapping file: codes to analytes, the liver-test detector, refusals that name the key."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from monitor.core.units import UnitError
from monitor.sources.mapping import (
    DEFAULT_MAPPING_PATH,
    Mapping,
    MappingError,
    default_mapping,
    load_mapping,
    mapping_from_dict,
)


def raw() -> dict[str, Any]:
    return tomllib.loads(DEFAULT_MAPPING_PATH.read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("system", "code", "analyte"),
    [
        ("http://loinc.org", "1742-6", "alt"),
        ("LN", "1920-8", "ast"),
        ("urn:oid:2.16.840.1.113883.6.1", "6768-6", "alp"),
        ("LN", "1975-2", "bilirubin"),
        ("http://loinc.org", "14631-6", "bilirubin"),
        ("ln", "2324-2", "ggt"),
        ("Winpath", "ALT", "alt"),
        ("WINPATH", "bili", "bilirubin"),
        ("http://loinc.org", "2951-2", None),
        ("Other", "ALT", None),
        ("LN", "ALT", None),
    ],
)
def test_codes_map_to_analytes(system: str, code: str, analyte: str | None) -> None:
    assert default_mapping().analyte_for(system, code) == analyte


def test_analyzer_codes_need_the_sender_and_component_4() -> None:
    m = default_mapping()
    assert m.analyte_for("", "ALT", component=4, sending_application="MINDRAY BS-200") == "alt"
    assert m.analyte_for("", "AST", component=4, sending_application="mindray") == "ast"
    assert m.analyte_for("", "ALT", component=1, sending_application="MINDRAY") is None
    assert m.analyte_for("", "ALT", component=4, sending_application="OTHER") is None
    assert m.analyte_for("", "ALT", component=4) is None


@pytest.mark.parametrize(
    ("texts", "liver"),
    [
        (("ALT",), True),
        (("SGPT",), True),
        (("ALT/SGPT",), True),
        (("AST (SGOT)",), True),
        (("Bilirubin (total)",), True),
        (("Alkaline phosphatase",), True),
        (("GGT",), True),
        (("Gamma-GT",), True),
        (("gamma glutamyl transferase",), True),
        (("Alanine aminotransferase [Enzymatic activity/volume]",), True),
        (("Bilirubin.direct",), False),
        (("Urine bilirubin",), False),
        (("AST/ALT ratio",), False),
        (("Sodium",), False),
        (("Diastolic Blood Pressure",), False),
        (("ALTITUDE",), False),
        (("Phosphate",), False),
        (("Liver Enzyme Upper Limit Normal",), False),
        (("Bilirub SerPl-mCnc",), True),  # LOINC's short name
        (("1975-2",), True),  # a monitored LOINC code, sent without its system
        (("2951-2",), False),  # sodium's LOINC code
        ((), False),
    ],
)
def test_looks_like_a_liver_test(texts: tuple[str, ...], liver: bool) -> None:
    assert default_mapping().looks_like_liver(*texts) is liver


def test_units_and_aliases() -> None:
    m = default_mapping()
    assert m.to_canonical("alt", 58, "U/litre") == 58
    assert m.to_canonical("bilirubin", 7, "mg/dL") == 119.7
    with pytest.raises(UnitError):
        m.to_canonical("alt", 58, "")
    with pytest.raises(UnitError):
        m.to_canonical("alt", 58, "^Units")
    with pytest.raises(UnitError, match="unknown unit 'mmol/L' for ALT"):
        m.to_canonical("alt", 58, "mmol/L")


def test_csv_analyte_names() -> None:
    m = default_mapping()
    assert m.analyte_named(" Total  Bilirubin ") == "bilirubin"
    assert m.analyte_named("SGPT") == "alt"
    assert m.analyte_named("sodium") is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: d["loinc"]["codes"].update({"1742-6": "alanine"}),
            "loinc.codes.1742-6: analyte 'alanine' is not one of",
        ),
        (lambda d: d.pop("loinc"), "loinc: missing table"),
        (lambda d: d["loinc"].pop("systems"), "loinc.systems: missing list of strings"),
        (
            lambda d: d["local"][1].pop("sending_applications"),
            "local[1].coding_systems: give coding_systems or sending_applications",
        ),
        (lambda d: d["local"][0].update({"components": [2]}), "local[0].components:"),
        (lambda d: d["local"][0]["codes"].update({"GGT": "gamma"}), "local[0].codes.GGT:"),
        (lambda d: d["names"].update({"sodium": ["na"]}), "names.sodium: not one of"),
        (lambda d: d["detector"].update({"words": "ALT"}), "detector.words: must be a list"),
    ],
)
def test_bad_config_is_refused_naming_the_key(change: Any, message: str) -> None:
    data = raw()
    change(data)
    with pytest.raises(MappingError, match=r"^cfg: ") as caught:
        mapping_from_dict(data, "cfg")
    assert message in str(caught.value)


def test_load_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(MappingError, match="file not found"):
        load_mapping(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[loinc\n", encoding="utf-8")
    with pytest.raises(MappingError, match="not valid TOML"):
        load_mapping(bad)
    assert load_mapping(DEFAULT_MAPPING_PATH).loinc_codes["1742-6"] == "alt"
    assert Mapping.load().loinc_codes == default_mapping().loinc_codes
