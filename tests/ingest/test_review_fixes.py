"""Defects found in review, pinned: nothing dropped, nothing half-stored, nothing twice."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlmodel import col, select

from monitor.services.quarantine import retry_quarantined, waiting
from monitor.sources.csv_folder import CSVFolder
from monitor.sources.fhir_poller import FhirPoller
from monitor.store.db import session_scope
from monitor.store.models import AlertRow, EventRow, QuarantineRow
from monitor.web.app import create_app
from monitor.web.host import WebSettings
from tests.daemon.conftest import Rig
from tests.daemon.helpers import enrol
from tests.ingest.test_ingest import hl7
from tests.ingest.test_sources_live import FhirServer, observation


def current_labs(rig: Rig) -> list[EventRow]:
    with session_scope(rig.service.engine) as s:
        return list(
            s.exec(
                select(EventRow).where(
                    EventRow.kind == "lab", col(EventRow.superseded_by).is_(None)
                )
            )
        )


def rules(rig: Rig) -> list[str]:
    with session_scope(rig.service.engine) as s:
        return [a.rule for a in s.exec(select(AlertRow).order_by(col(AlertRow.id)))]


async def test_csv_files_with_the_same_rows_but_other_content_are_all_taken(
    rig: Rig, tmp_path: Path
) -> None:
    rig.clock.set(datetime.now(UTC))
    enrol(rig, "P-1", start=rig.clock.now() - timedelta(days=3), identifiers=["HOSP:111"])
    enrol(rig, "P-2", start=rig.clock.now() - timedelta(days=3), identifiers=["HOSP:222"])
    folder = CSVFolder(
        {"dir": str(tmp_path / "in"), "min_age_s": 0},
        rig.service.ingest,
        tmp_path,
        lambda: datetime.now(UTC) + timedelta(seconds=10),
    )
    await folder.start()
    at = (rig.clock.now() - timedelta(hours=2)).isoformat()
    head = "patient_id,id_system,analyte,value,unit,observed_at\n"
    (folder.dir / "monday.csv").write_text(head + f"111,HOSP,alt,25,U/L,{at}\n")
    await folder.scan()
    (folder.dir / "tuesday.CSV").write_text(head + f"222,HOSP,alt,600,U/L,{at}\n")
    await folder.scan()
    assert len(current_labs(rig)) == 2
    assert "stop.transaminase" in rules(rig)
    (folder.dir / "export.csv").write_text(head + f"111,HOSP,alt,25,U/L,{at}\n")
    await folder.scan()  # the same export again, under another name: nothing new
    assert len(current_labs(rig)) == 2  # the same results again: not stored twice


def push(client: TestClient, resource: dict[str, Any]) -> Any:
    return client.post("/fhir/Observation", content=json.dumps(resource))


def test_fhir_push_new_version_replaces_the_value_and_is_judged(rig: Rig) -> None:
    start = datetime.now(UTC) - timedelta(days=3)
    rig.clock.set(datetime.now(UTC))
    enrol(rig, "P-1", start=start, identifiers=["FHIR:Patient/p1"])
    # This test is about versions, not about who may push: opened explicitly.
    client = TestClient(create_app(rig.service, WebSettings(fhir_push_allow_without_token=True)))
    obs = observation(77, rig.clock.now() - timedelta(hours=3), 610)
    obs["status"] = "preliminary"
    assert push(client, obs).status_code == 200
    assert rules(rig) == []  # preliminary: kept, raises nothing
    obs["status"] = "final"
    assert "stored" in json.dumps(push(client, obs).json())
    assert "stop.transaminase" in rules(rig)
    obs["status"], obs["valueQuantity"] = "amended", {"value": 650, "unit": "U/L"}
    push(client, obs)
    [lab] = current_labs(rig)
    assert lab.payload["results"]["alt"] == 650
    again = push(client, obs)
    assert "already received" in json.dumps(again.json())


def test_fhir_push_from_another_machine_needs_a_token(rig: Rig) -> None:
    client = TestClient(create_app(rig.service), client=("10.1.2.3", 5000))
    answer = push(client, observation(1, datetime.now(UTC), 30))
    assert answer.status_code == 401 and "fhir_push_token" in json.dumps(answer.json())


def test_a_message_with_one_bad_draw_is_held_whole_and_a_resend_is_answered(rig: Rig) -> None:
    rig.clock.set(datetime.now(UTC))
    enrol(rig, "P-1", start=rig.clock.now() - timedelta(days=3), identifiers=["HOSP:123"])
    good = hl7("MIX1", "123", rig.clock.now() - timedelta(hours=2), alt=600)
    future = (rig.clock.now() + timedelta(days=400)).strftime("%Y%m%d%H%M%S")
    text = good.rstrip("\r") + f"\rOBX|2|NM|1920-8^AST^LN||40|U/L|||||F|||{future}\r"
    out = rig.service.ingest(text, "hl7", "mllp")
    assert out.quarantined == 1 and "nothing of this message" in (out.results[0].reason or "")
    assert current_labs(rig) == [] and rules(rig) == []
    again = rig.service.ingest(text, "hl7", "mllp")  # the sender resends: answered, no crash
    assert again.quarantined == 1
    with session_scope(rig.service.engine) as s:
        assert len(waiting(s)) == 1


def test_a_successful_resend_closes_its_quarantine_item(rig: Rig) -> None:
    rig.clock.set(datetime.now(UTC))
    message = hl7("LATE1", "555", rig.clock.now() - timedelta(hours=2), alt=30)
    assert rig.service.ingest(message, "hl7", "mllp").quarantined == 1
    enrol(rig, "P-5", start=rig.clock.now() - timedelta(days=3), identifiers=["HOSP:555"])
    assert rig.service.ingest(message, "hl7", "mllp").stored == 1
    with session_scope(rig.service.engine) as s:
        assert waiting(s) == []
        [item] = s.exec(select(QuarantineRow)).all()
        assert item.state == "retried" and "resent" in (item.resolution or "")
        # A retry of an item already taken in is a no-op, not a crash.
        item.state = "waiting"
        s.add(item)
    with session_scope(rig.service.engine) as s:
        ok, _ = retry_quarantined(
            s,
            item.id or 0,
            rig.clock.now(),
            rig.service.config.protocols,
            rig.service.config.routing,
            rig.service.mapping,
        )
        assert ok
    assert len(current_labs(rig)) == 1


def test_poller_new_version_with_same_content_is_not_a_second_alert(rig: Rig) -> None:
    start = datetime.now(UTC) - timedelta(days=5)
    rig.clock.set(datetime.now(UTC))
    enrol(rig, "P-1", start=start, identifiers=["FHIR:Patient/p1"])
    first = observation(1, start + timedelta(days=1), 400)
    server = FhirServer([first])
    svc = rig.service
    poller = FhirPoller(
        {"base_url": server.url},
        svc.engine,
        lambda: (svc.config.protocols, svc.config.routing, svc.mapping),
        rig.clock.now,
    )
    try:
        poller.poll()
        v2 = json.loads(json.dumps(first))
        v2["meta"]["versionId"] = "2"
        v2["meta"]["lastUpdated"] = (start + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        server.observations[:] = [v2]
        poller.poll()
        assert rules(rig).count("stop.transaminase") == 1
        v3 = json.loads(json.dumps(v2))
        v3["meta"]["versionId"] = "3"
        v3["meta"]["lastUpdated"] = (start + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        v3["valueQuantity"]["value"] = 35
        server.observations[:] = [v3]
        poller.poll()
        [lab] = current_labs(rig)
        assert lab.payload["results"]["alt"] == 35
    finally:
        server.close()
