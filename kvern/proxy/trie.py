"""Hot prefixes, counted as requests arrive: the live form of ``kvern analyze``'s hot prefixes.

Block keys are chained, so a key names a whole prefix and the keys of all requests form a
trie without storing one. Each key counts the requests that hold it; its *reuses* are that
count minus one, and it saves ``reuses × depth_tokens`` in a cache that kept it (nested
prefixes each count, as in a radix tree). As in ``analysis.hot_prefixes``, a chain of blocks
always used together shows as one prefix: only keys where the path branches, ends, or changes
its count are shown. Memory is bounded: past ``max_nodes`` keys, those seen once are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(slots=True)
class _Node:
    count: int
    depth: int
    parent: int | None
    ids: np.ndarray | None
    """Token ids of the first request that held it (for its text), or None."""


@dataclass(frozen=True, slots=True)
class HotPrefix:
    key: int
    depth_tokens: int
    reuses: int
    tokens_saved: int
    parent: int | None
    """Rank (0-based, in the snapshot) of the longest shown prefix it extends."""
    text: str | None


class PrefixCounter:
    def __init__(self, block_size: int, *, keep_ids: bool, max_nodes: int = 200_000) -> None:
        self.block_size = block_size
        self.keep_ids = keep_ids
        self.max_nodes = max_nodes
        self.nodes: dict[int, _Node] = {}
        self.version = 0

    def add(self, keys: list[int], prompt_tokens: int, token_ids: np.ndarray | None) -> None:
        parent = None
        nodes = self.nodes
        ids = token_ids if self.keep_ids else None
        for i, k in enumerate(keys):
            node = nodes.get(k)
            if node is None:
                node = nodes[k] = _Node(0, min((i + 1) * self.block_size, prompt_tokens), parent, ids)
            node.count += 1
            parent = k
        self.version += 1
        if len(nodes) > self.max_nodes:
            self.nodes = {k: n for k, n in nodes.items() if n.count > 1}

    def top(self, n: int, decode: Any = None) -> list[HotPrefix]:
        """The ``n`` shown prefixes that save the most; ``decode(ids) -> str`` adds their text."""
        multi = {k: v for k, v in self.nodes.items() if v.count > 1}
        kids: dict[int, list[int]] = {}
        for k, v in multi.items():
            if v.parent is not None and v.parent in multi:
                kids.setdefault(v.parent, []).append(k)
        shown = []
        for k, v in multi.items():
            ks = kids.get(k, ())
            if len(ks) == 1 and multi[ks[0]].count == v.count:
                continue  # the path goes on unchanged: the longer prefix stands for this one
            shown.append(k)
        shown.sort(key=lambda k: (-(multi[k].count - 1) * multi[k].depth, multi[k].depth))
        chosen = shown[:n]
        rank = {k: i for i, k in enumerate(chosen)}
        out = []
        for k in chosen:
            v = multi[k]
            anc = v.parent
            while anc is not None and anc not in rank:
                node = self.nodes.get(anc)
                anc = node.parent if node is not None else None
            start = multi[anc].depth if anc is not None else 0
            text = None
            if decode is not None and v.ids is not None:
                text = decode(v.ids[start : v.depth])
            out.append(HotPrefix(k, v.depth, v.count - 1, (v.count - 1) * v.depth,
                                 None if anc is None else rank[anc], text))
        return out


def display(model: str, prefixes: list[dict[str, Any]], text_chars: int = 60) -> str:
    """The prefixes as an indented tree of text, children under the prefix they extend."""
    if not prefixes:
        return f"{model}: no prefix used twice yet"
    children: dict[int | None, list[int]] = {}
    for i, p in enumerate(prefixes):
        children.setdefault(p.get("parent"), []).append(i)
    lines = [f"{model}: {len(prefixes)} hot prefixes (depth · reuses · tokens saved)"]

    def walk(parent: int | None, indent: str) -> None:
        items = children.get(parent, [])
        for j, i in enumerate(items):
            p = prefixes[i]
            last = j == len(items) - 1
            label = f"{p['depth_tokens']:,} tok · {p['reuses']:,}× · {p['tokens_saved']:,} saved"
            text = p.get("text")
            if text is not None:
                flat = " ".join(text.split())
                label += f"  {flat[:text_chars]!r}" + ("…" if len(flat) > text_chars else "")
            lines.append(f"{indent}{'└── ' if last else '├── '}{label}")
            walk(i, indent + ("    " if last else "│   "))

    walk(None, "")
    return "\n".join(lines)
