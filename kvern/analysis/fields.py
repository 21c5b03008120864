"""Volatile fields in prompt text: what a date, a uuid or a hex id looks like, and its fold.

Folding replaces each field by a placeholder (``28 Nov 2026`` -> ``<DATE>``), so divergences
that differ only in the value group together, and each kind carries the normalization rule
that would remove it. Kinds are tried in order: the more specific first (a uuid before a hex
id, an ISO timestamp before a date, any of them before a bare number).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kvern.infra.config import NormalizeRule

_MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)[a-z]*\.?"
_WEEKDAY = r"(?:Mon|Tue|Tues|Wed|Thu|Thur|Thurs|Fri|Sat|Sun)[a-z]*,?\s+"
_DAY = r"\d{1,2}(?:st|nd|rd|th)?"


@dataclass(frozen=True)
class FieldKind:
    name: str
    placeholder: str
    pattern: str
    label: str
    """How a report names it: "a date", "a uuid"."""

    @property
    def regex(self) -> re.Pattern[str]:
        return _COMPILED[self.name]

    def rule(self) -> NormalizeRule:
        """The normalization rule that folds this kind at ingest."""
        return NormalizeRule(name=self.name, pattern=self.pattern, replace=self.placeholder)


KINDS: tuple[FieldKind, ...] = (
    FieldKind("uuid", "<UUID>",
              r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b", "a uuid"),
    FieldKind("timestamp", "<TIMESTAMP>",
              r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?",
              "a timestamp"),
    FieldKind("iso-date", "<DATE>", r"\b\d{4}-\d{2}-\d{2}\b", "a date"),
    FieldKind("date", "<DATE>",
              rf"\b(?:{_WEEKDAY})?(?:{_DAY}\s+{_MONTH},?\s+\d{{4}}|{_MONTH}\s+{_DAY},?\s+\d{{4}})\b",
              "a date"),
    FieldKind("slash-date", "<DATE>", r"\b\d{1,2}/\d{1,2}/\d{2,4}\b", "a date"),
    FieldKind("time", "<TIME>", r"\b\d{1,2}:\d{2}(?::\d{2})?(?:\s?[AaPp][Mm])?\b", "a time"),
    FieldKind("hex", "<HEX>", r"\b(?:0x)?(?=[0-9a-fA-F]*[a-fA-F])(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{8,}\b",
              "a hex id"),
    FieldKind("number", "<NUM>", r"\d+", "a number"),
)
TEXT = "text"
"""The kind of a divergence that is no recognized field: different wording, not a value."""

_COMPILED = {k.name: re.compile(k.pattern) for k in KINDS}
BY_NAME = {k.name: k for k in KINDS}


def fold(text: str) -> str:
    """``text`` with every field replaced by its kind's placeholder."""
    for kind in KINDS:
        text = kind.regex.sub(kind.placeholder, text)
    return text


def field_at(text: str, start: int, end: int) -> tuple[FieldKind, int, int] | None:
    """The first kind (in ``KINDS`` order) with a match overlapping ``text[start:end]``.

    An empty range (a field removed here, present in the other prompt) overlaps a match that
    touches it. Returns the kind and the match's span.
    """
    for kind in KINDS:
        for m in kind.regex.finditer(text):
            if _overlaps(m.start(), m.end(), start, end):
                return kind, m.start(), m.end()
    return None


def _overlaps(m_start: int, m_end: int, start: int, end: int) -> bool:
    if start == end:
        return m_start <= start <= m_end
    return m_start < end and m_end > start
