"""A back-load committed in batches raises what one evaluation of the whole file
raises: a patient with more results further on is judged up to their latest stored
result, not to now, so the tests the rest of the file brings are not called
overdue; a stop line is still judged in the batch that stores it."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.engine import Engine
from sqlmodel import select

from monitor.services.payloads import ingest_payload
from monitor.store.db import make_engine, session_scope, upgrade
from monitor.store.models import AlertRow
from tests.ingest.test_ingest import MAPPING, NOW, PROTOCOLS, ROUTING, enrol, hl7


def backload() -> str:
    """Two patients' results every two days for four weeks, interleaved; P-1's first
    result is over the stop line."""
    out = []
    for k in range(15):
        at = NOW - timedelta(days=29) + timedelta(days=2 * k)
        out.append(hl7(f"A{k}", "M1", at, alt=650 if k == 0 else 25, ast=22))
        out.append(hl7(f"B{k}", "M2", at + timedelta(hours=1), alt=24, ast=21))
    return "".join(out)


def take_in(
    tmp_path_db: str, commit_every: int, payload: str | None = None
) -> tuple[Engine, list[set[str]]]:
    engine = make_engine(tmp_path_db)
    upgrade(engine)
    for pid, mrn in (("P-1", "M1"), ("P-2", "M2")):
        enrol(engine, pid, [f"HOSP|{mrn}"], NOW - timedelta(days=30))
    with session_scope(engine) as s:
        out = ingest_payload(
            s,
            payload or backload(),
            "hl7",
            "file:hl7",
            NOW,
            PROTOCOLS,
            ROUTING,
            MAPPING,
            commit_every=commit_every,
        )
    if payload is None:
        assert out.stored == 30
    return engine, [{a.rule for a in r.alerts} for r in out.results]


def raised(engine: Engine) -> set[tuple[str | None, str, str]]:
    with session_scope(engine) as s:
        return {(a.patient_id, a.rule, a.key) for a in s.exec(select(AlertRow))}


def test_batches_raise_what_one_evaluation_of_the_file_raises(tmp_path) -> None:  # type: ignore[no-untyped-def]
    whole, _ = take_in(f"sqlite:///{tmp_path / 'whole.db'}", commit_every=0)
    batched, per_message = take_in(f"sqlite:///{tmp_path / 'batched.db'}", commit_every=2)
    assert raised(batched) == raised(whole)
    assert not [r for r in raised(batched) if r[1] == "lab.overdue"], raised(batched)
    # The stop line is judged in the first batch, not when P-1's last result comes.
    assert "stop.transaminase" in per_message[0]


def test_a_patient_whose_last_message_is_a_resend_is_still_judged_to_now(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """P-1's results end 20 days before now, and the file ends with a resend of its
    first message: the batch that stored its results judged it only to its latest
    result, so it must still be judged to now (overdue) before the ingest ends."""
    early = NOW - timedelta(days=29)
    payload = "".join(
        [hl7("A0", "M1", early, alt=25, ast=22)]
        + [hl7(f"B{k}", "M2", early + timedelta(days=2 * k), alt=24) for k in range(14)]
        + [hl7("A0", "M1", early, alt=25, ast=22)]  # the same message again
    )
    whole, _ = take_in(f"sqlite:///{tmp_path / 'whole.db'}", 0, payload)
    batched, _ = take_in(f"sqlite:///{tmp_path / 'batched.db'}", 2, payload)
    assert raised(batched) == raised(whole)
    assert ("P-1", "lab.overdue") in {(p, r) for p, r, _ in raised(batched)}
