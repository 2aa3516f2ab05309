"""Intake splits HL7 fields itself (hl7.parse's container tree cost more than the rest
of intake): the fields it reads must be the ones `hl7.parse` reads, on real samples
and on generated text full of separators, escapes and odd whitespace."""

from __future__ import annotations

import hl7
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.sources.hl7_text import normalize, read_segments, split_batch
from tests.sources.samples import SAMPLES


def library_fields(text: str) -> list[list[str]]:
    return [[str(f) for f in seg] for seg in hl7.parse(text)]


def ours(text: str) -> list[list[str]]:
    return [seg.fields for seg in read_segments(text)]


def test_every_public_sample_splits_as_the_library_splits_it() -> None:
    texts = [
        message
        for path in sorted(SAMPLES.rglob("*"))
        if path.is_file() and path.suffix.lower() in {".hl7", ".txt", ".er7"}
        for message in split_batch(path.read_text(encoding="utf-8", errors="replace"))
        if message.startswith("MSH")
    ]
    assert len(texts) >= 3
    for text in texts:
        assert ours(text) == library_fields(text), text[:60]


field = st.text(alphabet="|^~\\&AB1 .", max_size=12)
segment = st.builds(
    lambda tag, fields: tag + "|" + "|".join(fields),
    st.sampled_from(["PID", "OBR", "OBX", "NTE", "ZZZ"]),  # split_batch starts a message at MSH
    st.lists(field, max_size=8),
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(segment, max_size=6), st.sampled_from(["^~\\&", "^~\\&#"]), st.text(" \t", max_size=2)
)
def test_generated_messages_split_as_the_library_splits_them(
    segments: list[str], enc: str, pad: str
) -> None:
    text = normalize("\r".join([f"MSH|{enc}|LAB|HOSP", *segments])) + pad
    assert ours(text) == library_fields(text)


def test_a_header_that_ends_at_msh_2_reads_as_it_is_written() -> None:
    """Where hl7.parse misreads (it drops MSH-2's last character and repeats MSH)."""
    assert ours("MSH|^~\\&\rPID|1\r") == [["MSH", "|", "^~\\&"], ["PID", "1"]]


def test_unescaping_uses_the_messages_own_escape_character() -> None:
    seg = read_segments("MSH|^~#&|LAB\rOBX|1|NM|a#F#b#S#c\r")[1]
    assert seg.text(seg.raw(3)) == "a|b^c"
