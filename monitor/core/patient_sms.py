"""Patient SMS templates as data (issue 14): loaded, checked, filled. Pure.

A template may name only {clinic}, {date} and {help_number}: nothing clinical (a
result, a dose, the drug, a name) has a placeholder, so none can be sent. Each
message is checked at load, filled with this site's clinic name and HELP number
and the longest date the calendar can produce, to fit two SMS segments: 306
GSM-7 septets (extension characters count two), else 134 UCS-2 characters.
"""

from __future__ import annotations

import re
import string
import tomllib
from dataclasses import dataclass
from datetime import date
from pathlib import Path

GSM7_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = "^{}\\[~]|€\f"
ALLOWED_FIELDS = frozenset({"clinic", "date", "help_number"})
KINDS = (
    "reminder", "recall", "recall_second", "checkin", "clarify",
    "thanks", "help", "stopped", "started",
)  # fmt: skip
MAX_SEGMENTS = 2


class TemplateError(Exception):
    """A template file that must not be used: names the file and the key."""


def is_gsm7(text: str) -> bool:
    return all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text)


def segments(text: str) -> int:
    """How many SMS segments `text` takes (GSM-7 if it can, else UCS-2)."""
    if is_gsm7(text):
        septets = sum(2 if ch in GSM7_EXTENSION else 1 for ch in text)
        return 1 if septets <= 160 else -(-septets // 153)
    units = len(text.encode("utf-16-le")) // 2
    return 1 if units <= 70 else -(-units // 67)


@dataclass(frozen=True)
class Templates:
    language: str
    version: str
    approved: bool
    days: tuple[str, ...]
    months: tuple[str, ...]
    date_format: str
    messages: dict[str, str]
    clinic: str
    help_number: str

    def format_date(self, d: date) -> str:
        return self.date_format.format(
            day=self.days[d.weekday()], dom=d.day, month=self.months[d.month - 1]
        )

    def render(self, kind: str, due: date | None = None) -> str:
        """The message text; `due` fills {date}."""
        text = self.messages[kind]
        return text.format(
            clinic=self.clinic,
            help_number=self.help_number,
            date=self.format_date(due) if due else "",
        )


def fields_of(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


def _longest_date(days: list[str], months: list[str], fmt: str) -> str:
    return fmt.format(day=max(days, key=len), dom=28, month=max(months, key=len))


def load_templates(path: Path, clinic: str, help_number: str) -> Templates:
    """Read and check one language file; TemplateError names what is wrong."""
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise TemplateError(f"{path}: {exc}") from exc
    head, appr = doc.get("templates", {}), doc.get("approval", {})
    cal, messages = doc.get("calendar", {}), doc.get("messages", {})
    days, months = list(cal.get("days", [])), list(cal.get("months", []))
    if len(days) != 7 or len(months) != 12:
        raise TemplateError(f"{path}: calendar needs 7 days and 12 months")
    fmt = str(cal.get("date", "{day} {dom} {month}"))
    if not re.fullmatch(r"[^{}]*(\{(day|dom|month)\}[^{}]*)+", fmt):
        raise TemplateError(f"{path}: calendar.date may name only {{day}}, {{dom}}, {{month}}")
    missing = [k for k in KINDS if k not in messages]
    extra = [k for k in messages if k not in KINDS]
    if missing or extra:
        raise TemplateError(f"{path}: messages missing {missing}, unknown {extra}")
    longest = _longest_date(days, months, fmt)
    for kind in KINDS:
        text = str(messages[kind])
        try:
            bad = fields_of(text) - ALLOWED_FIELDS
        except ValueError as exc:
            raise TemplateError(f"{path}: messages.{kind}: {exc}") from exc
        if bad:
            raise TemplateError(
                f"{path}: messages.{kind}: placeholder(s) {sorted(bad)} not allowed "
                "(only {clinic}, {date}, {help_number}: no clinical detail in a patient SMS)"
            )
        filled = text.format(clinic=clinic, date=longest, help_number=help_number)
        n = segments(filled)
        if n > MAX_SEGMENTS:
            raise TemplateError(
                f"{path}: messages.{kind}: {n} SMS segments when filled "
                f"({'GSM-7' if is_gsm7(filled) else 'UCS-2'}); at most {MAX_SEGMENTS}"
            )
    status = str(appr.get("status", "unapproved"))
    if status not in ("approved", "unapproved"):
        raise TemplateError(f"{path}: approval.status: 'approved' or 'unapproved'")
    if status == "approved" and not (appr.get("approved_by") and appr.get("approved_on")):
        raise TemplateError(f"{path}: approval: an approved file names who and when")
    return Templates(
        language=str(head.get("language", "")),
        version=str(head.get("version", "")),
        approved=status == "approved",
        days=tuple(days),
        months=tuple(months),
        date_format=fmt,
        messages={k: str(messages[k]) for k in KINDS},
        clinic=clinic,
        help_number=help_number,
    )


def load_all(
    directory: Path, clinic: str, help_number: str, languages: tuple[str, ...]
) -> dict[str, Templates]:
    """Every language's file `patient-sms.<lang>.toml` in `directory`, checked."""
    out: dict[str, Templates] = {}
    for lang in languages:
        t = load_templates(directory / f"patient-sms.{lang}.toml", clinic, help_number)
        if t.language != lang:
            raise TemplateError(f"patient-sms.{lang}.toml: templates.language is {t.language!r}")
        out[lang] = t
    return out
