"""Words for what the rules store as keys: threshold labels with their units, units as a
reader writes them, and local times with their offset.

A rule records `alt_baseline_multiple_limit: 110`; a coordinator should read
"ALT 5x baseline (110 U/L)". The multiple is worked out from the patient's baseline
when it is known, so the label says what the protocol says.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from monitor.core.localtime import local_time as local_time  # the templates' filters
from monitor.core.localtime import localise_message as localise_message
from monitor.core.units import CANONICAL_UNIT, DISPLAY_NAME
from monitor.web.chart import fmt

READABLE_UNIT = {"umol/L": "µmol/L"}


def unit_of(analyte: str) -> str:
    unit = CANONICAL_UNIT.get(analyte, "")
    return READABLE_UNIT.get(unit, unit)


def with_unit(analyte: str, value: float) -> str:
    """`150 U/L`, `12 µmol/L`; a value of something unknown stays bare."""
    unit = unit_of(analyte)
    return f"{fmt(value)} {unit}".strip()


def _name(analyte: str) -> str:
    return DISPLAY_NAME.get(analyte, analyte)


def _baseline_multiple(a: str, v: float, baseline: Mapping[str, float]) -> str:
    base = baseline.get(a)
    if base:
        return f"{_name(a)} {fmt(v / base)}x baseline ({with_unit(a, v)})"
    return f"{_name(a)} multiple of baseline ({with_unit(a, v)})"


_ANALYTE_KEYS: list[
    tuple[re.Pattern[str], Callable[[str, str, float, Mapping[str, float]], str]]
] = [
    (
        re.compile(r"^(\w+?)_baseline_multiple_limit$"),
        lambda a, _g, v, b: _baseline_multiple(a, v, b),
    ),
    (
        re.compile(r"^(\w+?)_absolute_limit$"),
        lambda a, _g, v, _b: f"{_name(a)} fixed limit ({with_unit(a, v)})",
    ),
    (
        re.compile(r"^(\w+?)_grade(\d)_limit$"),
        lambda a, g, v, _b: f"{_name(a)} CTCAE grade {g} from {with_unit(a, v)}",
    ),
    (
        re.compile(r"^(\w+?)_grade(\d)_above$"),
        lambda a, g, v, _b: f"{_name(a)} CTCAE grade {g} above {with_unit(a, v)}",
    ),
    (
        re.compile(r"^(\w+?)_uln$"),
        lambda a, _g, v, _b: f"{_name(a)} upper limit of normal ({with_unit(a, v)})",
    ),
    (
        re.compile(r"^(\w+?)_limit$"),
        lambda a, _g, v, _b: f"{_name(a)} stop line ({with_unit(a, v)})",
    ),
]

_PLAIN_KEYS: dict[str, Callable[[float], str]] = {
    "gap_days": lambda v: f"liver panel due every {fmt(v)} days",
    "grace_days": lambda v: f"grace after the due date: {fmt(v)} days",
    "max_dose_mg": lambda v: f"maximum dose {fmt(v)} mg/day",
    "mg_per_kg_limit": lambda v: f"dose limit {fmt(v)} mg/kg/day",
    "prior_toxic_dose_mg": lambda v: f"dose that was toxic before: {fmt(v)} mg/day",
    "step_mg": lambda v: f"dose step {fmt(v)} mg",
    "step_interval_min_days": lambda v: f"at least {fmt(v)} days between dose steps",
}


def threshold_label(key: str, value: float, baseline: Mapping[str, float]) -> str:
    """The threshold in words with its unit; an unknown key is shown as words and number."""
    if key in _PLAIN_KEYS:
        return _PLAIN_KEYS[key](value)
    for pattern, say in _ANALYTE_KEYS:
        m = pattern.match(key)
        if m and m.group(1) in CANONICAL_UNIT:
            grade = m.group(2) if m.lastindex and m.lastindex > 1 else ""
            return say(m.group(1), grade, value, baseline)
    return f"{key.replace('_', ' ')}: {fmt(value)}"
