"""Engine snapshots in the store: load one that still fits the history, store the next.

A snapshot is a cache of the pure engine's state (monitor/engine.py `Snapshot`).
It is used only when the history still starts with exactly the events it applied
and every other event is dated after it, for the same patient record and the same
profile; otherwise the evaluation replays the whole history. So a late, corrected
or superseded result, a deletion, an edited patient or a changed profile replays.
An event whose payload is edited in place must call `drop` (monitor/services/held.py).

The state is pickled, and read back by an unpickler that resolves only the core's
own classes, the datetime types and plain containers: a row someone else wrote
cannot name any other callable, so it can at worst fail to load (a full replay),
never run code.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import typing
import zlib
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlmodel import Session

from monitor.core.domain import Patient
from monitor.core.protocol import Protocol
from monitor.engine import Snapshot
from monitor.store.models import EngineSnapshotRow

FORMAT = 1  # bump when PatientState or an event/finding class changes shape

_KEYS: dict[int, tuple[Protocol, str]] = {}


class HasId(typing.Protocol):
    @property
    def id(self) -> int | None: ...


_MODULES = ("monitor.core.", "monitor.rules.")
_EXACT = {"monitor.engine", "datetime", "zoneinfo", "collections"}
_BUILTINS = {"set", "frozenset", "tuple", "list", "dict", "int", "float", "str", "bytes", "bool"}


class _CoreUnpickler(pickle.Unpickler):
    """Finds only the classes a snapshot can hold (the Python docs' restricted
    unpickler): anything else is refused, and the caller replays instead."""

    def find_class(self, module: str, name: str) -> Any:
        allowed = (
            module.startswith(_MODULES)
            or module in _EXACT
            or (module == "builtins" and name in _BUILTINS)
        )
        if not allowed:
            raise pickle.UnpicklingError(f"snapshot names {module}.{name}: refused")
        return super().find_class(module, name)


def _loads(blob: bytes) -> Any:
    return _CoreUnpickler(io.BytesIO(zlib.decompress(blob))).load()


def profile_key(protocol: Protocol) -> str:
    """Id, version and a digest of every value of the profile (cached per object)."""
    hit = _KEYS.get(id(protocol))
    if hit is not None and hit[0] is protocol:
        return hit[1]
    digest = hashlib.sha256(repr(protocol).encode()).hexdigest()[:16]
    key = f"{protocol.id}:{protocol.version}:{digest}"
    _KEYS[id(protocol)] = (protocol, key)  # holds the object: its id is not reused
    return key


def load(
    session: Session, patient: Patient, protocol: Protocol
) -> tuple[EngineSnapshotRow | None, Snapshot | None]:
    """The stored row (to update) and its snapshot when it is for this patient record
    and this profile."""
    row = session.get(EngineSnapshotRow, patient.id)
    return row, (decode(row, patient, protocol) if row is not None else None)


def decode(row: Any, patient: Patient, protocol: Protocol) -> Snapshot | None:
    """The snapshot a stored row (ORM or Core) holds, when it is for this patient
    record and this profile; None means replay from the start."""
    if row.format != FORMAT or row.profile_key != profile_key(protocol):
        return None
    try:
        snap = _loads(row.state)
    except Exception:
        return None
    if not isinstance(snap, Snapshot) or snap.state.patient != patient:
        return None
    return snap


def encode(snap: Snapshot) -> bytes:
    return zlib.compress(pickle.dumps(snap, protocol=pickle.HIGHEST_PROTOCOL), 1)


def fingerprint(rows: Iterable[HasId], base: str = "0:0:0") -> str:
    """count:sum:max of the ids of current events (what a snapshot covers): a late,
    superseded or deleted event changes it. `base` extends an earlier fingerprint."""
    count, total, top = (int(x) for x in base.split(":"))
    for r in rows:
        assert r.id is not None
        count, total, top = count + 1, total + r.id, max(top, r.id)
    return f"{count}:{total}:{top}"


def store(
    session: Session,
    row: EngineSnapshotRow | None,
    patient_id: str,
    snap: Snapshot,
    protocol: Protocol,
    now: datetime,
    fingerprint: str,
) -> None:
    """Write `snap` with the fingerprint of the events it covers (superseded left out)."""
    blob = encode(snap)
    if row is None:
        row = EngineSnapshotRow(
            patient_id=patient_id,
            covers_at=snap.covers,
            profile_key="",
            format=FORMAT,
            state=b"",
            updated_at=now,
            fingerprint="",
        )
    row.covers_at, row.profile_key, row.format = snap.covers, profile_key(protocol), FORMAT
    row.state, row.updated_at, row.fingerprint = blob, now, fingerprint
    session.add(row)


def drop(session: Session, patient_id: str) -> None:
    """Forget the patient's snapshot: an event of theirs changed in place."""
    row = session.get(EngineSnapshotRow, patient_id)
    if row is not None:
        session.delete(row)
