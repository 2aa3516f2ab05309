"""`fhir_poll` source: searches a FHIR server for new liver results on a schedule.

`GET {base}/Observation?code=<LOINC list>&_lastUpdated=ge<cursor>&_sort=_lastUpdated`,
following `next` links. Each page is taken in one transaction together with the
new cursor (the latest `meta.lastUpdated` seen), so a restart resumes where the
last committed page ended: nothing skipped (the search is inclusive), nothing
repeated (an Observation is known by its id: the same content again is a duplicate,
changed content replaces what its earlier version stored).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
import structlog
from sqlalchemy.engine import Engine

from monitor.core.protocol import Protocol
from monitor.routing import Routing
from monitor.services.ingest import IngestResult, ingest_message, quarantine
from monitor.sources.base import timezone_of
from monitor.sources.fhir import parse_fhir
from monitor.sources.limits import DEFAULT_LIMITS, ParseLimits
from monitor.sources.model import ParseError
from monitor.store.db import session_scope
from monitor.store.models import SourceCursorRow

log = structlog.get_logger(__name__)

LOINC = "http://loinc.org"
DEFAULT_CODES = ("1742-6", "1920-8", "6768-6", "1975-2", "14631-6", "2324-2")


def _utc(value: Any) -> str | None:
    """FHIR instants as comparable UTC text (`2026-01-05T09:00:00.000Z`)."""
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class FhirPoller:
    name = "fhir_poll"

    def __init__(
        self,
        settings: Mapping[str, Any],
        engine: Engine,
        context: Callable[[], tuple[Mapping[str, Protocol], Routing | None, Any]],
        now: Callable[[], datetime],
        on_alerts: Callable[[], None] = lambda: None,
        client: httpx.Client | None = None,
        limits: ParseLimits = DEFAULT_LIMITS,
    ) -> None:
        self.base_url = str(settings["base_url"]).rstrip("/")
        self.codes = tuple(settings.get("codes", DEFAULT_CODES))
        self.page_size = int(settings.get("page_size", 100))
        self.start_from = _utc(str(settings.get("start_from", "1970-01-01T00:00:00Z"))) or ""
        self.cursor_name = f"{self.name}:{self.base_url}"
        self.engine = engine
        self.limits = limits  # the site's [ingest] bounds, as for every other door
        self.context = context
        self.now = now
        self.on_alerts = on_alerts
        self.timezone = timezone_of(settings)
        self.client = client or httpx.Client(timeout=float(settings.get("timeout_s", 20)))

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        self.client.close()

    def cursor(self) -> str:
        with session_scope(self.engine) as s:
            row = s.get(SourceCursorRow, self.cursor_name)
            return row.cursor if row else self.start_from

    def first_url(self) -> str:
        codes = ",".join(f"{LOINC}|{c}" for c in self.codes)
        params = httpx.QueryParams(
            {
                "code": codes,
                "_lastUpdated": f"ge{self.cursor()}",
                "_sort": "_lastUpdated",
                "_count": str(self.page_size),
            }
        )
        return f"{self.base_url}/Observation?{params}"

    def poll(self) -> int:
        """One search, all pages; returns the number of Observations taken in."""
        url: str | None = self.first_url()
        taken = 0
        while url:
            response = self.client.get(url, headers={"Accept": "application/fhir+json"})
            response.raise_for_status()
            page = response.json()
            taken += self.take_page(page)
            url = next(
                (
                    link.get("url")
                    for link in page.get("link", [])
                    if link.get("relation") == "next"
                ),
                None,
            )
        return taken

    def take_page(self, page: Mapping[str, Any]) -> int:
        protocols, routing, mapping = self.context()
        now = self.now()
        cursor = self.cursor()
        taken = 0
        alerts = False
        with session_scope(self.engine) as session:
            for entry in page.get("entry", []):
                resource = entry.get("resource") or {}
                if resource.get("resourceType") != "Observation":
                    continue  # _include'd Patients and OperationOutcomes
                meta = resource.get("meta") or {}
                raw = json.dumps(resource)
                try:
                    messages = parse_fhir(
                        raw, mapping=mapping, assume_tz=self.timezone, limits=self.limits
                    )
                except ParseError as exc:
                    quarantine(session, self.name, "fhir", raw, exc.reason, now)
                    continue
                for msg in messages:
                    result: IngestResult = ingest_message(
                        session,
                        msg,
                        raw,
                        self.name,
                        now,
                        protocols,
                        routing,
                        assume_tz=self.timezone,
                    )
                    taken += result.outcome == "stored"
                    alerts = alerts or bool(result.alerts)
                updated = _utc(meta.get("lastUpdated"))
                if updated is not None and updated > cursor:
                    cursor = updated
            row = session.get(SourceCursorRow, self.cursor_name) or SourceCursorRow(
                name=self.cursor_name, cursor=cursor, updated_at=now
            )
            row.cursor, row.updated_at = cursor, now
            session.add(row)
        if alerts:
            self.on_alerts()
        log.info("fhir_poll.page", taken=taken, cursor=cursor)
        return taken
