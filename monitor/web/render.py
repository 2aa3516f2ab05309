"""Rendering pages: the Jinja2 environment, time formatting, flash messages.

Templates are autoescaped; times are shown in the console's time zone with its
UTC offset, so "09:00 +01:00" is never ambiguous (abbreviations such as BST are not
understood everywhere). Flash messages live in the session
row (not in the URL), so nothing a user typed is reflected from a link.
"""

from __future__ import annotations

from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from monitor.core.units import DISPLAY_NAME
from monitor.store.accounts import WebSessionRow
from monitor.store.db import session_scope
from monitor.web.auth import Principal, host_of
from monitor.web.chart import fmt
from monitor.web.csrf import FIELD
from monitor.web.triage import span
from monitor.web.wording import local_time, localise_message, threshold_label, unit_of, with_unit

TEMPLATES = Path(__file__).resolve().parent / "templates"

NO_STORE = {"Cache-Control": "no-store"}


def _num(value: float | None) -> str:
    return "-" if value is None else fmt(value)


class Renderer:
    def __init__(self, tz: tzinfo) -> None:
        self.tz = tz
        self.env = Environment(
            loader=FileSystemLoader(TEMPLATES),
            autoescape=select_autoescape(["html", "svg"]),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["when"] = self.when
        self.env.filters["day"] = self.day
        self.env.filters["num"] = _num
        self.env.filters["span"] = span
        self.env.filters["unit"] = unit_of
        self.env.filters["with_unit"] = lambda v, analyte: with_unit(analyte, v)
        self.env.filters["threshold"] = lambda v, key, baseline: threshold_label(key, v, baseline)
        self.env.globals["display_names"] = DISPLAY_NAME
        self.env.filters["localise"] = lambda text: localise_message(text, self.tz)

    def when(self, value: datetime | None) -> str:
        """The site's local time with its UTC offset ("2026-03-30 09:00 +01:00")."""
        return local_time(value, self.tz)

    def day(self, value: datetime | None) -> str:
        return value.astimezone(self.tz).strftime("%Y-%m-%d") if value else "-"

    def page(
        self,
        request: Request,
        template: str,
        principal: Principal | None,
        status: int = 200,
        **context: Any,
    ) -> HTMLResponse:
        html = self.env.get_template(template).render(
            request=request,
            user=principal,
            csrf_field=FIELD,
            csrf=principal.csrf if principal else "",
            flashes=pop_flashes(request, principal),
            path=request.url.path,
            **context,
        )
        return HTMLResponse(html, status_code=status, headers=NO_STORE)

    def fragment(self, template: str, **context: Any) -> HTMLResponse:
        """A piece of a page for a script to swap in: no layout, no flashes popped."""
        html = self.env.get_template(template).render(**context)
        return HTMLResponse(html, headers=NO_STORE)


def renderer_of(request: Request) -> Renderer:
    r: Renderer = request.app.state.renderer
    return r


def flash(request: Request, principal: Principal, kind: str, text: str) -> None:
    """Show `text` on the next page this session renders (kind: ok | error)."""
    if principal.session_id is None:
        return
    with session_scope(host_of(request).engine) as session:
        row = session.get(WebSessionRow, principal.session_id)
        if row is not None:
            row.flash = [*row.flash, [kind, text]][-5:]
            session.add(row)


def pop_flashes(request: Request, principal: Principal | None) -> list[tuple[str, str]]:
    if principal is None or principal.session_id is None:
        return []
    with session_scope(host_of(request).engine) as session:
        row = session.get(WebSessionRow, principal.session_id)
        if row is None or not row.flash:
            return []
        out = [(str(k), str(t)) for k, t in row.flash]
        row.flash = []
        session.add(row)
        return out
