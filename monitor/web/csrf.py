"""CSRF protection for every form: a per-session token, compared in constant time.

Signed-in forms carry the session's synchroniser token (kept server-side in the
session row). The login form, which has no session yet, uses a double-submit
cookie. Together with SameSite cookies this stops another site from making a
signed-in browser acknowledge an alert or record a dose.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated

from fastapi import Depends, Request

from monitor.web.auth import PageUser

FIELD = "csrf_token"
LOGIN_COOKIE = "lm_login"


class CsrfError(Exception):
    """A form without the right token: refused with 403 and nothing written."""


class Form:
    """A submitted form's text fields, stripped; `getlist` for repeated ones (checkboxes)."""

    def __init__(self, items: list[tuple[str, str]]) -> None:
        self._items = items

    def get(self, name: str, default: str = "") -> str:
        for key, value in self._items:
            if key == name:
                return value.strip()
        return default

    def getlist(self, name: str) -> list[str]:
        return [v.strip() for k, v in self._items if k == name]


def same(sent: object, expected: str | None) -> bool:
    return (
        isinstance(sent, str)
        and bool(expected)
        and hmac.compare_digest(sent.encode(), str(expected).encode())
    )


async def read_form(request: Request) -> Form:
    form = await request.form()
    return Form([(k, v) for k, v in form.multi_items() if isinstance(v, str)])


async def checked_form(request: Request, principal: PageUser) -> Form:
    """The posted form of a signed-in user, once its CSRF token has been checked."""
    form = await read_form(request)
    if not same(form.get(FIELD), principal.csrf):
        raise CsrfError()
    return form


CheckedForm = Annotated[Form, Depends(checked_form)]


def new_login_token() -> str:
    return secrets.token_urlsafe(32)
