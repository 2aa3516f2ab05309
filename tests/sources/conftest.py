"""Shared fixtures: the public sample messages (a copy of shared/samples in tests/data)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.sources.samples import SAMPLES


@pytest.fixture(scope="session")
def samples() -> Path:
    """The samples directory; tests that need it are skipped when it is not there."""
    if not (SAMPLES / "hl7").is_dir() or not (SAMPLES / "fhir").is_dir():
        pytest.skip(f"sample messages not found at {SAMPLES} (see shared/samples/SOURCES.md)")
    return SAMPLES
