"""Alert codes: six letters a person can type in an SMS reply (`ACK K7Q2M`)."""

from __future__ import annotations

import secrets

from sqlmodel import Session, select

from monitor.store.models import AlertRow

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"

# 32 letters: a random byte modulo 32 is uniform over them, so one `token_bytes` call
# serves a whole batch (secrets.choice per letter was 8 us a code).
assert 256 % len(CODE_ALPHABET) == 0


def random_codes(n: int) -> set[str]:
    """Up to `n` random codes (fewer when two coincide)."""
    raw = secrets.token_bytes(6 * n)
    size = len(CODE_ALPHABET)
    return {"".join([CODE_ALPHABET[b % size] for b in raw[i : i + 6]]) for i in range(0, 6 * n, 6)}


def fresh_codes(n: int, avoid: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """`n` different random codes, none in `avoid`; whether the store holds one is the
    unique index's to say (the batch evaluator's insert draws again for those)."""
    codes: set[str] = set()
    while len(codes) < n:
        codes |= random_codes(n - len(codes)) - avoid
    return sorted(codes)


def new_code(session: Session) -> str:
    """One code no stored alert holds (for the few alerts written one at a time; the
    batch evaluator lets the unique index check its codes)."""
    while True:
        [code] = fresh_codes(1)
        if session.exec(select(AlertRow.id).where(AlertRow.code == code)).first() is None:
            return code
