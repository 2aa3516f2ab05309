"""HL7 v2 at the text level: segments, batches, separators, and one segment's fields.

Everything here works on the text as sent (CR, LF or CRLF, MLLP framing characters,
a BOM) and hands the `hl7` library only a normalised message whose header is usable.
`Segment` reads fields, repetitions, components and escapes with the message's own
separators.
"""

from __future__ import annotations

import hl7

from monitor.sources.model import ParseError

_MLLP_CHARS = str.maketrans("", "", "\x0b\x1c")
_BATCH_SEGMENTS = ("FHS", "FTS", "BHS", "BTS")


def segment_lines(text: str) -> list[str]:
    """Segments of a text whatever the separator (CR, LF, CRLF); blank lines dropped."""
    cleaned = text.translate(_MLLP_CHARS).lstrip("\ufeff")
    out = []
    for line in cleaned.replace("\r\n", "\r").replace("\n", "\r").split("\r"):
        if line.strip():
            out.append(line.lstrip())
    return out


def normalize(text: str) -> str:
    """One message with CR after every segment and no empty segments."""
    return "".join(line + "\r" for line in segment_lines(text))


def split_batch(text: str) -> list[str]:
    """The messages in a file: FHS/BHS batches, blank-line separated, or back to back.

    Batch header and trailer segments are dropped. Segments found before any MSH
    are returned as a chunk of their own, so that parsing it fails and it is
    quarantined instead of vanishing.
    """
    messages: list[list[str]] = []
    orphan: list[str] = []
    for line in segment_lines(text):
        tag = line[:3]
        if tag in _BATCH_SEGMENTS:
            continue
        if tag == "MSH":
            messages.append([line])
        elif messages:
            messages[-1].append(line)
        else:
            orphan.append(line)
    chunks = ["".join(s + "\r" for s in m) for m in messages]
    if orphan:
        chunks.insert(0, "".join(s + "\r" for s in orphan))
    return chunks


def check_header(text: str) -> tuple[str, str]:
    """The field separator and encoding characters, refused when unusable."""
    if not text.startswith("MSH") or len(text) < 8:
        raise ParseError("not an HL7 v2 message: it does not start with an MSH segment")
    sep = text[3]
    end = text.find(sep, 4)
    enc = text[4:end] if end != -1 else text[4:].split("\r", 1)[0]
    chars = sep + enc
    if (
        len(enc) not in (4, 5)
        or len(set(chars)) != len(chars)
        or any(c.isalnum() or c.isspace() for c in chars)
    ):
        raise ParseError(
            f"MSH-1/MSH-2: separators {chars!r} are not usable (expected e.g. '|^~\\&')"
        )
    return sep, enc


# --- field access --------------------------------------------------------------


class Segment:
    """One segment's fields as raw text, split and unescaped with the message's separators."""

    def __init__(self, segment: hl7.Segment, message: hl7.Message) -> None:
        self._message = message
        self.fields: list[str] = [str(f) for f in segment]
        self.id = self.fields[0] if self.fields else ""
        seps = message.separators
        self._rep, self._comp, self._sub = seps[2], seps[3], seps[4]

    def raw(self, n: int) -> str:
        return self.fields[n] if n < len(self.fields) else ""

    def reps(self, n: int) -> list[str]:
        return self.raw(n).split(self._rep)

    def components(self, raw: str) -> list[str]:
        return raw.split(self._comp)

    def subcomponents(self, raw: str) -> list[str]:
        return raw.split(self._sub)

    def text(self, raw: str) -> str:
        """A leaf value with escapes resolved; the HL7 null ``""`` reads as empty."""
        if raw == '""':
            return ""
        if self._message.esc not in raw:
            return raw
        try:
            return str(self._message.unescape(raw))
        except Exception:  # the library fails on some malformed escapes
            return raw

    def comp(self, n: int, c: int = 1, rep: int = 0) -> str:
        reps = self.reps(n)
        if rep >= len(reps):
            return ""
        comps = self.components(reps[rep])
        return self.text(comps[c - 1]).strip() if c - 1 < len(comps) else ""

    def comps(self, n: int, count: int, rep: int = 0) -> list[str]:
        return [self.comp(n, c, rep) for c in range(1, count + 1)]


def read_segments(text: str) -> list[Segment]:
    check_header(text)
    try:
        message = hl7.parse(text)
        segments = [Segment(seg, message) for seg in message]
    except ParseError:
        raise
    except Exception as exc:  # python-hl7 raises assorted errors on malformed input
        raise ParseError(f"the HL7 message could not be read ({type(exc).__name__})") from exc
    if not segments or segments[0].id != "MSH":
        raise ParseError("not an HL7 v2 message: it does not start with an MSH segment")
    return segments
