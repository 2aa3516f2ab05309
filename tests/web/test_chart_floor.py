"""A lab value of 0, or one far below ULN, is legitimate: the chart draws it on its floor.

Before, the chart took the log of 0 and the patient page and its API answered 500.
"""

from __future__ import annotations

from datetime import UTC, timedelta
from xml.etree import ElementTree

from monitor.services.intake import record_event
from monitor.store.db import session_scope
from monitor.web import chart
from tests.helpers import SEED, T0, patient
from tests.web.conftest import NOW, Console, _lab, signed_in

NS = {"s": "http://www.w3.org/2000/svg"}
ULN = {"alt": 33.0, "ast": 32.0, "alp": 120.0, "bilirubin": 21.0, "ggt": 40.0}


def test_zero_and_tiny_values_are_drawn_on_the_floor_and_marked() -> None:
    points = [
        chart.Point("alt", T0 + timedelta(days=1), 0.0, 33),
        chart.Point("alt", T0 + timedelta(days=2), 40, 33),
        chart.Point("bilirubin", T0 + timedelta(days=2), 0.0001, 21),
    ]
    lines = chart.stop_lines(SEED, patient(), ULN)
    svg = chart.render(points, lines, [chart.DoseMark(T0, 50)], T0, T0 + timedelta(days=7), UTC)
    root = ElementTree.fromstring(str(svg))
    below = root.findall(".//s:g[@class='point below-floor']", NS)
    assert len(below) == 2
    titles = [g.find("s:title", NS).text or "" for g in below]  # type: ignore[union-attr]
    assert all("below the chart's floor" in t for t in titles)
    assert any(t.startswith("ALT 0 ") for t in titles)
    # drawn on the plot's bottom edge, not off it
    floor_y = chart.TOP + chart.PLOT_H
    circle = below[0].find("s:circle", NS)
    assert circle is not None and abs(float(circle.get("cy", "0")) - floor_y) < 0.2
    assert circle.get("fill") == "#fff"  # hollow: clamped, not a real position
    normal = root.findall(".//s:g[@class='point']", NS)
    assert len(normal) == 1


def test_patient_page_and_api_answer_with_a_zero_value(console: Console) -> None:
    host = console.host
    pid, kind, at, payload = _lab("P-300", NOW - timedelta(hours=2), alt=0, ast=0, bilirubin=0)
    with session_scope(console.engine) as s:
        record_event(
            s,
            pid,
            kind,
            at,
            payload,
            at,
            host.config.protocols,
            source="test",
            routing=host.config.routing,
        )
    client = signed_in(console, "cora")
    page = client.get("/patients/P-300")
    assert page.status_code == 200
    assert "below-floor" in page.text
    api = console.client().get(
        "/api/patients/P-300", headers={"Authorization": f"Bearer {console.token}"}
    )
    assert api.status_code == 200
    latest = {v["analyte"]: v for v in api.json()["latest"]}
    assert latest["alt"]["value"] == 0
