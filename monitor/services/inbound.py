"""What arrives is stored as it came, whatever its text: the inbound record's helpers.

Any text a parser accepts must be storable: a lone surrogate (``"\\ud800"`` in JSON)
cannot be encoded for the database, NUL cannot go into a PostgreSQL text column, and
an id longer than its column would fail the insert. Each would turn a message into a
500 that the sender repeats forever. These helpers make such text storable without
ever making two different ids equal.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

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


def clean(value: Any) -> Any:
    """A JSON-able value with every string made storable (keys too)."""
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, Mapping):
        return {storable(str(k)): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    return value
