"""Clinical measures every finding carries: CTCAE grade, injury pattern, Hy's law."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from monitor.core.protocol import Protocol


def baseline_is_abnormal(baseline: float | None, uln: float) -> bool:
    return baseline is not None and baseline > uln


def ctcae_grade(
    analyte: str, value: float, uln: float, baseline: float | None, protocol: Protocol
) -> int:
    """CTCAE v5 grade 0-4; against the baseline where the baseline is above ULN.

    Grade 1 starts just above ULN for a normal baseline and at the first multiple
    (inclusive) of an abnormal baseline; higher grades start strictly above their bound.
    """
    bounds = protocol.grading[analyte]
    if baseline_is_abnormal(baseline, uln):
        assert baseline is not None
        ratio, limits = value / baseline, bounds.baseline
        grade = 1 if ratio >= limits[0] else 0
    else:
        ratio, limits = value / uln, bounds.uln
        grade = 1 if ratio > limits[0] else 0
    for g in (2, 3, 4):
        if ratio > limits[g - 1]:
            grade = g
    return grade


def grade4_bound(analyte: str, uln: float, baseline: float | None, protocol: Protocol) -> float:
    """The value above which the analyte is at grade 4."""
    bounds = protocol.grading[analyte]
    if baseline_is_abnormal(baseline, uln):
        assert baseline is not None
        return baseline * bounds.baseline[3]
    return uln * bounds.uln[3]


def grades(
    values: Mapping[str, float],
    uln: Mapping[str, float],
    baseline: Mapping[str, float],
    protocol: Protocol,
) -> dict[str, int]:
    return {
        a: ctcae_grade(a, v, uln[a], baseline.get(a), protocol)
        for a, v in values.items()
        if a in protocol.grading
    }


@dataclass(frozen=True)
class Pattern:
    name: str | None
    r_ratio: float | None


def injury_pattern(
    values: Mapping[str, float], uln: Mapping[str, float], protocol: Protocol
) -> Pattern:
    """R = (ALT/ULN)/(ALP/ULN): hepatocellular, cholestatic or mixed; None without both."""
    if "alt" not in values or "alp" not in values or values["alp"] <= 0:
        return Pattern(None, None)
    r = (values["alt"] / uln["alt"]) / (values["alp"] / uln["alp"])
    if r >= protocol.pattern.hepatocellular_min_r:
        name = "hepatocellular"
    elif r <= protocol.pattern.cholestatic_max_r:
        name = "cholestatic"
    else:
        name = "mixed"
    return Pattern(name, round(r, 2))


def potential_hys_law(
    values: Mapping[str, float], uln: Mapping[str, float], protocol: Protocol
) -> bool:
    h = protocol.hys_law
    transaminase = any(
        a in values and values[a] >= h.transaminase_uln_multiple * uln[a] for a in ("alt", "ast")
    )
    bilirubin = (
        "bilirubin" in values and values["bilirubin"] >= h.bilirubin_uln_multiple * uln["bilirubin"]
    )
    alp_ok = "alp" not in values or values["alp"] < h.alp_below_uln_multiple * uln["alp"]
    return transaminase and bilirubin and alp_ok
