"""Live sources on loopback: MLLP over TCP, FHIR push, a FHIR server polled, a CSV folder."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from monitor.services.quarantine import waiting
from monitor.sources.csv_folder import CSVFolder
from monitor.sources.fhir_poller import FhirPoller
from monitor.sources.mllp import MLLPDecoder, frame
from monitor.sources.mllp_listener import MLLPListener
from monitor.store.db import session_scope
from monitor.store.models import AlertRow, DeliveryRow, EventRow, QuarantineRow
from monitor.web.app import create_app
from monitor.web.host import WebSettings
from tests.daemon.conftest import Rig
from tests.daemon.helpers import enrol
from tests.ingest.test_ingest import SAMPLES, hl7


def events(rig: Rig) -> list[EventRow]:
    with session_scope(rig.service.engine) as s:
        return list(s.exec(select(EventRow).where(EventRow.kind == "lab")))


async def exchange(port: int, *messages: str) -> list[str]:
    """Send messages on one connection; return the ACKs in order."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    decoder = MLLPDecoder()
    acks: list[str] = []
    for text in messages:
        writer.write(frame(text))
        await writer.drain()
        while True:
            chunk = await reader.read(4096)
            if not chunk:
                raise ConnectionError("closed without an ACK")
            got = decoder.feed(chunk)
            if got:
                acks += [g.decode() for g in got]
                break
    writer.close()
    await writer.wait_closed()
    return acks


def msa(ack: str) -> list[str]:
    line = next(seg for seg in ack.replace("\n", "\r").split("\r") if seg.startswith("MSA"))
    return line.split("|")


@pytest.fixture
def listener(rig: Rig) -> Iterator[MLLPListener]:
    yield MLLPListener({"host": "127.0.0.1", "port": 0}, rig.service.ingest)


async def test_mllp_stores_before_aa_and_answers_repeats_once(
    rig: Rig, listener: MLLPListener
) -> None:
    rig.clock.set(datetime.now(UTC))
    enrol(rig, "P-1", start=rig.clock.now() - timedelta(days=2), identifiers=["HOSP:123"])
    await listener.start()
    try:
        message = hl7("MLLP1", "123", rig.clock.now() - timedelta(hours=1), alt=640, ast=90)
        [ack] = await exchange(listener.port, message)
        assert msa(ack)[1:3] == ["AA", "MLLP1"]
        assert len(events(rig)) == 1
        with session_scope(rig.service.engine) as s:
            assert [a.rule for a in s.exec(select(AlertRow))] == ["stop.transaminase"]
            assert len(s.exec(select(DeliveryRow)).all()) == 1
        [again] = await exchange(listener.port, message)
        assert msa(again)[1] == "AA" and len(events(rig)) == 1
    finally:
        await listener.stop()


async def test_mllp_many_messages_and_connections(rig: Rig, listener: MLLPListener) -> None:
    rig.clock.set(datetime.now(UTC))
    enrol(rig, "P-1", start=rig.clock.now() - timedelta(days=20), identifiers=["HOSP:123"])
    await listener.start()
    base = rig.clock.now() - timedelta(days=10)
    try:
        batches = [
            [hl7(f"C{c}M{m}", "123", base + timedelta(hours=c * 10 + m), alt=25) for m in range(3)]
            for c in range(5)
        ]
        results = await asyncio.gather(*(exchange(listener.port, *b) for b in batches))
        assert all(msa(a)[1] == "AA" for acks in results for a in acks)
        assert len(events(rig)) == 15
    finally:
        await listener.stop()


async def test_mllp_unusable_gets_ae_or_ar_and_is_quarantined(
    rig: Rig, listener: MLLPListener
) -> None:
    await listener.start()
    try:
        [ae] = await exchange(listener.port, hl7("U1", "999", datetime.now(UTC), alt=30))
        assert msa(ae)[1] == "AE"
        assert "ERR" in ae and "unknown patient" in ae
        [ar] = await exchange(listener.port, "MSH|this is not a message")
        assert msa(ar)[1] == "AR"
        with session_scope(rig.service.engine) as s:
            assert len(waiting(s)) == 2
    finally:
        await listener.stop()


async def test_no_ack_when_the_store_fails_then_the_resend_is_taken_once(rig: Rig) -> None:
    rig.clock.set(datetime.now(UTC))
    enrol(rig, "P-1", start=rig.clock.now() - timedelta(days=2), identifiers=["HOSP:123"])
    calls = {"n": 0}

    def dies_once(
        payload: bytes | str, fmt: str, source: str, whole: bool = False, assume_tz: str = "UTC"
    ) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("process died between receive and commit")
        return rig.service.ingest(payload, fmt, source, whole, assume_tz)

    listener = MLLPListener({"host": "127.0.0.1", "port": 0}, dies_once)
    await listener.start()
    try:
        message = hl7("K1", "123", rig.clock.now() - timedelta(hours=1), alt=30)
        with pytest.raises(ConnectionError):
            await exchange(listener.port, message)
        assert events(rig) == []
        [ack] = await exchange(listener.port, message)  # the sender resends
        assert msa(ack)[1] == "AA" and len(events(rig)) == 1
    finally:
        await listener.stop()


def test_fhir_push_answers_with_operation_outcomes(rig: Rig) -> None:
    enrol(rig, "P-FH", start=datetime(2000, 1, 1, tzinfo=UTC), identifiers=["FHIR:Patient/pat2"])
    client = TestClient(create_app(rig.service, WebSettings(fhir_push_allow_without_token=True)))
    sample = (SAMPLES / "fhir" / "01-r4-spec-ghp-collection-bundle.json").read_bytes()
    ok = client.post("/fhir", content=sample, headers={"Content-Type": "application/fhir+json"})
    assert ok.status_code == 200 and ok.json()["resourceType"] == "OperationOutcome"
    assert "stored for patient P-FH" in json.dumps(ok.json())
    unknown = (SAMPLES / "fhir" / "03-uscore-311-serum-total-bilirubin.json").read_bytes()
    held = client.post("/fhir/Observation", content=unknown)
    assert held.status_code == 422 and "unknown patient" in json.dumps(held.json())
    bad = client.post("/fhir", content=b"{not json")
    assert bad.status_code == 400 and bad.json()["issue"][0]["severity"] == "error"
    with session_scope(rig.service.engine) as s:
        assert len(waiting(s)) == 2


class FhirServer:
    """A small FHIR search server: Observations by _lastUpdated, paged with `next` links."""

    def __init__(self, observations: list[dict[str, Any]], page: int = 2) -> None:
        self.observations = observations
        self.page = page
        self.fail_offsets: set[int] = set()
        self.queries: list[dict[str, list[str]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return None

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                q = parse_qs(parts.query)
                outer.queries.append(q)
                offset = int(q.get("_offset", ["0"])[0])
                if offset in outer.fail_offsets:
                    outer.fail_offsets.discard(offset)
                    self.send_response(500)
                    self.end_headers()
                    return
                since = q["_lastUpdated"][0].removeprefix("ge")
                hits = sorted(
                    (o for o in outer.observations if o["meta"]["lastUpdated"] >= since),
                    key=lambda o: o["meta"]["lastUpdated"],
                )
                chunk = hits[offset : offset + outer.page]
                links = []
                if offset + outer.page < len(hits):
                    nxt = dict(q)
                    nxt["_offset"] = [str(offset + outer.page)]
                    query = "&".join(f"{k}={v[0]}" for k, v in nxt.items())
                    links.append({"relation": "next", "url": f"{outer.url}/Observation?{query}"})
                body = {
                    "resourceType": "Bundle",
                    "type": "searchset",
                    "total": len(hits),
                    "link": links,
                    "entry": [{"resource": o} for o in chunk],
                }
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/fhir"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def observation(i: int, at: datetime, alt: float) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": f"obs{i}",
        "status": "final",
        "meta": {
            "versionId": "1",
            "lastUpdated": (at + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        },
        "code": {"coding": [{"system": "http://loinc.org", "code": "1742-6"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": at.isoformat(),
        "valueQuantity": {"value": alt, "unit": "U/L"},
    }


def test_fhir_poller_pages_and_resumes_after_a_restart_without_gaps_or_repeats(rig: Rig) -> None:
    start = datetime.now(UTC) - timedelta(days=20)
    rig.clock.set(datetime.now(UTC))
    enrol(rig, "P-1", start=start, identifiers=["FHIR:Patient/p1"])
    server = FhirServer([observation(i, start + timedelta(days=1 + i), 20 + i) for i in range(7)])
    server.fail_offsets = {4}  # the third page fails: the poller dies mid-way
    svc = rig.service

    def make() -> FhirPoller:
        return FhirPoller(
            {"base_url": server.url, "page_size": 2},
            svc.engine,
            lambda: (svc.config.protocols, svc.config.routing, svc.mapping),
            rig.clock.now,
        )

    try:
        first = make()
        with pytest.raises(httpx.HTTPStatusError):
            first.poll()
        assert len(events(rig)) == 4
        second = make()  # a restart: a new poller, the cursor from the database
        assert second.cursor() == server.observations[3]["meta"]["lastUpdated"]
        second.poll()
        assert sorted(e.payload["results"]["alt"] for e in events(rig)) == [
            20.0 + i for i in range(7)
        ]
        second.poll()  # nothing new: nothing repeated
        assert len(events(rig)) == 7
        server.observations.append(observation(7, start + timedelta(days=9), 400))
        second.poll()
        assert len(events(rig)) == 8
        with session_scope(svc.engine) as s:
            assert "stop.transaminase" in [a.rule for a in s.exec(select(AlertRow))]
    finally:
        server.close()


async def test_csv_folder_whole_file_or_quarantine_with_report(rig: Rig, tmp_path: Path) -> None:
    rig.clock.set(datetime.now(UTC))
    enrol(rig, "P-1", start=rig.clock.now() - timedelta(days=3), identifiers=["HOSP:123"])
    folder = CSVFolder(
        {"dir": str(tmp_path / "inbox"), "min_age_s": 0},
        rig.service.ingest,
        tmp_path,
        lambda: datetime.now(UTC) + timedelta(seconds=10),
    )
    await folder.start()
    at = (rig.clock.now() - timedelta(hours=1)).isoformat()
    head = "patient_id,id_system,analyte,value,unit,observed_at\n"
    (folder.dir / "good.csv").write_text(
        head + f"123,HOSP,alt,30,U/L,{at}\n123,HOSP,ast,25,U/L,{at}\n"
    )
    (folder.dir / "bad.csv").write_text(
        head + f"123,HOSP,alt,30,U/L,{at}\n123,HOSP,ast,lots,U/L,{at}\n"
    )
    assert await folder.scan() == 2
    assert (folder.dir / "processed" / "good.csv").exists()
    assert (folder.dir / "quarantine" / "bad.csv").exists()
    report = (folder.dir / "quarantine" / "bad.csv.error.txt").read_text()
    assert "row 3" in report and "value" in report
    assert len(events(rig)) == 1  # good.csv, one draw; nothing of bad.csv
    assert await folder.scan() == 0


async def test_mllp_reads_times_without_offset_in_the_senders_zone(rig: Rig) -> None:
    summer = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    rig.clock.set(summer)
    enrol(rig, "P-1", start=summer - timedelta(days=3), identifiers=["HOSP:123"])
    listener = MLLPListener(
        {"host": "127.0.0.1", "port": 0, "timezone": "Europe/London"}, rig.service.ingest
    )
    await listener.start()
    try:
        # 10:00 London summer time, sent without an offset, is 09:00 UTC.
        naive = datetime(2026, 7, 1, 10, 0, tzinfo=UTC)
        [ack] = await exchange(listener.port, hl7("TZ1", "123", naive, alt=30))
        assert msa(ack)[1] == "AA"
        [event] = events(rig)
        assert event.at == datetime(2026, 7, 1, 9, 0, tzinfo=UTC)
    finally:
        await listener.stop()


def test_unknown_source_timezone_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        MLLPListener({"timezone": "Mars/Olympus"}, lambda *a, **k: None)  # type: ignore[arg-type,return-value]


async def test_csv_folder_never_follows_a_link_and_sets_big_files_aside(
    rig: Rig, tmp_path: Path
) -> None:
    """A link to a secret is renamed into quarantine/ unread; its target's content
    reaches neither the store nor the report. A file over the cap is set aside unread."""
    rig.clock.set(datetime.now(UTC))
    enrol(rig, "P-1", start=rig.clock.now() - timedelta(days=3), identifiers=["HOSP:123"])
    folder = CSVFolder(
        {"dir": str(tmp_path / "inbox"), "min_age_s": 0, "max_file_bytes": 200},
        rig.service.ingest,
        tmp_path,
        lambda: datetime.now(UTC) + timedelta(seconds=10),
    )
    await folder.start()
    at = (rig.clock.now() - timedelta(hours=1)).isoformat()
    head = "patient_id,id_system,analyte,value,unit,observed_at\n"
    secret = tmp_path / "secret.csv"
    secret.write_text(head + f"123,HOSP,alt,999,U/L,{at}\nTOPSECRET=hunter2\n")
    (folder.dir / "link.csv").symlink_to(secret)
    (folder.dir / "big.csv").write_text(head + f"123,HOSP,alt,31,U/L,{at}\n" * 10)
    os.mkfifo(folder.dir / "pipe.csv")
    assert await folder.scan() == 3
    assert (folder.dir / "quarantine" / "link.csv").is_symlink()  # renamed, not read
    assert "symbolic link" in (folder.dir / "quarantine" / "link.csv.error.txt").read_text()
    assert "max_file_bytes" in (folder.dir / "quarantine" / "big.csv.error.txt").read_text()
    assert "regular file" in (folder.dir / "quarantine" / "pipe.csv.error.txt").read_text()
    assert secret.read_text().endswith("hunter2\n")  # the target is untouched
    assert events(rig) == []
    with session_scope(rig.service.engine) as s:
        raws = [q.raw for q in s.exec(select(QuarantineRow))]
    assert not any("hunter2" in (r or "") for r in raws)


def test_fhir_poller_holds_the_sites_ingest_bounds(rig: Rig) -> None:
    """An Observation nested deeper than `[ingest] fhir_max_depth` is quarantined with
    that reason, as at the push endpoint; the rest of the page is taken in."""
    from monitor.sources.limits import ParseLimits

    start = datetime.now(UTC) - timedelta(days=20)
    rig.clock.set(datetime.now(UTC))
    enrol(rig, "P-1", start=start, identifiers=["FHIR:Patient/p1"])
    deep = observation(1, start + timedelta(days=2), 30)
    nested: dict[str, Any] = {"url": "x"}
    for _ in range(12):
        nested = {"url": "x", "extension": [nested]}
    deep["extension"] = [nested]
    server = FhirServer([observation(0, start + timedelta(days=1), 20), deep])
    svc = rig.service
    try:
        poller = FhirPoller(
            {"base_url": server.url, "page_size": 5},
            svc.engine,
            lambda: (svc.config.protocols, svc.config.routing, svc.mapping),
            rig.clock.now,
            limits=ParseLimits(fhir_max_depth=10),
        )
        poller.poll()
        assert [e.payload["results"]["alt"] for e in events(rig)] == [20.0]
        with session_scope(svc.engine) as s:
            [held] = waiting(s)
        assert "nested" in held.reason and "10" in held.reason
    finally:
        server.close()
