"""Analytes and their units: the one place that knows how to normalise a lab value.

Inside the core every value is in its canonical unit: U/L for the enzymes and
umol/L for bilirubin. An unknown unit is an error, never a guess.
"""

from __future__ import annotations

ANALYTES: tuple[str, ...] = ("alt", "ast", "alp", "ggt", "bilirubin")
TRANSAMINASES: tuple[str, ...] = ("alt", "ast")
ENZYMES: frozenset[str] = frozenset({"alt", "ast", "alp", "ggt"})

CANONICAL_UNIT: dict[str, str] = {
    "alt": "U/L",
    "ast": "U/L",
    "alp": "U/L",
    "ggt": "U/L",
    "bilirubin": "umol/L",
}

DISPLAY_NAME: dict[str, str] = {
    "alt": "ALT",
    "ast": "AST",
    "alp": "ALP",
    "ggt": "GGT",
    "bilirubin": "bilirubin",
}

# Bilirubin: 1 mg/dL = 17.1 umol/L (molar mass 584.7 g/mol). A physical constant, not policy.
BILIRUBIN_UMOL_PER_MG_DL = 17.1

_ENZYME_UNITS = {"u/l", "iu/l", "units/l", "unit/l", "[iu]/l", "u/liter", "iu/liter"}
_BILI_UMOL = {"umol/l", "µmol/l", "μmol/l", "micromol/l", "mcmol/l"}
_BILI_MG_DL = {"mg/dl"}


class UnitError(ValueError):
    """A unit that is not known for the analyte."""


def canonical_unit_key(unit: str) -> str:
    """Strip HL7 component tails (`U/L^Units per liter^UCUM`) and case."""
    return unit.split("^", 1)[0].strip().lower().replace(" ", "")


def to_canonical(analyte: str, value: float, unit: str | None) -> float:
    """Convert `value` in `unit` to the analyte's canonical unit; None means canonical."""
    if analyte not in CANONICAL_UNIT:
        raise UnitError(f"unknown analyte {analyte!r}")
    if unit is None:
        return value
    key = canonical_unit_key(unit)
    if analyte in ENZYMES:
        if key in _ENZYME_UNITS:
            return value
    else:
        if key in _BILI_UMOL:
            return value
        if key in _BILI_MG_DL:
            return value * BILIRUBIN_UMOL_PER_MG_DL
    raise UnitError(f"unknown unit {unit!r} for {DISPLAY_NAME[analyte]}")
