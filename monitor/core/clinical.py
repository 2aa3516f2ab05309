"""Clinical measures every finding carries: CTCAE grade, injury pattern, Hy's law."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from monitor.core.protocol import Protocol


def at_least(value: float, limit: float) -> bool:
    """`value >= limit`, where a limit computed as multiple x baseline may carry float
    rounding (3 x 22.1 = 66.30000000000001): a value exactly at the line meets it."""
    return value >= limit or math.isclose(value, limit, rel_tol=1e-9, abs_tol=1e-12)


def above(value: float, limit: float) -> bool:
    """`value > limit`, not merely by float rounding."""
    return value > limit and not math.isclose(value, limit, rel_tol=1e-9, abs_tol=1e-12)


def floor_tenth(value: float) -> float:
    """Round down to one decimal, so 6.96 days reads 6.9, never the 7 it falls short of."""
    return math.floor(value * 10) / 10


def baseline_is_abnormal(baseline: float | None, uln: float) -> bool:
    return baseline is not None and above(baseline, uln)


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
        ref, limits = baseline, bounds.baseline
        if not at_least(value, limits[0] * ref):
            return 0
    else:
        ref, limits = uln, bounds.uln
        if not above(value, limits[0] * ref):
            return 0
    # The profile's bounds increase (refused at load otherwise), so the first bound
    # the value is not above ends the count: most values stop at grade 0 or 1.
    grade = 1
    for g in (2, 3, 4):
        if not above(value, limits[g - 1] * ref):
            break
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
    if at_least(r, protocol.pattern.hepatocellular_min_r):
        name = "hepatocellular"
    elif not above(r, protocol.pattern.cholestatic_max_r):
        name = "cholestatic"
    else:
        name = "mixed"
    return Pattern(name, round(r, 2))


def potential_hys_law(
    values: Mapping[str, float], uln: Mapping[str, float], protocol: Protocol
) -> bool:
    h = protocol.hys_law
    transaminase = any(
        a in values and at_least(values[a], h.transaminase_uln_multiple * uln[a])
        for a in ("alt", "ast")
    )
    bilirubin = "bilirubin" in values and at_least(
        values["bilirubin"], h.bilirubin_uln_multiple * uln["bilirubin"]
    )
    alp_ok = "alp" not in values or not at_least(
        values["alp"], h.alp_below_uln_multiple * uln["alp"]
    )
    return transaminase and bilirubin and alp_ok
