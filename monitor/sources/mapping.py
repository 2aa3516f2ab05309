"""The code and unit mapping as data (`config/mapping.toml`), loaded and checked once.

Which code means which analyte is site configuration, not code: a new lab or
analyzer is a new table in the TOML file. The file is refused at load when a key
is missing or wrong, and the error names the key. Unit conversion itself stays in
`monitor.core.units`; this module only adds sender spellings (`[units.aliases]`).
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping as AbcMapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from monitor.core.units import ANALYTES, UnitError, canonical_unit_key, to_canonical
from monitor.paths import shipped_config_dir

DEFAULT_MAPPING_PATH = shipped_config_dir() / "mapping.toml"

_WORD = re.compile(r"[A-Z0-9]+")


class MappingError(ValueError):
    """A mapping file that cannot be used; the message names the file and key."""


@dataclass(frozen=True)
class LocalCodes:
    """One sending system's own codes; applies when all of its conditions hold."""

    name: str
    codes: AbcMapping[str, str]
    coding_systems: frozenset[str]
    sending_applications: tuple[str, ...]
    components: frozenset[int]
    not_monitored: frozenset[str]

    def applies(self, system: str, component: int, sending_application: str | None) -> bool:
        if component not in self.components:
            return False
        if self.coding_systems and system.strip().lower() not in self.coding_systems:
            return False
        if self.sending_applications:
            if sending_application is None:
                return False
            app = sending_application.strip().lower()
            if not any(app.startswith(prefix) for prefix in self.sending_applications):
                return False
        return True


@dataclass(frozen=True)
class Mapping:
    """Codes to analytes, unit spellings, and the "looks like a liver test" detector."""

    source: str
    loinc_systems: frozenset[str]
    loinc_codes: AbcMapping[str, str]
    loinc_not_monitored: frozenset[str]
    local: tuple[LocalCodes, ...]
    companion_uln_codes: frozenset[str]
    companion_date_codes: frozenset[str]
    unit_aliases: AbcMapping[str, str]
    detector_words: frozenset[str]
    detector_phrases: tuple[str, ...]
    detector_exclude: frozenset[str]
    names: AbcMapping[str, str]

    @classmethod
    def load(cls, path: str | Path | None = None) -> Mapping:
        """Load and check a mapping file (default: the project's `config/mapping.toml`)."""
        return load_mapping(path)

    def is_loinc(self, system: str) -> bool:
        return system.strip().lower() in self.loinc_systems

    def analyte_for(
        self,
        system: str,
        code: str,
        *,
        component: int = 1,
        sending_application: str | None = None,
    ) -> str | None:
        """The analyte a code means, or None when it is not a monitored liver test.

        `component` is where the code sat in HL7 OBX-3 (1 or 4); FHIR and CSV use 1.
        `sending_application` is MSH-3 for HL7, None elsewhere.
        """
        code = code.strip()
        if not code:
            return None
        if self.is_loinc(system) and code in self.loinc_codes:
            return self.loinc_codes[code]
        key = code.upper()
        for table in self.local:
            if key in table.codes and table.applies(system, component, sending_application):
                return table.codes[key]
        return None

    def is_not_monitored(
        self,
        system: str,
        code: str,
        *,
        component: int = 1,
        sending_application: str | None = None,
    ) -> bool:
        """True for a liver-related code the site chose not to monitor (never reported)."""
        code = code.strip()
        if self.is_loinc(system) and code in self.loinc_not_monitored:
            return True
        key = code.upper()
        return any(
            key in table.not_monitored and table.applies(system, component, sending_application)
            for table in self.local
        )

    def looks_like_liver(self, *texts: str) -> bool:
        """True when a code or name reads like a liver test (ALT, SGPT, bilirubin, GGT...).

        Used only for codes that are not mapped, so that a liver result the mapping
        misses is reported instead of being ignored with the sodium and the CBC.
        """
        # A monitored LOINC code sent without its system (or under another one) is
        # still a liver result that the mapping misses: reported, not ignored.
        if any(text.strip() in self.loinc_codes for text in texts):
            return True
        words: list[str] = []
        for text in texts:
            words.extend(_WORD.findall(text.upper()))
        if not words or self.detector_exclude.intersection(words):
            return False
        if self.detector_words.intersection(words):
            return True
        joined = " " + " ".join(words) + " "
        return any(f" {phrase} " in joined for phrase in self.detector_phrases)

    def is_companion_uln(self, code: str) -> bool:
        return code.strip().upper() in self.companion_uln_codes

    def is_companion_date(self, code: str) -> bool:
        return code.strip().upper() in self.companion_date_codes

    def analyte_named(self, name: str) -> str | None:
        """The analyte a CSV `analyte` cell names (``ALT``, ``sgpt``, ``total bilirubin``)."""
        return self.names.get(" ".join(name.strip().lower().split()))

    def canonical_unit_text(self, unit: str) -> str:
        """The sender's unit with a site alias applied (``U/litre`` -> ``U/L``)."""
        return self.unit_aliases.get(canonical_unit_key(unit), unit)

    def to_canonical(self, analyte: str, value: float, unit: str) -> float:
        """`value` in `unit` converted to the analyte's canonical unit.

        Raises `UnitError` for an empty or unknown unit: a missing unit is never
        taken to mean the canonical one.
        """
        if not unit.strip() or not canonical_unit_key(unit):
            raise UnitError("no unit")
        converted = to_canonical(analyte, value, self.canonical_unit_text(unit))
        if not math.isfinite(converted):
            raise UnitError(f"{value!r} {unit} is out of range")
        # rounded so that 7 mg/dL reads 119.7 umol/L, not 119.70000000000002
        return round(converted, 6)


# --- loading -----------------------------------------------------------------


def _table(
    data: AbcMapping[str, Any], key: str, where: str, required: bool = True
) -> dict[str, Any]:
    value = data.get(key)
    if value is None:
        if required:
            raise MappingError(f"{where}{key}: missing table")
        return {}
    if not isinstance(value, dict):
        raise MappingError(f"{where}{key}: must be a table")
    return value


def _strings(data: AbcMapping[str, Any], key: str, where: str, required: bool = False) -> list[str]:
    value = data.get(key)
    if value is None:
        if required:
            raise MappingError(f"{where}{key}: missing list of strings")
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise MappingError(f"{where}{key}: must be a list of non-empty strings")
    return [v.strip() for v in value]


def _analyte_table(data: AbcMapping[str, Any], where: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for code, analyte in data.items():
        if not isinstance(analyte, str) or analyte not in ANALYTES:
            raise MappingError(
                f"{where}{code}: analyte {analyte!r} is not one of {', '.join(ANALYTES)}"
            )
        if not code.strip():
            raise MappingError(f"{where}{code!r}: empty code")
        out[code.strip()] = analyte
    return out


def _local(index: int, data: Any) -> LocalCodes:
    where = f"local[{index}]."
    if not isinstance(data, dict):
        raise MappingError(f"local[{index}]: must be a table")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise MappingError(f"{where}name: missing or empty")
    codes = _analyte_table(_table(data, "codes", where), f"{where}codes.")
    systems = _strings(data, "coding_systems", where)
    apps = _strings(data, "sending_applications", where)
    if not systems and not apps:
        raise MappingError(
            f"{where}coding_systems: give coding_systems or sending_applications, "
            "or the table would apply to every sender"
        )
    components_raw = data.get("components", [1, 4])
    if (
        not isinstance(components_raw, list)
        or not components_raw
        or not all(
            isinstance(c, int) and not isinstance(c, bool) and c in (1, 4) for c in components_raw
        )
    ):
        raise MappingError(f"{where}components: must be a non-empty list of 1 and/or 4")
    return LocalCodes(
        name=name.strip(),
        codes={k.upper(): v for k, v in codes.items()},
        coding_systems=frozenset(s.lower() for s in systems),
        sending_applications=tuple(a.lower() for a in apps),
        components=frozenset(components_raw),
        not_monitored=frozenset(c.upper() for c in _strings(data, "not_monitored", where)),
    )


def mapping_from_dict(data: AbcMapping[str, Any], source: str = "mapping") -> Mapping:
    """Build a `Mapping` from parsed TOML; `source` prefixes every error message."""
    try:
        loinc = _table(data, "loinc", "")
        loinc_codes = _analyte_table(_table(loinc, "codes", "loinc."), "loinc.codes.")
        not_monitored = _table(loinc, "not_monitored", "loinc.", required=False)
        local_raw = data.get("local", [])
        if not isinstance(local_raw, list):
            raise MappingError("local: must be an array of tables ([[local]])")
        companions = _table(
            _table(data, "hl7", "", required=False), "companions", "hl7.", required=False
        )
        aliases_raw = _table(
            _table(data, "units", "", required=False), "aliases", "units.", required=False
        )
        aliases: dict[str, str] = {}
        for spelling, target in aliases_raw.items():
            if not isinstance(target, str) or not target.strip():
                raise MappingError(f"units.aliases.{spelling}: must be a unit string")
            aliases[canonical_unit_key(spelling)] = target.strip()
        detector = _table(data, "detector", "")
        names_raw = _table(data, "names", "")
        names: dict[str, str] = {}
        for analyte in names_raw:
            if analyte not in ANALYTES:
                raise MappingError(f"names.{analyte}: not one of {', '.join(ANALYTES)}")
            for spelling in _strings(names_raw, analyte, "names."):
                names[" ".join(spelling.lower().split())] = analyte
        return Mapping(
            source=source,
            loinc_systems=frozenset(
                s.lower() for s in _strings(loinc, "systems", "loinc.", required=True)
            ),
            loinc_codes=loinc_codes,
            loinc_not_monitored=frozenset(str(k).strip() for k in not_monitored),
            local=tuple(_local(i, t) for i, t in enumerate(local_raw)),
            companion_uln_codes=frozenset(
                c.upper() for c in _strings(companions, "uln_codes", "hl7.companions.")
            ),
            companion_date_codes=frozenset(
                c.upper() for c in _strings(companions, "date_codes", "hl7.companions.")
            ),
            unit_aliases=aliases,
            detector_words=frozenset(
                w.upper() for w in _strings(detector, "words", "detector.", required=True)
            ),
            detector_phrases=tuple(
                " ".join(_WORD.findall(p.upper()))
                for p in _strings(detector, "phrases", "detector.")
            ),
            detector_exclude=frozenset(
                w.upper() for w in _strings(detector, "exclude_words", "detector.")
            ),
            names=names,
        )
    except MappingError as exc:
        raise MappingError(f"{source}: {exc}") from None


def load_mapping(path: str | Path | None = None) -> Mapping:
    """Load and check a mapping file (default: `config/mapping.toml` of the project)."""
    p = Path(path) if path is not None else DEFAULT_MAPPING_PATH
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise MappingError(f"{p}: file not found") from exc
    except tomllib.TOMLDecodeError as exc:
        raise MappingError(f"{p}: not valid TOML ({exc})") from exc
    return mapping_from_dict(data, str(p))


@lru_cache(maxsize=1)
def default_mapping() -> Mapping:
    """The project's mapping, loaded once; parsers use it when given none."""
    return load_mapping(DEFAULT_MAPPING_PATH)
