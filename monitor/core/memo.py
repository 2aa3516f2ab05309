"""A small memo keyed by the identity of the objects an answer was computed from.

The engine's states are immutable and a step's state shares its history tuples with
the one before it, so "same objects" means "same answer". Each entry holds the
objects it is keyed by, so their ids cannot be reused while it is cached: a key
found is therefore the very same objects (two live objects never share an id), and
a hit needs no identity check. Not a clinical value: the size only bounds memory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class IdentityMemo(Generic[T]):
    def __init__(self, size: int = 512) -> None:
        self.size = size
        self._entries: dict[tuple[int, ...], tuple[tuple[object, ...], T]] = {}

    def get(self, parts: tuple[object, ...], compute: Callable[[], T]) -> T:
        key = tuple(map(id, parts))
        hit = self._entries.get(key)
        if hit is not None:
            return hit[1]
        value = compute()
        if len(self._entries) >= self.size:
            self._entries.clear()
        self._entries[key] = (parts, value)
        return value
