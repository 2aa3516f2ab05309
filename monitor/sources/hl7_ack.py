"""HL7 v2 acknowledgements: an ACK for any text, whatever its MSH fields."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Literal

from monitor.sources.hl7_text import check_header, segment_lines
from monitor.sources.model import ParseError

AckCode = Literal["AA", "AE", "AR"]
_HL7_ERRORS = {
    "100": "Segment sequence error",
    "101": "Required field missing",
    "102": "Data type error",
    "103": "Table value not found",
    "200": "Unsupported message type",
    "201": "Unsupported event code",
    "202": "Unsupported processing id",
    "203": "Unsupported version id",
    "204": "Unknown key identifier",
    "205": "Duplicate key identifier",
    "206": "Application record locked",
    "207": "Application internal error",
}


def _escape(text: str, sep: str, enc: str) -> str:
    comp, rep, esc, sub = (list(enc) + ["^", "~", "\\", "&"][len(enc) :])[:4]
    out = text.replace(esc, f"{esc}E{esc}")
    for char, code in ((sep, "F"), (comp, "S"), (rep, "R"), (sub, "T")):
        out = out.replace(char, f"{esc}{code}{esc}")
    return " ".join(out.split())


def _version_tuple(version: str) -> tuple[int, ...]:
    """The leading numeric parts of MSH-12; ASCII digits only (str.isdigit() also
    accepts '²', which int() refuses, and a stored message must still be answered)."""
    parts = []
    for piece in version.split("."):
        if not (piece.isascii() and piece.isdigit()):
            break
        parts.append(int(piece))
    return tuple(parts)


def build_ack(
    message_text: str,
    code: AckCode,
    error_text: str | None = None,
    *,
    hl7_error_code: str = "207",
    now: datetime | None = None,
    control_id: str | None = None,
) -> str:
    """The ACK for a message: MSA with `code` and the message's MSH-10, ERR on AE/AR.

    Sender and receiver are swapped, version and processing ID echoed. It works on
    any text, even one that is not HL7 (then with default separators and an empty
    MSA-2), so a sender always gets an answer. `hl7_error_code` is from HL7 table
    0357 (207 application error, 200 unsupported message type...).
    """
    header = next((line for line in segment_lines(message_text) if line.startswith("MSH")), "")
    try:
        sep, enc = check_header(header)
        fields = header.split(sep)
    except ParseError:
        sep, enc, fields = "|", "^~\\&", ["MSH", "^~\\&"]

    def msh(n: int) -> str:
        return fields[n - 1] if n - 1 < len(fields) else ""

    comp = enc[0]
    msh9 = msh(9).split(comp)
    trigger = msh9[1] if len(msh9) > 1 else ""
    version = msh(12).split(comp)[0] or "2.5.1"
    modern = _version_tuple(version) >= (2, 5)
    structure = f"{comp}ACK" if _version_tuple(version) >= (2, 3, 1) else ""
    moment = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%d%H%M%S")
    ack_id = control_id or ("ACK" + uuid.uuid4().hex[:17])
    msh_out = sep.join(
        [
            "MSH",
            enc,
            msh(5),
            msh(6),
            msh(3),
            msh(4),
            moment,
            "",
            f"ACK{comp}{trigger}{structure}",
            ack_id,
            msh(11) or "P",
            msh(12) or version,
        ]
    )
    segments = [msh_out]
    msa = ["MSA", code, msh(10)]
    if code != "AA":
        text = error_text or _HL7_ERRORS.get(hl7_error_code, "Application error")
        label = _HL7_ERRORS.get(hl7_error_code, "Application error")
        error_code = comp.join([hl7_error_code, _escape(label, sep, enc), "HL70357"])
        if modern:
            segments.append(sep.join(["MSA", code, msh(10)]))
            segments.append(
                sep.join(
                    ["ERR", "", "", error_code, "E", "", "", "", _escape(text, sep, enc)[:250]]
                )
            )
        else:
            sub = enc[3] if len(enc) > 3 else "&"
            old_code = sub.join([hl7_error_code, _escape(label, sep, enc), "HL70357"])
            msa.append(_escape(text, sep, enc)[:80])
            segments.append(sep.join(msa))
            segments.append(sep.join(["ERR", comp * 3 + old_code]))
    else:
        segments.append(sep.join(msa))
    return "".join(s + "\r" for s in segments)
