"""What arrives is stored as it came, whatever its text: the inbound record and its helpers.

Any text a parser accepts must be storable: a lone surrogate (``"\\ud800"`` in JSON)
cannot be encoded for the database, NUL cannot go into a PostgreSQL text column, and
an id longer than its column would fail the insert. Each would turn a message into a
500 that the sender repeats forever. These helpers make such text storable without
ever making two different ids equal.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import bindparam, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session

from monitor.store.tables import INBOUND

ID_COLUMN = 200  # inbound_messages.message_id, sender, quarantine.message_id


def storable(text: str) -> str:
    """`text` with lone surrogates and NUL written as visible escapes (``\\ud800``,
    ``\\x00``); text that was already fine comes back unchanged."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text.replace("\x00", "\\x00") if "\x00" in text else text


def bounded_id(text: str, limit: int = ID_COLUMN) -> str:
    """An id that fits its column: a longer one is replaced by a hash of it whole, so
    two different long ids never collide the way two truncations would."""
    text = storable(text)
    if len(text) <= limit:
        return text
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


_SCALARS = frozenset({int, float, bool, type(None)})


def clean(value: Any) -> Any:
    """A JSON-able value with every string made storable (keys too)."""
    if type(value) in _SCALARS:  # most of a lab payload: no ABC check for them
        return value
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, dict | Mapping):
        return {storable(str(k)): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    return value


# --- the inbound row, read and written with Core --------------------------------------
# Built once: building a statement costs more than running it (issue 10).
_T = INBOUND
_KEY = (_T.c.source, _T.c.sender, _T.c.message_id)
_FIND = sa.select(_T.c.id, _T.c.outcome, _T.c.detail).where(
    _T.c.source == bindparam("source"),
    _T.c.sender == bindparam("sender"),
    _T.c.message_id == bindparam("message_id"),
)
_ADD = sa.insert(_T).returning(_T.c.id)
_ADD_NEW = {  # one statement for a message never seen: nothing comes back if it was
    "sqlite": sqlite_insert(_T).on_conflict_do_nothing(index_elements=_KEY).returning(_T.c.id),
    "postgresql": pg_insert(_T).on_conflict_do_nothing(index_elements=_KEY).returning(_T.c.id),
}
_SAVE = (
    update(_T)
    .where(_T.c.id == bindparam("seen_id"))
    .values(outcome=bindparam("new_outcome"), detail=bindparam("new_detail"))
)


@dataclass
class Seen:
    """A message's inbound row: its id and what became of it."""

    id: int
    outcome: str
    detail: dict[str, Any]

    def save(self, session: Session) -> None:
        params = {"seen_id": self.id, "new_outcome": self.outcome, "new_detail": self.detail}
        session.execute(_SAVE, params)


def receive(
    session: Session, source: str, sender: str, message_id: str, raw: str, now: datetime
) -> tuple[Seen, bool]:
    """The inbound row of (source, sender, message id), made if it is new; and whether
    it is (the ids are bounded by the caller)."""
    key = {"source": source, "sender": sender, "message_id": message_id}
    values = {**key, "received_at": now, "raw": storable(raw), "outcome": "received", "detail": {}}
    add_new = _ADD_NEW.get(session.get_bind().dialect.name)
    if add_new is not None:
        made = session.execute(add_new, values).scalar_one_or_none()
        if made is not None:
            return Seen(made, "received", {}), True
    found = session.execute(_FIND, key).first()
    if found is not None:
        return Seen(found.id, found.outcome, found.detail), False
    return Seen(session.execute(_ADD, values).scalar_one(), "received", {}), True
