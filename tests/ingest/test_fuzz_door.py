"""Fuzzing the doors (issue 8): mutated HL7, FHIR and CSV through the real ingest, the MLLP
listener and the FHIR endpoint.

Invariants, for every input: it ends stored or quarantined (every held value and
every quarantined message is a row; every stored value an event); every MLLP frame
gets exactly one ACK; no endpoint answers 5xx; no stored value of one patient is
changed by a message about another.

Not timed. `.ci/run` runs a few thousand inputs; set ``MONITOR_FUZZ_CASES`` (e.g.
100000) for a long run. The random seed is printed on failure (``MONITOR_FUZZ_SEED``
repeats a run).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func
from sqlmodel import select

from monitor.services.payloads import ingest_payload
from monitor.sources.mllp import MLLPDecoder, frame
from monitor.sources.mllp_listener import MLLPListener
from monitor.store.db import make_engine, session_scope, upgrade
from monitor.store.models import EventRow, InboundMessageRow, QuarantineRow
from monitor.web.app import create_app
from monitor.web.host import WebSettings
from tests.daemon.conftest import Rig
from tests.daemon.helpers import enrol as rig_enrol
from tests.ingest.test_ingest import MAPPING, PROTOCOLS, ROUTING, SAMPLES, enrol, hl7

CASES = int(os.environ.get("MONITOR_FUZZ_CASES", "1500"))
SEED = int(os.environ.get("MONITOR_FUZZ_SEED", str(random.SystemRandom().randrange(1 << 30))))
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
START = datetime(2000, 1, 1, tzinfo=UTC)
OTHER = "OTHER-9"  # the patient no fuzzed message names

HL7 = [p.read_text() for p in sorted((SAMPLES / "hl7").glob("*.hl7"))]
FHIR = [p.read_text() for p in sorted((SAMPLES / "fhir").glob("*.json"))]
CSV = [
    "patient_id,observed_at,analyte,value,unit\n"
    "11111111110,2026-11-20T08:00:00Z,alt,45,U/L\n"
    "11111111110,2026-11-20T08:00:00Z,bilirubin,12,umol/L\n"
]
NASTY = [
    "%",
    "_",
    "|",
    "^",
    "~",
    "\\",
    "&",
    "\r",
    "\n",
    "\x00",
    "\ud800",
    "\U0001f9ea",
    "''",
    '"',
    "<",
    "-1",
    "1e308",
    "NaN",
    "9" * 40,
    "^" * 300,
    "~" * 300,
    "MSH|",
    "\x0b",
    "\x1c",
]


def mutate(rng: random.Random, text: str) -> str:
    """A few edits of a real message: cut, repeat, insert separators or odd text."""
    for _ in range(rng.randint(1, 4)):
        where = rng.randrange(len(text) + 1)
        op = rng.random()
        if op < 0.3:
            text = text[:where] + text[where + rng.randint(1, 40) :]
        elif op < 0.6:
            text = text[:where] + rng.choice(NASTY) + text[where:]
        elif op < 0.8:
            end = min(len(text), where + rng.randint(1, 80))
            text = text[:where] + text[where:end] * rng.randint(2, 4) + text[end:]
        else:
            text = text[:where] + chr(rng.randrange(32, 0x3000)) + text[where + 1 :]
    return text


def _current(session) -> dict[int, str]:  # type: ignore[no-untyped-def]
    rows = session.exec(
        select(EventRow).where(EventRow.patient_id == OTHER, EventRow.superseded_by == None)  # noqa: E711
    )
    return {r.id: json.dumps(r.payload, sort_keys=True) for r in rows}


def _count(session, model) -> int:  # type: ignore[no-untyped-def]
    return int(session.exec(select(func.count()).select_from(model)).one())


@pytest.fixture
def door(tmp_path: Path) -> Iterator[object]:
    engine = make_engine(f"sqlite:///{tmp_path / 'fuzz.db'}")
    upgrade(engine)
    enrol(engine, "P-1", ["MRENTR:11111111110", "374736473647364", "FHIR:Patient/pat2"], START)
    enrol(engine, OTHER, ["HOSP:99999"], START)
    with session_scope(engine) as s:
        s.add(
            EventRow(
                patient_id=OTHER,
                kind="lab",
                at=START + timedelta(days=1),
                recorded_at=START + timedelta(days=1),
                payload={"results": {"alt": 700.0}},
                source="seed",
            )
        )
    yield engine
    engine.dispose()


def test_every_mutated_input_ends_stored_or_quarantined(door) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(SEED)
    engine = door
    with session_scope(engine) as s:
        guard = _current(s)
    for case in range(CASES):
        fmt = rng.choice(["hl7", "hl7", "fhir", "csv"])
        pool = {"hl7": HL7, "fhir": FHIR, "csv": CSV}[fmt]
        text = mutate(rng, rng.choice(pool))
        where = f"seed {SEED} case {case} ({fmt})"
        with session_scope(engine) as s:
            before = (_count(s, QuarantineRow), _count(s, EventRow))
            out = ingest_payload(
                s,
                text,
                fmt,
                f"fuzz-{fmt}",
                NOW,
                PROTOCOLS,
                ROUTING,
                MAPPING,
                whole=fmt == "csv",
            )
            s.flush()
            after = (_count(s, QuarantineRow), _count(s, EventRow))
        assert out.results or out.quarantine_id is not None, where
        assert after[0] >= before[0], where
        assert after[1] - before[1] == sum(len(r.events) for r in out.results), where
        with session_scope(engine) as s:
            items = [out.quarantine_id] if out.quarantine_id is not None else []
            for r in out.results:
                assert r.outcome in ("stored", "duplicate", "quarantined"), where
                if r.outcome == "quarantined":
                    items.append(r.quarantine_id)
                items += r.held
            for item in items:
                row = s.get(QuarantineRow, item)
                assert row is not None and row.state == "waiting", where
    with session_scope(engine) as s:
        assert _current(s) == guard, f"seed {SEED}: another patient's values changed"
        outcomes = {r.outcome for r in s.exec(select(InboundMessageRow))}
    assert outcomes <= {"stored", "quarantined"}, f"seed {SEED}"


async def _exchange_all(port: int, frames: list[str]) -> list[list[bytes]]:
    """Each frame on one connection in turn; the ACKs each one got (read until the
    next frame's turn: one, and only one, is expected)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    decoder = MLLPDecoder()
    answers: list[list[bytes]] = []
    for text in frames:
        writer.write(frame(text))
        await writer.drain()
        got: list[bytes] = []
        while not got:
            chunk = await asyncio.wait_for(reader.read(65536), timeout=20)
            if not chunk:
                raise ConnectionError("closed without an ACK")
            got = decoder.feed(chunk)
        answers.append(got)
    writer.close()
    await writer.wait_closed()
    return answers


async def test_every_mllp_frame_gets_exactly_one_ack(rig: Rig) -> None:
    rng = random.Random(SEED + 1)
    rig_enrol(rig, "P-ML", start=START, identifiers=["MRENTR:11111111110", "HOSP:11111111110"])
    listener = MLLPListener({"host": "127.0.0.1", "port": 0}, rig.service.ingest)
    await listener.start()
    try:
        count = max(50, CASES // 10)
        frames = [mutate(rng, rng.choice(HL7)).replace("\x1c", "") for _ in range(count)]
        # MLLP carries bytes: a lone surrogate cannot be sent, so it arrives as '?'
        frames = [f.replace("\x0b", "").encode("utf-8", "replace").decode() or "X" for f in frames]
        real_at = rig.clock.now() - timedelta(hours=1)
        frames.append(hl7("REAL-1", "11111111110", real_at, alt=30))
        answers = await _exchange_all(listener.port, frames)
    finally:
        await listener.stop()
    assert [len(a) for a in answers] == [1] * len(frames), f"seed {SEED}"
    for text, (ack,) in zip(frames, answers, strict=True):
        segments = ack.decode("utf-8", "replace").split("\r")
        assert segments[0].startswith("MSH"), f"seed {SEED}: {segments[0][:40]!r}"
        msa = next(s for s in segments if s.startswith("MSA"))
        # the ACK is written with the message's own field separator (MSH-1), which a
        # mutation may have made another character than "|"
        code = msa.split(segments[0][3])[1]
        assert code in ("AA", "AE", "AR"), f"seed {SEED}"
        if code != "AA":
            assert any(s.startswith("ERR") for s in segments), f"seed {SEED}: {text[:60]!r}"
    assert answers[-1][0].split(b"\r")[1].split(b"|")[1] == b"AA"


def test_no_fhir_input_gets_a_5xx(rig: Rig) -> None:
    rng = random.Random(SEED + 2)
    rig_enrol(rig, "P-FZ", start=START, identifiers=["FHIR:Patient/pat2"])
    client = TestClient(create_app(rig.service, WebSettings(fhir_push_allow_without_token=True)))
    for case in range(max(50, CASES // 10)):
        body = mutate(rng, rng.choice(FHIR)).encode("utf-8", "surrogatepass")
        path = rng.choice(["/fhir", "/fhir/Observation", "/fhir/Bundle"])
        answer = client.post(path, content=body, headers={"Content-Type": "application/fhir+json"})
        assert answer.status_code < 500, f"seed {SEED} case {case}: {answer.status_code}"
