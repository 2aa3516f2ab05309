"""FHIR push: POST an R4 Observation or Bundle; answered with an OperationOutcome.

Every payload ends stored or quarantined. The answer says which: 200 when all was
taken in (or already had been), 422 when something was quarantined (with the reason
in plain words), 400 when the payload is not FHIR at all (quarantined too). With a
`fhir_push_token` secret, requests must carry it as a bearer token; without one, push
is refused unless the operator says `[web] fhir_push_allow_without_token = true`.
No peer is trusted for its address: behind a local reverse proxy every request
comes from loopback.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any, Protocol

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from monitor.services.payloads import PayloadResult

FHIR_JSON = "application/fhir+json"


class FhirContext(Protocol):
    def ingest(
        self, payload: bytes, fmt: str, source: str, whole: bool = False
    ) -> PayloadResult: ...

    def fhir_push_token(self) -> str | None: ...


def _open_push(request: Request) -> bool:
    """The operator's explicit choice to take FHIR push without a token."""
    return bool(getattr(request.app.state.web, "fhir_push_allow_without_token", False))


def outcome(issues: list[tuple[str, str, str]], status: int) -> JSONResponse:
    """An OperationOutcome with (severity, code, diagnostics) issues."""
    body: dict[str, Any] = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": s, "code": c, "diagnostics": d} for s, c, d in issues],
    }
    return JSONResponse(body, status_code=status, media_type=FHIR_JSON)


def router(get_ctx: Callable[[], FhirContext]) -> APIRouter:
    r = APIRouter(prefix="/fhir")

    async def receive(request: Request) -> JSONResponse:
        ctx = get_ctx()
        token = ctx.fhir_push_token()
        if token is not None:
            given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
            if not hmac.compare_digest(given.encode(), token.encode()):
                return outcome([("error", "security", "missing or wrong bearer token")], 401)
        elif not _open_push(request):
            return outcome(
                [
                    (
                        "error",
                        "security",
                        "FHIR push needs a bearer token: set the fhir_push_token secret "
                        "(or, on purpose, [web] fhir_push_allow_without_token = true)",
                    )
                ],
                401,
            )
        payload = await request.body()
        out = await run_in_threadpool(ctx.ingest, payload, "fhir", "fhir-push")
        if out.quarantine_id is not None:
            return outcome(
                [("error", "invalid", f"{out.reason} (quarantined as item {out.quarantine_id})")],
                400,
            )
        issues: list[tuple[str, str, str]] = []
        for res in out.results:
            if res.outcome == "quarantined":
                issues.append(
                    (
                        "error",
                        "processing",
                        f"{res.message_id}: {res.reason} (quarantined as item {res.quarantine_id})",
                    )
                )
            else:
                text = "stored" if res.outcome == "stored" else "already received"
                issues.append(
                    (
                        "information",
                        "informational",
                        f"{res.message_id}: {text} for patient {res.patient_id or '-'}",
                    )
                )
                issues += [
                    ("warning", "informational", f"{res.message_id}: {n}") for n in res.notes
                ]
        status = 422 if out.quarantined else 200
        return outcome(issues or [("information", "informational", "nothing to take in")], status)

    r.add_api_route("", receive, methods=["POST"])
    r.add_api_route("/Observation", receive, methods=["POST"])
    r.add_api_route("/Bundle", receive, methods=["POST"])
    return r
