"""Normalization: ordered regex -> placeholder rules applied to message text before tokenizing.

The question it answers is "what would caching give if the template did not inject this?"
(a date, a request id). Rules apply in order, each to the output of the previous one, to every
message's text and to completion prompts; tool definitions and role names are left alone.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from kvern.infra.config import NormalizeRule


class Normalizer:
    def __init__(self, rules: Sequence[NormalizeRule]) -> None:
        self.rules = [(re.compile(r.pattern), r.replace) for r in rules]

    def __bool__(self) -> bool:
        return bool(self.rules)

    def text(self, s: str) -> str:
        for pattern, replace in self.rules:
            s = pattern.sub(replace, s)
        return s

    def messages(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not self.rules:
            return messages
        return [{**m, "content": self.text(m["content"])} if isinstance(m.get("content"), str) else m
                for m in messages]
