"""Cache breakers: the volatile fields that make near-identical prompts miss the cache.

Each divergence found by ``kvern.analysis.divergence`` is decoded around its first diverging
token, the field it falls in is recognized (``kvern.analysis.fields``), and divergences are
grouped by the folded line around it (``Today is 28 Nov 2026.`` and ``Today is 29 Nov 2026.``
are both ``Today is <DATE>.``). Groups are ranked by the cacheable tokens they cost, and a group
whose field has a known shape proposes the normalization rule that would fold it at ingest.
Whether the rule pays is then measured by re-ingesting with it (``config_with_rule``).

Prompt text: ``pattern`` keeps a few words of template around a folded field, which is what
names the cause; the raw ``example`` is prompt text and is shown only when asked.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from kvern.analysis.divergence import Divergence, Scan
from kvern.analysis.fields import BY_NAME, TEXT, field_at, fold
from kvern.infra.config import Config, NormalizeRule
from kvern.ingest.trace import Trace

Decoder = Callable[[str, Sequence[int]], str]
"""(model, token ids) -> text."""

CONTEXT = 32
"""Tokens decoded on each side of a divergence."""
WORDS = 6
"""Words of context kept on each side of the field in a pattern."""
HEADERS = ("<|im_start|>", "<|start_header_id|>")
"""Chat-template tokens that open a message (ChatML, Llama 3), to say which message a token is in."""
_LOOKBACK = 2048
SLOT = "«…»"
"""Stands for the changed words of a text divergence in its pattern."""


@dataclass(frozen=True)
class Breaker:
    kind: str
    """A field kind of ``kvern.analysis.fields`` or ``"text"``."""
    pattern: str
    """The folded context, e.g. ``Today is <DATE>.`` (template words only, the value folded)."""
    lost_tokens: int
    share: float
    """``lost_tokens`` over the trace's cacheable tokens (hits + all lost tokens)."""
    requests: int
    models: tuple[str, ...]
    row: int
    """Trace row of the costliest example."""
    position: int
    """Its first diverging token in the prompt."""
    role: str | None = None
    """The message that token is in, where the chat template shows it ("system")."""
    offset: int | None = None
    """The token's index inside that message's content."""
    example: str = field(default="", repr=False)
    """The raw line of the example: prompt text, for ``--show-text`` only."""
    rule: NormalizeRule | None = None

    @property
    def label(self) -> str:
        return BY_NAME[self.kind].label if self.kind in BY_NAME else "a text change"

    def where(self) -> str:
        if self.role is not None and self.offset is not None:
            return f"token {self.offset} of the {self.role} message"
        return f"token {self.position} of the prompt"

    def describe(self, *, show_text: bool = False) -> str:
        """One sentence: what, where, and what it costs."""
        shown = self.example if show_text else self.pattern
        return (f"{self.label} at {self.where()} ({shown!r}) costs {self.share:.1%} of the "
                f"cacheable tokens ({self.lost_tokens:,} tokens in {self.requests:,} requests)")

    def to_dict(self, *, show_text: bool = False) -> dict[str, object]:
        d: dict[str, object] = {
            "kind": self.kind, "pattern": self.pattern, "lost_tokens": self.lost_tokens,
            "share": self.share, "requests": self.requests, "models": list(self.models),
            "row": self.row, "position": self.position, "role": self.role, "offset": self.offset,
            "rule": None if self.rule is None else self.rule.model_dump(),
        }
        if show_text:
            d["example"] = self.example
        return d


def find_breakers(trace: Trace, scan: Scan, decode: Decoder, *, top: int | None = None) -> list[Breaker]:
    """Group ``scan``'s divergences by folded pattern, costliest first (ties by pattern)."""
    tokens = trace.column("token_ids")
    groups: dict[tuple[str, str], list[tuple[Divergence, str]]] = {}
    for d in scan.divergences:
        mine = _ids(tokens, d.row)
        kind, pattern, example = _classify(d, mine, _ids(tokens, d.ref_row), decode)
        groups.setdefault((kind, pattern), []).append((d, example))
    total = scan.cacheable_tokens
    ranked = sorted(groups.items(), key=lambda kv: (-sum(d.lost_tokens for d, _ in kv[1]), kv[0]))
    out = []
    for (kind, pattern), members in ranked[:top]:
        lost = sum(d.lost_tokens for d, _ in members)
        worst, example = max(members, key=lambda m: (m[0].lost_tokens, -m[0].row))
        role, offset = locate(worst.model, _ids(tokens, worst.row), worst.position, decode)
        out.append(Breaker(
            kind=kind, pattern=pattern, lost_tokens=lost, share=lost / total if total else 0.0,
            requests=len({d.row for d, _ in members}), models=tuple(sorted({d.model for d, _ in members})),
            row=worst.row, position=worst.position, role=role, offset=offset, example=example,
            rule=BY_NAME[kind].rule() if kind in BY_NAME else None,
        ))
    return out


def config_with_rule(cfg: Config, rule: NormalizeRule) -> Config:
    """``cfg`` with ``rule`` appended to the global rules and to every model's own list."""
    models = {
        name: m if m.normalize is None else m.model_copy(update={"normalize": [*m.normalize, rule]})
        for name, m in cfg.models.items()
    }
    return cfg.model_copy(update={"normalize": [*cfg.normalize, rule], "models": models})


def locate(model: str, ids: np.ndarray, position: int, decode: Decoder) -> tuple[str | None, int | None]:
    """Role of the message holding token ``position``, and its index in the message content."""
    for i in range(position - 1, max(-1, position - _LOOKBACK), -1):
        if decode(model, ids[i : i + 1]) not in HEADERS:
            continue
        for j in range(i + 2, min(i + 8, position + 1)):
            head = decode(model, ids[i + 1 : j])
            if "\n" in head:
                m = re.match(r"\s*(\w+)", head)
                return (m.group(1) if m else None), position - j
        return None, None
    return None, None


# -- one divergence ---------------------------------------------------------------------------


def _ids(tokens: pa.ChunkedArray, row: int) -> np.ndarray:
    return np.asarray(tokens[row].values, dtype=np.int32)


def _classify(d: Divergence, mine: np.ndarray, ref: np.ndarray, decode: Decoder) -> tuple[str, str, str]:
    """(kind, folded pattern, raw example) of one divergence."""
    text, start, end = _window(d.model, mine, d.position, d.span_tokens, decode)
    hit = field_at(text, start, end)
    if hit is None:  # the field may be on the other side (removed here)
        other, o_start, o_end = _window(d.model, ref, d.position, d.ref_span_tokens, decode)
        o_hit = field_at(other, o_start, o_end)
        if o_hit is not None:
            text, hit = other, o_hit
    if hit is not None:
        kind, f_start, f_end = hit
        return kind.name, *_context(text, f_start, f_end, kind.placeholder)
    pattern, example = _context(text, start, end, None)
    return TEXT, pattern, example


def _window(model: str, ids: np.ndarray, pos: int, span: int, decode: Decoder) -> tuple[str, int, int]:
    """Decoded text around ``ids[pos:pos+span]`` and that stretch's character range in it."""
    lo = max(0, pos - CONTEXT)
    hi = pos + span
    text = decode(model, ids[lo : hi + CONTEXT])
    # Prefix decodes can end inside a multi-byte character: use the part they share with ``text``.
    start = _shared(decode(model, ids[lo:pos]), text)
    end = max(start, _shared(decode(model, ids[lo:hi]), text))
    return text, start, end


def _shared(a: str, b: str) -> int:
    """Length of the common prefix of two strings."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    return next(i for i in range(n) if a[i] != b[i])


def _context(text: str, start: int, end: int, placeholder: str | None) -> tuple[str, str]:
    """(pattern, example): ``WORDS`` words each side of ``text[start:end]`` within its line."""
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", end)
    if line_end < 0:
        line_end = len(text)
    left, mid, right = text[line_start:start], text[start:end], text[end:line_end]
    left = "".join(re.split(r"(\s+)", left)[-2 * WORDS:])
    right = "".join(re.split(r"(\s+)", right)[: 2 * WORDS])
    # A change of wording is a slot in the template: its values group together.
    folded_mid = placeholder if placeholder is not None else SLOT
    return (fold(left) + folded_mid + fold(right)).strip(), (left + mid + right).strip()
