"""Hot prefixes: the shared prompt prefixes that an infinite cache would save the most on.

A prefix is a block (keys are chained, so a block names its whole prefix). Its *reuses* are
the requests after the first that hold it — each of them finds it cached in an infinite
cache — and it saves ``reuses × depth_tokens``. Nested prefixes each count (that is what a
radix tree shows), but a chain of blocks that are always used together is one prefix: like a
radix tree, only blocks where the path branches, ends, or changes its reuse count are shown.
The result identifies a prefix by its block key; its text is decoded only when asked.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kvern.analysis.breakers import Decoder
from kvern.ingest.stream import BlockStream, block_streams
from kvern.ingest.trace import Trace


@dataclass(frozen=True)
class HotPrefix:
    model: str
    key: str
    """The prefix's block key, hex (names the prefix without its text)."""
    depth_tokens: int
    reuses: int
    tokens_saved: int
    parent: int | None
    """Index (in the returned list) of the longest shown prefix it extends, or None."""
    row: int
    """Trace row of the first request that holds it."""
    text: str | None = None
    """Decoded tokens it adds to its parent (only with ``decode``)."""

    def to_dict(self) -> dict[str, object]:
        return {"model": self.model, "key": self.key, "depth_tokens": self.depth_tokens,
                "reuses": self.reuses, "tokens_saved": self.tokens_saved, "parent": self.parent,
                "row": self.row, **({} if self.text is None else {"text": self.text})}


@dataclass(frozen=True, slots=True)
class _Node:
    model: str
    uid: int
    depth_tokens: int
    reuses: int
    row: int
    key: int


def hot_prefixes(trace: Trace, top: int = 20, decode: Decoder | None = None) -> list[HotPrefix]:
    """The ``top`` prefixes by tokens saved (ties: deeper first, then first seen)."""
    nodes: list[_Node] = []
    ancestors: dict[tuple[str, int], list[int]] = {}
    streams = block_streams(trace, tokens=False)
    keys_col = trace.column("block_keys")
    for model, s in streams.items():
        for uid, depth_tokens, reuses, row, chain in _candidates(s, top):
            key = int(keys_col[row].values[s.depth[uid]].as_py())
            nodes.append(_Node(model, uid, depth_tokens, reuses, row, key))
            ancestors[(model, uid)] = chain
    nodes.sort(key=lambda n: (-n.reuses * n.depth_tokens, -n.depth_tokens, n.model, n.uid))
    chosen = nodes[:top]
    index = {(n.model, n.uid): i for i, n in enumerate(chosen)}
    out = []
    for n in chosen:
        shown = [index[(n.model, a)] for a in ancestors[(n.model, n.uid)] if (n.model, a) in index]
        parent = shown[0] if shown else None
        text = None
        if decode is not None:
            start = 0 if parent is None else chosen[parent].depth_tokens
            ids = trace.column("token_ids")[n.row].values
            if ids is not None:
                text = decode(n.model, np.asarray(ids, dtype=np.int32)[start : n.depth_tokens])
        out.append(HotPrefix(n.model, f"{n.key:016x}", n.depth_tokens, n.reuses,
                             n.reuses * n.depth_tokens, parent, n.row, text))
    return out


def _candidates(s: BlockStream, top: int) -> list[tuple[int, int, int, int, list[int]]]:
    """The model's ``top`` best radix nodes: (id, depth tokens, reuses, first row, ancestors)."""
    uses = np.bincount(s.block_ids, minlength=s.num_unique).astype(np.int64)
    reuses = uses - 1
    has_parent = s.parent >= 0
    children = np.bincount(s.parent[has_parent], minlength=s.num_unique)
    # The child's uses, for blocks with exactly one child (ids of a parent's children: any one).
    only_child_uses = np.full(s.num_unique, -1, dtype=np.int64)
    only_child_uses[s.parent[has_parent]] = uses[has_parent]
    inner = (children == 1) & (only_child_uses == uses)
    depth_tokens = s.depth.astype(np.int64) * s.block_size + s.block_tokens
    saved = reuses * depth_tokens
    shown = np.flatnonzero(~inner & (reuses > 0))
    order = np.lexsort((shown, -depth_tokens[shown], -saved[shown]))[:top]
    lengths = np.diff(s.req_offsets)
    req_of = np.repeat(np.arange(s.num_requests), lengths)
    _, first = np.unique(s.block_ids, return_index=True)
    out = []
    for uid in shown[order]:
        chain = []
        a = int(s.parent[uid])
        while a >= 0:
            chain.append(a)
            a = int(s.parent[a])
        out.append((int(uid), int(depth_tokens[uid]), int(reuses[uid]), int(s.rows[req_of[first[uid]]]),
                    chain))
    return out
