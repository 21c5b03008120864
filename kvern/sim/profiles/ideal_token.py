"""``ideal-token``: the ideal model at token granularity, for traces that keep token ids.

The upper bound of what prefix reuse allows (docs/architecture.md §6): every token prefix is a cache
entry, a request's cached prefix is its longest prefix of tokens some cached entry covers, no
last-token rule, and the cache holds ``capacity_blocks × block_size`` tokens. It runs the
``ideal`` engine (and so every policy) on a stream with one "block" per token: token prefixes
are interned in a trie, so an entry's parent is the prefix one token shorter and its depth is
its position. ``evicted_blocks`` counts tokens here.

``ideal`` stays block-level because hash-id traces have no tokens and because at unbounded
capacity it must equal ingest's infinite-cache bound, which is block-level.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from kvern.infra.errors import UsageError
from kvern.ingest.stream import BlockStream
from kvern.sim.engine import CacheEngine
from kvern.sim.policies import Policy
from kvern.sim.profiles.base import register
from kvern.sim.profiles.ideal import Ideal


@register
class IdealToken(Ideal):
    name = "ideal-token"
    uses_tokens = True
    summary = "pure prefix reuse at token level (needs token ids)"

    _memo: ClassVar[list[tuple[BlockStream, BlockStream]]] = []
    """The last stream and its token stream: a run simulates one stream for every policy ×
    capacity, each through a fresh engine, so the trie is built once per model."""

    def engine(self, stream: BlockStream, policy: Policy, capacity_blocks: int) -> CacheEngine:
        if stream.token_ids is None:
            raise UsageError(f"--profile {self.name}: the trace of model {stream.model!r} has no token ids "
                             "(hash-id traces carry none); use --profile ideal")
        return TokenEngine(stream, super().engine(self._token_stream(stream), policy,
                                                  int(capacity_blocks) * stream.block_size))

    def _token_stream(self, stream: BlockStream) -> BlockStream:
        if not self._memo or self._memo[0][0] is not stream:
            self._memo[:] = [(stream, token_stream(stream))]
        return self._memo[0][1]


class TokenEngine(CacheEngine):
    """The ideal engine over the token stream, seen from the block stream (capacity in blocks)."""

    profile = "ideal-token"

    def __init__(self, stream: BlockStream, inner: CacheEngine) -> None:
        super().__init__(stream, inner.policy, inner.capacity_blocks // stream.block_size)
        self.inner = inner
        self.cached_tokens = inner.cached_tokens  # the same requests, one entry per token
        self.unschedulable = inner.unschedulable

    def serve(self, requests: np.ndarray) -> None:
        self.inner.serve(requests)

    def cached_prefix(self, request: int) -> int:
        return self.inner.cached_prefix(request)

    def cached_blocks(self) -> np.ndarray:
        """Token-prefix entries of the token trie (not block ids)."""
        return self.inner.cached_blocks()

    @property
    def used(self) -> int:
        return self.inner.used

    @property
    def evicted_blocks(self) -> int:
        """Tokens evicted."""
        return self.inner.evicted_blocks


def token_stream(stream: BlockStream) -> BlockStream:
    """The same requests with one entry per token prefix (``block_size`` 1)."""
    assert stream.token_ids is not None and stream.token_offsets is not None, "stream has no token ids"
    children: dict[tuple[int, int], int] = {}
    ids = np.empty(len(stream.token_ids), dtype=np.int32)
    parent: list[int] = []
    depth: list[int] = []
    flat = stream.token_ids.tolist()
    offs = stream.token_offsets.tolist()
    for r in range(stream.num_requests):
        node = -1
        for pos in range(offs[r], offs[r + 1]):
            key = (node, flat[pos])
            child = children.get(key)
            if child is None:
                child = len(parent)
                children[key] = child
                parent.append(node)
                depth.append(pos - offs[r])
            ids[pos] = child
            node = child
    assert np.array_equal(np.diff(stream.token_offsets), stream.prompt_tokens), \
        "token ids and prompt_tokens disagree"
    return BlockStream(
        model=stream.model, block_size=1, req_offsets=stream.token_offsets.astype(np.int64), block_ids=ids,
        prompt_tokens=stream.prompt_tokens, rows=stream.rows, arrival_s=stream.arrival_s,
        parent=np.asarray(parent, dtype=np.int32), depth=np.asarray(depth, dtype=np.int32),
        block_tokens=np.ones(len(parent), dtype=np.int32),
        token_offsets=stream.token_offsets, token_ids=stream.token_ids,
    )
