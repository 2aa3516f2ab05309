"""The samples kept in tests/data are byte-for-byte the shared ones."""

from __future__ import annotations

import pytest

from tests.sources.samples import SAMPLES, SHARED_SAMPLES


def test_kept_copy_matches_shared_samples() -> None:
    if not SHARED_SAMPLES.is_dir():
        pytest.skip(f"{SHARED_SAMPLES} is not here; the kept copy is used as is")
    shared = {
        p.relative_to(SHARED_SAMPLES): p.read_bytes()
        for p in SHARED_SAMPLES.rglob("*")
        if p.is_file()
    }
    kept = {p.relative_to(SAMPLES): p.read_bytes() for p in SAMPLES.rglob("*") if p.is_file()}
    assert kept == shared
