"""Value accounting (issue 8): for any generated message, every liver observation in it
is stored, ignored by a documented rule, or held in quarantine; nothing else.

stored (values in the message's events) + ignored (problems with effect "ignored") +
held (value items in quarantine) == liver OBX lines generated, unless the whole message
is quarantined, which holds them all.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import select

from monitor.schemas import PatientIn
from monitor.services.intake import enroll
from monitor.services.payloads import ingest_payload
from monitor.sources import parse
from monitor.store.db import create_all, make_engine, session_scope
from monitor.store.models import EventRow, QuarantineRow
from tests.ingest.test_ingest import MAPPING, PROTOCOLS, SETTINGS

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
AT = NOW - timedelta(hours=3)
EXAMPLES = int(os.environ.get("MONITOR_FUZZ_EXAMPLES", "80"))

# (OBX-3, is it a monitored liver test?) One analyte at most once per message, so the
# "same analyte twice in one OBR" rule does not enter the count.
LIVER = {
    "alt": "1742-6^ALT^LN",
    "ast": "1920-8^AST^LN",
    "alp": "6768-6^ALP^LN",
    "ggt": "2324-2^GGT^LN",
    "bilirubin": "1975-2^Bilirubin^LN",
}
UNMAPPED_LIVER = ["XAST^Aspartate aminotransferase^L", "YGGT^Gamma GT^L"]
NOT_LIVER = ["2951-2^Sodium^LN", "718-7^Hemoglobin^LN"]
UNITS = ["U/L", "IU/L", "umol/L", "mg/dL", "", "furlongs"]
VALUES = ["40", "0", "12.5", "<5", ">500", "", "pending", "1-2"]
STATUSES = ["F", "F", "C", "P", "X", "I", "N", ""]
TS = AT.strftime("%Y%m%d%H%M%S")


@st.composite
def messages(draw: st.DrawFn) -> tuple[str, int]:
    analytes = draw(st.lists(st.sampled_from(sorted(LIVER)), unique=True, max_size=5))
    unmapped = draw(st.lists(st.sampled_from(UNMAPPED_LIVER), unique=True, max_size=2))
    others = draw(st.lists(st.sampled_from(NOT_LIVER), unique=True, max_size=2))
    codes = [LIVER[a] for a in analytes] + unmapped + others
    codes = draw(st.permutations(codes))
    obx = []
    for i, code in enumerate(codes, 1):
        value = draw(st.sampled_from(VALUES))
        vtype = "SN" if value[:1] in ("<", ">") else "NM"
        if vtype == "SN":
            value = f"{value[:1]}^{value[1:]}"
        unit, status = draw(st.sampled_from(UNITS)), draw(st.sampled_from(STATUSES))
        obx.append(f"OBX|{i}|{vtype}|{code}||{value}|{unit}|||||{status}|||{TS}")
    text = "\r".join(
        [
            f"MSH|^~\\&|LAB|HOSP|MON|HOSP|{TS}||ORU^R01|ACC-{draw(st.integers(0, 9))}|P|2.5.1",
            "PID|1||111^^^HOSP^MR",
            f"OBR|1||O1|24325-3^Hepatic panel^LN|||{TS}",
            *obx,
        ]
    )
    return text + "\r", len(analytes) + len(unmapped)


@given(messages())
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
def test_every_liver_value_is_stored_ignored_or_held(case: tuple[str, int]) -> None:
    text, liver = case
    engine = make_engine("sqlite://")
    create_all(engine)
    patient = {
        "id": "P-1",
        "weight_kg": 70,
        "start": "2026-01-01T00:00:00Z",
        "baseline": {"alt": 20, "ast": 20},
        "tpmt": "normal",
        "identifiers": ["HOSP:111"],
    }
    with session_scope(engine) as s:
        enroll(s, PatientIn.model_validate(patient), NOW, PROTOCOLS, SETTINGS.default_protocol)
    (msg,) = parse(text, "hl7", mapping=MAPPING)
    ignored = sum(1 for p in msg.problems if p.effect == "ignored")
    with session_scope(engine) as s:
        out = ingest_payload(s, text, "hl7", "lab", NOW, PROTOCOLS, None, MAPPING)
    with session_scope(engine) as s:
        events = list(s.exec(select(EventRow).where(EventRow.kind == "lab")))
        held = list(s.exec(select(QuarantineRow).where(QuarantineRow.kind == "value")))
        whole = list(s.exec(select(QuarantineRow).where(QuarantineRow.kind == "message")))
    engine.dispose()
    stored = sum(len(e.payload["results"]) for e in events)
    if whole:  # the whole message waits: every value in it with it
        assert out.quarantined == 1 and stored == 0 and not held
        return
    assert stored == len(msg.observations)
    assert stored + ignored + len(held) == liver, (text, [str(p) for p in msg.problems])
    for row in held:  # each held value names its patient and its draw
        assert row.patient_id == "P-1"
        assert row.detail["events"], row.reason
        carried = [e for e in events if e.id in row.detail["events"]]
        assert all(row.label in e.payload.get("held", {}) for e in carried)
