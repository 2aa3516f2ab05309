"""The store's JSON columns (lab payloads, alert details, delivery bodies), written
and read with orjson: `json.dumps`/`json.loads` were ~9% of a CSV back-load.

Written as the standard library would read it back: str keys (others converted, as
`json.dumps` does), anything JSON has no type for refused (a datetime or a dataclass
in a payload is a bug, as before, not a string). JSON has no NaN or Infinity:
orjson writes them as null where `json.dumps` wrote invalid JSON; the edges refuse
non-finite values before anything is stored. Rows written before (by `json.dumps`,
which could write NaN) are still read: what orjson refuses goes to `json.loads`.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

# str keys as json.dumps makes them; datetimes and dataclasses go to `default`
OPTIONS = (
    orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
)


def _refuse(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def dumps(value: Any) -> str:
    return orjson.dumps(value, default=_refuse, option=OPTIONS).decode()


def loads(text: str | bytes) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)
