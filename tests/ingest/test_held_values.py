"""No value dropped silently: a value that cannot be judged waits as its own quarantine
item, the rest of its message is stored, and the panel is never called normal while it
waits (issue 8, point 2)."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import select

from monitor.core.panel import obstacles
from monitor.core.units import ANALYTES
from monitor.schemas import event_from_payload
from monitor.services.evaluate import run_for
from monitor.services.held import unmapped_counts
from monitor.services.quarantine import discard, retry_quarantined
from monitor.sources.mapping import mapping_from_dict
from monitor.store.db import session_scope
from monitor.store.models import PatientRow, QuarantineRow
from tests.ingest.test_ingest import (
    MAPPING,
    NOW,
    PROTOCOLS,
    ROUTING,
    engine,
    enrol,
    ingest,
    lab_events,
)

__all__ = ["engine"]

AT = NOW - timedelta(hours=2)
START = NOW - timedelta(days=30)
TS = AT.strftime("%Y%m%d%H%M%S")


def oru(msg_id: str, *obx: str) -> str:
    segs = [
        f"MSH|^~\\&|LAB|HOSP|MONITOR|HOSP|{TS}||ORU^R01|{msg_id}|P|2.5.1",
        "PID|1||111^^^HOSP^MR||DOE^JANE",
        f"OBR|1||ORD-{msg_id}|24325-3^Hepatic panel^LN|||{TS}",
    ]
    segs += [f"OBX|{i}|{line}" for i, line in enumerate(obx, 1)]
    return "\r".join(segs) + "\r"


ALT_OK = "NM|1742-6^ALT^LN||25|U/L|||||F|||" + TS
BILI_NO_UNIT = "NM|1975-2^Bilirubin^LN||12||||||F|||" + TS
AST_LOCAL = "NM|XAST^AST (aspartate aminotransferase)^L||35|U/L|||||F|||" + TS


def _waiting(engine) -> list[QuarantineRow]:  # type: ignore[no-untyped-def]
    with session_scope(engine) as s:
        rows = list(s.exec(select(QuarantineRow).where(QuarantineRow.state == "waiting")))
        for r in rows:
            s.expunge(r)
        return rows


def test_a_bilirubin_without_unit_is_held_and_the_alt_stored(engine) -> None:  # type: ignore[no-untyped-def]
    enrol(engine, "P-1", ["HOSP:111"], START)
    out = ingest(engine, oru("H1", ALT_OK, BILI_NO_UNIT), "hl7")
    assert (out.stored, out.held) == (1, 1)
    (row,) = _waiting(engine)
    assert (row.kind, row.patient_id, row.label) == ("value", "P-1", "bilirubin")
    assert "no unit" in row.reason
    (event,) = lab_events(engine)
    assert event.payload["results"] == {"alt": 25.0}
    assert set(event.payload["held"]) == {"bilirubin"}
    assert row.detail["events"] == [event.id]


def test_a_panel_with_a_held_value_is_never_called_normal(engine) -> None:  # type: ignore[no-untyped-def]
    """ALT 25 is normal; the bilirubin that waits keeps the panel from being normal, and
    the escalation advice (which asks `obstacles`) says so."""
    enrol(engine, "P-1", ["HOSP:111"], START)
    ingest(engine, oru("H2", ALT_OK, BILI_NO_UNIT), "hl7")
    with session_scope(engine) as s:
        row = s.get(PatientRow, "P-1")
        assert row is not None
        protocol = PROTOCOLS[row.protocol_id]
        state = run_for(s, row, NOW, protocol).state
    standing = obstacles(state, START, protocol)
    assert [(o.label, o.held) for o in standing] == [("bilirubin", True)]
    assert "waiting in quarantine" in standing[0].text


def test_an_unmapped_local_code_is_held_counted_and_taken_in_on_retry(engine) -> None:  # type: ignore[no-untyped-def]
    enrol(engine, "P-1", ["HOSP:111"], START)
    out = ingest(engine, oru("H3", ALT_OK, AST_LOCAL), "hl7")
    assert out.held == 1
    (row,) = _waiting(engine)
    assert row.code == "L|XAST"
    with session_scope(engine) as s:
        assert unmapped_counts(s, ANALYTES) == [(row.sender, "L|XAST", 1)]
    extended = _mapping_with_local_ast()
    with session_scope(engine) as s:
        ok, why = retry_quarantined(s, row.id or 0, NOW, PROTOCOLS, ROUTING, extended)
    assert ok, why
    assert _waiting(engine) == []
    standing = [e for e in lab_events(engine) if e.superseded_by is None]
    assert [e.payload["results"] for e in standing] == [{"alt": 25.0, "ast": 35.0}]
    assert "held" not in standing[0].payload


def _mapping_with_local_ast():  # type: ignore[no-untyped-def]
    import tomllib

    from tests.helpers import ROOT

    data = tomllib.loads((ROOT / "config" / "mapping.toml").read_text())
    data.setdefault("local", []).append(
        {"name": "test lab", "coding_systems": ["L"], "codes": {"XAST": "ast"}}
    )
    return mapping_from_dict(data)


def test_a_retry_that_still_cannot_judge_the_value_keeps_it_waiting(engine) -> None:  # type: ignore[no-untyped-def]
    enrol(engine, "P-1", ["HOSP:111"], START)
    ingest(engine, oru("H4", ALT_OK, AST_LOCAL), "hl7")
    (row,) = _waiting(engine)
    with session_scope(engine) as s:
        ok, _ = retry_quarantined(s, row.id or 0, NOW, PROTOCOLS, ROUTING, MAPPING)
    assert not ok
    assert [r.id for r in _waiting(engine)] == [row.id]


def test_a_resend_does_not_hold_the_value_twice(engine) -> None:  # type: ignore[no-untyped-def]
    enrol(engine, "P-1", ["HOSP:111"], START)
    text = oru("H5", ALT_OK, BILI_NO_UNIT)
    ingest(engine, text, "hl7")
    assert ingest(engine, text, "hl7").duplicates == 1
    assert len(_waiting(engine)) == 1


def test_discarding_a_held_value_clears_the_mark_on_its_draw(engine) -> None:  # type: ignore[no-untyped-def]
    enrol(engine, "P-1", ["HOSP:111"], START)
    ingest(engine, oru("H6", ALT_OK, BILI_NO_UNIT), "hl7")
    (row,) = _waiting(engine)
    with session_scope(engine) as s:
        discard(s, row.id or 0, "coordinator", "bilirubin re-run, see next result", NOW)
    (event,) = lab_events(engine)
    assert "held" not in event.payload


def test_all_values_held_still_marks_the_patients_draw(engine) -> None:  # type: ignore[no-untyped-def]
    enrol(engine, "P-1", ["HOSP:111"], START)
    out = ingest(engine, oru("H7", BILI_NO_UNIT, AST_LOCAL), "hl7")
    assert (out.stored, out.held, out.quarantined) == (1, 2, 0)
    (event,) = lab_events(engine)
    assert event.payload["results"] == {} and len(event.payload["held"]) == 2
    assert event.at == AT


def test_the_engine_does_not_count_a_draw_of_held_values_as_a_panel() -> None:
    """A draw whose values all wait is not a liver panel: it satisfies no schedule."""
    lab = event_from_payload("1", "lab", AT, {"results": {}, "held": {"alt": "no unit"}})
    assert not lab.is_liver_panel
