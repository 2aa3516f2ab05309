"""Start-up objects are frozen out of the cyclic collector's scans, and what is made
afterwards is still collected."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from monitor import heap


@pytest.fixture(autouse=True)
def thawed() -> Iterator[None]:
    yield
    gc.unfreeze()


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the cyclic collector frees it


def test_settle_freezes_what_lives_and_later_garbage_is_still_collected() -> None:
    gc.unfreeze()
    kept = Node()
    frozen = heap.settle()
    assert frozen == gc.get_freeze_count() > 0
    assert gc.get_freeze_count() >= 1 and not gc.is_tracked(0)  # sanity of the API
    later = Node()
    ref = weakref.ref(later)
    del later
    gc.collect()
    assert ref() is None, "a cycle made after start-up is collected as before"
    assert kept.me is kept


def test_a_batch_defers_full_collections_and_restores_the_thresholds() -> None:
    before = gc.get_threshold()
    with heap.batch():
        inside = gc.get_threshold()
        with heap.batch():  # nested: still deferred
            assert gc.get_threshold() == inside
        assert gc.get_threshold() == inside
        assert inside[:2] == before[:2] and inside[2] == heap.NO_FULL_PASS
        young = Node()
        ref = weakref.ref(young)
        del young
        gc.collect(0)
        assert ref() is None, "young cycles are still collected in a batch"
    assert gc.get_threshold() == before


def test_a_failing_batch_restores_the_thresholds() -> None:
    before = gc.get_threshold()
    with pytest.raises(RuntimeError), heap.batch():
        raise RuntimeError("boom")
    assert gc.get_threshold() == before
