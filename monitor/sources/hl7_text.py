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
_HEADER_SEGMENTS = ("MSH", "BHS", "FHS")


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
    header = text.split("\r", 1)[0]
    end = header.find(sep, 4)
    enc = header[4:end] if end != -1 else header[4:]
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

    def __init__(self, fields: list[str], message: hl7.Message) -> None:
        self._message = message
        self.fields = fields
        self.id = fields[0] if fields else ""
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
    """The message's segments, split on its own separators.

    Fields are split here, as `hl7.parse` would split them (the text stripped, MSH-1
    the field separator itself, MSH-2 the encoding characters): everything downstream
    reads a field as text and splits it further on demand, so the library's whole tree
    of containers, built and then turned back into text, cost more than the rest of
    intake. The library still supplies the separators' message object and unescaping."""
    sep, enc = check_header(text)
    comp, rep, esc, sub = enc[0], enc[1], enc[2], enc[3]  # check_header: 4 or 5 of them
    message = hl7.Message(separator="\r", esc=esc, separators="\r" + sep + rep + comp + sub)
    segments = []
    for line in text.strip().split("\r"):
        if line[:3] in _HEADER_SEGMENTS and line[3:4] == sep:
            end = line.find(sep, 4)
            rest = line[end + 1 :].split(sep) if end != -1 else []
            fields = [line[:3], sep, line[4:end] if end != -1 else line[4:], *rest]
        else:
            fields = line.split(sep)
        segments.append(Segment(fields, message))
    if not segments or segments[0].id != "MSH":
        raise ParseError("not an HL7 v2 message: it does not start with an MSH segment")
    return segments
