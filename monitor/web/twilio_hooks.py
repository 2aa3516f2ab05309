"""Twilio webhooks: delivery receipts and `ACK <code>` replies, signatures checked.

Twilio signs each request with the account's auth token over the public URL it
called; a request whose `X-Twilio-Signature` does not match is refused (403). The
URL checked is `[web] public_url` + path, never one built from the request's own
Host header (which the sender chooses): without a public URL the hooks answer 503.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from html import escape
from typing import Any, Protocol

import structlog
from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.engine import Engine
from twilio.request_validator import RequestValidator

from monitor.routing import Routing
from monitor.services.alerts import AlertError, acknowledge
from monitor.services.failover import fail_over
from monitor.store.db import session_scope
from monitor.store.models import DeliveryRow
from monitor.web.patient_sms_hook import patient_reply

log = structlog.get_logger(__name__)

ACK = re.compile(r"^\s*ACK\s+([A-Za-z0-9]{4,16})\s*$", re.IGNORECASE)
TWIML_EMPTY = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


class _HasRouting(Protocol):
    @property
    def routing(self) -> Routing: ...


class HookContext(Protocol):
    engine: Engine

    @property
    def public_url(self) -> str | None: ...

    def now(self) -> datetime: ...

    def twilio_auth_token(self) -> str | None: ...

    def sender_name(self, phone: str) -> str | None: ...

    @property
    def config(self) -> _HasRouting: ...


def _twiml(message: str | None) -> Response:
    """The TwiML answer; the text is escaped here, once, whoever composed it."""
    body = (
        TWIML_EMPTY
        if message is None
        else (
            '<?xml version="1.0" encoding="UTF-8"?><Response><Message>'
            f"{escape(message, quote=False)}</Message></Response>"
        )
    )
    return Response(content=body, media_type="application/xml")


async def _verified_form(request: Request, ctx: HookContext) -> dict[str, str]:
    form = {k: str(v) for k, v in (await request.form()).items()}
    token = ctx.twilio_auth_token()
    if token is None:
        raise HTTPException(503, "Twilio auth token not configured")
    if not ctx.public_url:
        log.error("twilio.no_public_url", path=request.url.path)
        raise HTTPException(503, "[web] public_url is not configured")
    base = ctx.public_url.rstrip("/")
    url = base + request.url.path
    if request.url.query:
        url += "?" + request.url.query
    signature = request.headers.get("X-Twilio-Signature", "")
    if not RequestValidator(token).validate(url, form, signature):
        log.warning("twilio.bad_signature", path=request.url.path)
        raise HTTPException(403, "invalid Twilio signature")
    return form


def router(get_ctx: Callable[[], HookContext]) -> APIRouter:
    r = APIRouter(prefix="/twilio")

    @r.post("/inbound")
    async def inbound(request: Request) -> Response:
        ctx = get_ctx()
        form = await _verified_form(request, ctx)
        match = ACK.match(form.get("Body", ""))
        sender = form.get("From", "")
        who = ctx.sender_name(sender)
        if who is None and not match:
            answer = await patient_reply(ctx, sender, form.get("Body", ""))  # issue 14
            if answer is not None:
                return _twiml(answer or None)
        if who is None:
            log.warning("twilio.ack_from_unknown_number", last_digits=sender[-4:])
            return _twiml("This number is not on the lab-monitor contact list.")
        if not match:
            return _twiml("Reply ACK followed by the alert code, e.g. ACK K7Q2MX.")

        def ack() -> list[Any]:
            with session_scope(ctx.engine) as session:
                return acknowledge(session, match.group(1), who, ctx.now(), via="sms")

        try:
            changed = await run_in_threadpool(ack)
        except AlertError:
            return _twiml(f"No alert {match.group(1).upper()}.")
        return _twiml(f"Acknowledged {match.group(1).upper()} ({len(changed)} alert(s)).")

    @r.post("/status/{delivery_id}")
    async def status(delivery_id: int, request: Request) -> Response:
        ctx = get_ctx()
        form = await _verified_form(request, ctx)
        status = form.get("MessageStatus", "")

        def apply() -> bool:
            with session_scope(ctx.engine) as session:
                row = session.get(DeliveryRow, delivery_id)
                if row is None:
                    return False
                if status == "delivered" and row.state in ("sent", "sending", "delivered"):
                    row.state = "delivered"
                    row.updated_at = ctx.now()
                    session.add(row)
                elif status in ("failed", "undelivered") and row.state in (
                    "sending",
                    "sent",
                    "delivered",
                ):
                    # Even while our own send is being settled: the receipt wins, the
                    # settle that follows sees the claim is gone.
                    error = f"Twilio status {status} (error {form.get('ErrorCode', '-')})"
                    fail_over(session, row, error, ctx.config.routing, ctx.now())
            return True

        if not await run_in_threadpool(apply):
            raise HTTPException(404, "no such delivery")
        log.info("twilio.status", delivery_id=delivery_id, status=status)
        return Response(status_code=204)

    return r
