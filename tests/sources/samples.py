"""Where the public sample messages live, and how to read them byte for byte."""

from __future__ import annotations

from pathlib import Path

# A copy of shared/samples kept with the tests (see its SOURCES.md for where each
# file comes from), so a clean clone tests them too; tests/test_samples_copy.py
# checks the copy against shared/samples where that folder is present.
SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"
SHARED_SAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "samples"


def sample_bytes(root: Path, name: str) -> bytes:
    """A sample exactly as stored (HL7 files use CR: never read them in text mode)."""
    kind = "hl7" if name.endswith(".hl7") else "fhir"
    return (root / kind / name).read_bytes()
